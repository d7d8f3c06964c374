"""Operator policy: run-time defaults per scope and blocklists, validated and kept in one place.

A *scope* is ``GLOBAL`` or a guild id. Effective defaults are the deployment's (environment), then
the global overrides, then the guild's. The Policy object owns the in-memory copy of both; the job
store keeps them across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from engine.engine_settings import SCHEDULERS, EngineSettings
from engine.jobs.records import Place
from engine.jobs.store import JobStore
from engine.requests.checks import ParamError, Phrase, clean_prompt
from engine.requests.models import Offer, choose_model
from engine.requests.params import (
    DEFAULT_FIELDS,
    NSFW_POLICIES,
    PICTURE_RULES,
    Defaults,
    Limits,
)
from engine.requests.sizes import SizeError, resolve_size
from engine.requests.styles import StyleBook, style_name
from engine.rules import moderation
from engine.rules.audit import AuditLog
from engine.rules.ceilings import within

log = logging.getLogger(__name__)

GLOBAL = "global"
OPERATOR = "the operator (panel)"  # who changed a value, when no member did
ELSEWHERE = "elsewhere"  # where no server has a say: DMs, group DMs, user installs in servers without the bot
PER_USER_CAP_MAX = 1000
QUOTA_MAX = 1_000_000


def parse_words(text: str | None) -> list[str]:
    """Words or phrases separated by commas or new lines (the one parser for /settings and the panel)."""
    return [w.strip() for w in re.split(r"[,\n]", text or "") if w.strip()]


class _Overrides(BaseModel):
    """A partial set of defaults; bounds come from the ``limits`` in the validation context."""

    model_config = ConfigDict(extra="forbid")

    size: str | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    count: int | None = None
    scheduler: Literal[SCHEDULERS] | None = None  # type: ignore[valid-type]
    fast: bool | None = None
    style: str | None = None
    model: str | None = None
    models_allowed: tuple[str, ...] | None = None
    loras_allowed: tuple[str, ...] | None = None
    max_steps: int | None = None
    max_count: int | None = None
    per_user_cap: int | None = None
    nsfw_policy: Literal[NSFW_POLICIES] | None = None  # type: ignore[valid-type]
    pictures: Literal[PICTURE_RULES] | None = None  # type: ignore[valid-type]
    nsfw_threshold: float | None = None
    quota_member_day: int | None = None
    quota_member_hour: int | None = None
    quota_server_day: int | None = None
    quota_server_hour: int | None = None
    quota_exempt_roles: tuple[str, ...] | None = None

    @field_validator("quota_member_day", "quota_member_hour", "quota_server_day", "quota_server_hour")
    @classmethod
    def _quota(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not 0 <= value <= QUOTA_MAX:
            raise ValueError(f"{info.field_name} must be from 0 (no limit) to {QUOTA_MAX} images (got {value})")
        return value

    @field_validator("quota_exempt_roles", mode="before")
    @classmethod
    def _roles(cls, value: object) -> object:
        if isinstance(value, str):
            value = parse_words(value)
        if isinstance(value, (list, tuple)):
            roles = tuple(sorted({str(v).strip() for v in value if str(v).strip()}))
            if not all(r.isdigit() for r in roles):
                raise ValueError("quota_exempt_roles must be role ids (numbers), comma-separated")
            return roles
        return value

    @field_validator("style")
    @classmethod
    def _style(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        name = style_name(value)  # "none" (or empty) stores "no default style"
        known = (info.context or {}).get("styles")
        if name and known is not None and name not in known:
            raise ParamError("style '{name}' is unknown; known styles: {known} (the operator defines them in the "
                             "panel's Styles tab)", name=value.strip(),
                             known=", ".join(sorted(known)) or Phrase("none yet"))
        return name

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # empty: the first offered model; choose_model's ParamError is a ValueError and keeps its phrase
        return choose_model(value, _limits(info).models) if value.strip() else ""

    @field_validator("models_allowed", "loras_allowed", mode="before")
    @classmethod
    def _allowed(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        names = [str(n).lower() for n in (parse_words(value.replace(" ", ",")) if isinstance(value, str) else value)]
        if names in (["all"], []):
            return ()  # every offered one
        what = "models" if info.field_name == "models_allowed" else "loras"
        offered = [e.name for e in getattr(_limits(info), what)]
        unknown = [n for n in names if n not in offered]
        if unknown:
            raise ValueError(f"{info.field_name}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                             f"offered; offered: {', '.join(offered) or 'none'} (or all)")
        return tuple(dict.fromkeys(names))

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            return str(resolve_size(value, _limits(info).sizes))
        except SizeError as exc:
            raise ParamError("size: {why}", why=exc.phrase) from None

    @field_validator("steps", "max_steps", "count", "max_count", "per_user_cap", "guidance")
    @classmethod
    def _in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        limits = _limits(info)
        top = {"steps": limits.max_steps, "max_steps": limits.max_steps, "count": limits.max_count,
               "max_count": limits.max_count, "per_user_cap": PER_USER_CAP_MAX,
               "guidance": limits.max_guidance}[str(info.field_name)]
        low = 0 if info.field_name == "guidance" else 1
        if value != value or not low <= value <= top:  # NaN fails too
            raise ParamError("{name} must be from {lo} to {hi} (got {value})", name=info.field_name, lo=low,
                             hi=f"{top:g}", value=f"{value:g}")
        return round(value, 4) if info.field_name == "guidance" else value

    @field_validator("nsfw_threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:  # NaN fails too
            raise ValueError(f"nsfw_threshold is an NSFW score: above 0 and at most 1 (got {value:g})")
        return round(value, 4) if value is not None else None

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return clean_prompt(value, allow_empty=True)
        except ParamError as exc:
            raise ValueError(str(exc)) from None


def _limits(info: ValidationInfo) -> Limits:
    assert isinstance(info.context, dict), "validate with context={'limits': ...}"
    return info.context["limits"]


def _explain(exc: ValidationError) -> str | Phrase:
    """The first error of a validation as one sentence naming the setting and what is allowed (a validator's own
    ParamError keeps its phrase, to be said in the member's language)."""
    err = exc.errors()[0]
    if isinstance(err.get("ctx", {}).get("error"), ParamError):
        return err["ctx"]["error"].phrase
    name = str(err["loc"][0]) if err.get("loc") else "value"
    kind, got = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"unknown setting '{name}'; known: {', '.join(DEFAULT_FIELDS)}"
    if kind == "literal_error":
        allowed = {"scheduler": SCHEDULERS, "pictures": PICTURE_RULES}.get(name, NSFW_POLICIES)
        return Phrase.of("{name} '{value}' is unknown; use one of {known}", name=name, value=got,
                         known=", ".join(allowed))
    if kind.startswith("bool"):
        return Phrase.of("{name} must be true or false (got '{value}')", name=name, value=got)
    if kind.startswith(("int", "float")):
        return Phrase.of("{name} must be a number (got '{value}')" if kind.startswith("float") else
                         "{name} must be a whole number (got '{value}')", name=name, value=got)
    return str(err["msg"]).removeprefix("Value error, ")


def validate_overrides(raw: dict[str, Any], limits: Limits, styles: Collection[str] | None = None) -> dict[str, Any]:
    """Check and normalise a partial set of defaults (from the panel or ``/settings``): only the values given
    (``None``: no override); ParamError names the first wrong setting and what is allowed; ``styles``: names allowed."""
    try:
        model = _Overrides.model_validate(raw, context={"limits": limits, "styles": styles})
    except ValidationError as exc:
        raise ParamError(_explain(exc)) from None
    return model.model_dump(exclude_none=True)


class Policy:
    """Owner of the run-time defaults and blocklists of every scope (loaded once, then in memory)."""

    def __init__(self, settings: EngineSettings, styles: StyleBook | None = None,
                 audit: AuditLog | None = None) -> None:
        self.settings = settings
        self._audit = audit  # every change is written to the moderation log
        self.styles = styles or StyleBook()  # a default style must name one of them
        self.limits = Limits.from_settings(settings)
        self.env_defaults = Defaults.from_settings(settings)
        self._store: JobStore | None = None
        self._overrides: dict[str, dict[str, Any]] = {}
        self._blocklists: dict[str, list[str]] = {}
        self._env_words = sorted({w for w in map(moderation.normalize_word, settings.blocklist) if w})
        self._lock = asyncio.Lock()  # the panel and /settings may change one scope at the same moment

    def load(self, store: JobStore) -> None:
        """Read every scope's overrides and blocklist (blocking; call off the event loop)."""
        self._store = store
        self._blocklists = store.all_blocklists()
        for scope in store.override_scopes():
            self._overrides[scope] = self._still_valid(scope, store.get_overrides(scope))

    def _still_valid(self, scope: str, stored: dict[str, Any]) -> dict[str, Any]:
        """Stored overrides that still fit the deployment's bounds (SIZES, MAX_STEPS... may have changed); one that no
        longer fits is ignored with a warning, so requests relying on it keep working."""
        kept: dict[str, Any] = {}
        for key, value in stored.items():
            try:
                kept.update(validate_overrides({key: value}, self.limits, self.styles.names()))
            except ParamError as exc:
                if key in ("models_allowed", "loras_allowed"):  # still a restriction: a name no longer offered
                    kept[key] = tuple(str(v).lower() for v in value)  # matches nothing, it never widens the list
                    continue
                log.warning("ignoring the stored %s default %s=%r: %s", scope, key, value, exc)
        return kept

    def offer(self, offer: Offer) -> None:
        """Bound requests by what the catalogue offers now (engine/rules/catalogue.py calls this on each change)."""
        self.limits = replace(self.limits, models=offer.models, loras=offer.loras)

    # --- defaults -------------------------------------------------------------------------------

    def defaults(self, guild_id: str | None = None) -> Defaults:
        """Effective defaults of a scope: the environment, then the global overrides (the operator's), then the
        server's (or ELSEWHERE's), held under the operator's ceilings (engine/rules/ceilings.py)."""
        operator = self._operator()
        if not guild_id:
            return operator
        return within(operator, self._own(str(guild_id), operator))[0]

    def capped(self, guild_id: str) -> tuple[Phrase, ...]:
        """Why some of a server's own values do not apply: each one above the operator's, and what applies."""
        operator = self._operator()
        return within(operator, self._own(guild_id, operator))[1]

    def _operator(self) -> Defaults:
        return self.env_defaults.merged(self._overrides.get(GLOBAL, {}))

    def _own(self, scope: str, operator: Defaults) -> Defaults:
        if scope == ELSEWHERE:  # the operator's own place: NSFW_POLICY_ELSEWHERE, then the panel's values
            operator = replace(operator, nsfw_policy=self.settings.nsfw_policy_elsewhere or operator.nsfw_policy)
        return operator.merged(self._overrides.get(scope, {}))

    def place_scope(self, guild_id: str | None, place: Place) -> str:
        """Whose rules hold where a request was made: the server's where the server added the bot (or the
        operator gave it values of its own), else ELSEWHERE (DMs, group DMs, user installs in servers without the
        bot), where only the operator has a say."""
        if guild_id and (place.guild_installed or self._overrides.get(str(guild_id))
                         or self._blocklists.get(str(guild_id))):
            return str(guild_id)
        return ELSEWHERE

    def place_defaults(self, guild_id: str | None, place: Place) -> Defaults:
        """The defaults in force where a request was made (``place_scope``)."""
        return self.defaults(self.place_scope(guild_id, place))

    def quota_defaults(self, guild_id: str | None, place: Place) -> Defaults:
        """The quotas in force where a request was made; outside servers (DMs, group DMs) only the member's, since
        there is no server to share a server-wide quota with."""
        defaults = self.place_defaults(guild_id, place)
        return defaults if guild_id else replace(defaults, quota_server_day=0, quota_server_hour=0)

    def nsfw_rule(self, guild_id: str | None, place: Place) -> tuple[str, float]:
        """The NSFW policy and threshold where a request was made (``place_defaults``); "allow" in a channel
        marked NSFW (age-restricted), the only place where flagged images are posted as they are."""
        defaults = self.place_defaults(guild_id, place)
        return ("allow" if place.channel_nsfw else defaults.nsfw_policy), defaults.nsfw_threshold

    def quota_exempt(self, guild_id: str | None, role_ids: Collection[str]) -> bool:
        """Whether a member with these roles has no quota in this server (one of its exempt roles)."""
        if guild_id is None:
            return False
        exempt = set(self.defaults(guild_id).quota_exempt_roles)
        return any(str(role) in exempt for role in role_ids)

    def parent_defaults(self, scope: str) -> Defaults:
        """What a scope's values fall back to when it stores none: the environment for GLOBAL, else global (with
        NSFW_POLICY_ELSEWHERE for ELSEWHERE)."""
        if scope == GLOBAL:
            return self.env_defaults
        operator = self._operator()
        return replace(operator, nsfw_policy=self.settings.nsfw_policy_elsewhere or operator.nsfw_policy) \
            if scope == ELSEWHERE else operator

    def overrides(self, scope: str) -> dict[str, Any]:
        """The stored overrides of a scope."""
        return dict(self._overrides.get(scope, {}))

    def override_scopes(self) -> list[str]:
        """Scopes that have overrides."""
        return sorted(s for s, v in self._overrides.items() if v)

    async def set_defaults(self, scope: str, changes: dict[str, Any], *, actor: str = OPERATOR) -> Defaults:
        """Validate and store changes to a scope's defaults, in force for the next request; ``None`` removes an
        override. Raises ParamError with the allowed range. ``actor`` (who changed it) goes to the moderation log."""
        async with self._lock:
            clean = validate_overrides(changes, self.limits, self.styles.names())
            current = dict(self._overrides.get(scope, {}))
            current.update(clean)
            for key, value in changes.items():
                if value is None:
                    current.pop(key, None)
            effective = self.parent_defaults(scope).merged(current)
            # a default above its own limit would make every request that relies on it fail
            for value, top in (("steps", "max_steps"), ("count", "max_count")):
                if getattr(effective, value) > getattr(effective, top):
                    raise ParamError("{name} {value} is above {top} {limit}; lower {name} or raise {top}", name=value,
                                     value=getattr(effective, value), top=top, limit=getattr(effective, top))
            await asyncio.to_thread(self._require_store().set_overrides, scope, current)
            self._overrides[scope] = current
        await self._log(scope, actor, "settings", ", ".join(f"{k}={'(default)' if v is None else v}"
                                                            for k, v in changes.items()))
        return self.defaults(None if scope == GLOBAL else scope)

    async def reset_defaults(self, scope: str, *, actor: str = OPERATOR) -> None:
        """Remove every override of a scope."""
        async with self._lock:
            await asyncio.to_thread(self._require_store().set_overrides, scope, {})
            self._overrides.pop(scope, None)
        await self._log(scope, actor, "settings", "reset to the defaults above")

    async def _log(self, scope: str, actor: str, kind: str, detail: str) -> None:
        if self._audit is not None and detail:
            await self._audit.record(scope, actor, kind, detail)

    # --- blocklists -----------------------------------------------------------------------------

    def blocklist(self, scope: str) -> list[str]:
        """Blocked words of a scope (GLOBAL includes the BLOCKLIST variable's words)."""
        # every list is loaded at start, so a scope missing here has no words (no disk read per /imagine)
        words = list(self._blocklists.get(scope, ()))
        if scope == GLOBAL:
            words = sorted(set(words) | set(self._env_words))
        return words

    async def set_blocklist(self, scope: str, words: list[str], *, actor: str = OPERATOR) -> list[str]:
        """Replace a scope's blocked words (normalised); returns what was stored."""
        clean = sorted({w for w in map(moderation.normalize_word, words) if w})
        async with self._lock:
            before = set(self._blocklists.get(scope, ()))
            await asyncio.to_thread(self._require_store().set_blocklist, scope, clean)
            self._blocklists[scope] = clean
        added, dropped = sorted(set(clean) - before), sorted(before - set(clean))
        await self._log(scope, actor, "blocklist", ", ".join([*(f"+{w}" for w in added), *(f"-{w}" for w in dropped)]))
        return clean

    async def edit_blocklist(self, scope: str, *, block: str = "", unblock: str = "", actor: str = OPERATOR
                             ) -> list[str]:
        """Add the comma/newline-separated words of ``block`` and drop those of ``unblock``."""
        drop = {moderation.normalize_word(w) for w in parse_words(unblock)}
        kept = [w for w in self._blocklists.get(scope, ()) if w not in drop]
        return await self.set_blocklist(scope, kept + parse_words(block), actor=actor)

    def blocked_words(self, prompt: str, scope: str | None) -> list[str]:
        """Blocklist entries (global and the scope's: a server's, or ELSEWHERE's) found in a prompt; empty when
        it is fine."""
        words = self.blocklist(GLOBAL) + (self.blocklist(str(scope)) if scope else [])
        return moderation.find_blocked(prompt, words)

    def _require_store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the engine is not started")
        return self._store
