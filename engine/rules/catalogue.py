"""The operator's catalogue: the models and LoRAs members may choose, as MODELS and LORAS in .env set them, with the
panel's edits on top (Models tab: add, change, describe, mark NSFW, remove, and reset an entry to its .env form).

The edits are kept in the store as one small JSON value, so they survive restarts; .env stays the base, read at
each start, and an edit names the entry it replaces, so a later change to .env still shows for entries the panel
never touched. The default model (the first of MODELS, or MODEL_ID) is the one every worker keeps loaded: the panel
may describe it, not remove it, move it or restrict it to NSFW channels (change .env and restart for that).

Every change replaces the whole ``Offer`` at once and hands it to the policy (engine/rules/policy.py), whose
bounds the front doors, admission and the Playground read; workers read the same ``Offer`` to find a source by
name (engine/gpu/model_pool.py), so a LoRA or model added here is loaded at its first use, without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from engine.engine_settings import EngineSettings
from engine.jobs.store import JobStore
from engine.requests.checks import ParamError
from engine.requests.loras import MAX_WEIGHT, MIN_WEIGHT, LoraEntry, marked
from engine.requests.models import ModelEntry, Offer, offered_models
from engine.rules.audit import AuditLog
from engine.rules.policy import GLOBAL

log = logging.getLogger(__name__)

Kind = Literal["model", "lora"]
KV_KEY = "catalogue"
MAX_MODELS = 16  # each may take a GPU slot or a load: a long list is a menu nobody can serve
MAX_LORAS_OFFERED = 64  # each is an adapter on every loaded model
DESCRIPTION_MAX = 80  # "name — description" fits a Discord autocomplete choice (100)
TRIGGERS_MAX = 200
SOURCE_MAX = 512
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
OPERATOR = "operator (panel)"


def _text(value: str, what: str, limit: int) -> str:
    text = " ".join((value or "").split())
    if len(text) > limit:
        raise ParamError(f"the {what} is {len(text)} characters; keep it to {limit}")
    return text


def check_source(source: str, kind: Kind, *, local: bool) -> str:
    """A model's or LoRA's source, checked: a hub id (``org/name``), or a path on this host that exists (a
    diffusers directory; for a LoRA also a ``.safetensors`` file). ``local`` False (GPU workers over NATS): paths
    are on the workers' hosts, so only their form is checked here."""
    source = (source or "").strip()
    if not source:
        raise ParamError("the source is empty: give a hub id (org/name) or a path on the GPU host")
    if len(source) > SOURCE_MAX or _CONTROL.search(source):
        raise ParamError(f"the source must be one line of at most {SOURCE_MAX} characters")
    if _HUB_ID.match(source) and not Path(source).exists():
        return source
    if not local:
        return source
    path = Path(source).expanduser()
    if kind == "lora" and path.suffix == ".safetensors":
        if not path.is_file():
            raise ParamError(f"there is no file {source} on this host; check the path, or give a hub id")
        return source
    if not path.is_dir():
        what = "a diffusers model directory" if kind == "model" else "a LoRA directory or .safetensors file"
        raise ParamError(f"'{source}' is neither a hub id (org/name) nor {what} on this host")
    return source


def make_model(name: str, source: str, description: str = "", nsfw: bool = False, *, local: bool = True
               ) -> ModelEntry:
    """A model entry from the panel's fields, checked (ParamError says which field is wrong and why)."""
    name, _ = marked(name or "", "model")
    return ModelEntry(name, check_source(source, "model", local=local), bool(nsfw),
                      _text(description, "description", DESCRIPTION_MAX))


def make_lora(name: str, source: str, weight: float | None = 1.0, triggers: str = "", description: str = "",
              nsfw: bool = False, *, local: bool = True) -> LoraEntry:
    """A LoRA entry from the panel's fields, checked (ParamError says which field is wrong and why)."""
    name, _ = marked(name or "", "LoRA")
    value = 1.0 if weight is None else float(weight)
    if not MIN_WEIGHT <= value <= MAX_WEIGHT:  # NaN fails too
        raise ParamError(f"the default weight must be from {MIN_WEIGHT:g} to {MAX_WEIGHT:g} (got {weight})")
    return LoraEntry(name, check_source(source, "lora", local=local), round(value, 3),
                     _text(triggers, "trigger words", TRIGGERS_MAX), bool(nsfw),
                     _text(description, "description", DESCRIPTION_MAX))


def _entry(kind: Kind, name: str, fields: Any) -> ModelEntry | LoraEntry:
    """A stored edit as an entry, its fields checked the way .env's are (not its source's presence: a file may be
    away for a while)."""
    if not isinstance(fields, dict) or marked(name, kind)[0] != name or fields.get("name") != name:
        raise ValueError("not an entry of that name")
    entry = ModelEntry(**fields) if kind == "model" else LoraEntry(**fields)
    texts = [entry.source, entry.description, *([entry.triggers] if isinstance(entry, LoraEntry) else [])]
    if not all(isinstance(t, str) for t in texts) or not entry.source or not isinstance(entry.nsfw, bool):
        raise ValueError("a field has the wrong type")
    if isinstance(entry, LoraEntry) and not (isinstance(entry.weight, (int, float))
                                             and MIN_WEIGHT <= entry.weight <= MAX_WEIGHT):
        raise ValueError("its weight is out of range")
    return entry


class Catalogue:
    """The one owner of what is offered: .env's entries, the panel's edits, and the ``Offer`` they make."""

    def __init__(self, settings: EngineSettings, store: Callable[[], JobStore], audit: AuditLog,
                 on_change: Callable[[Offer], None]) -> None:
        self._store = store
        self._audit = audit
        self._on_change = on_change  # the policy's bounds follow every change
        self.local = not settings.remote.enabled  # sources are checked on this host only when it runs the model
        self.env = Offer(offered_models(settings.models, settings.model_id), settings.loras)
        # name -> entry (an addition or a replacement) or None (an .env entry removed); dicts keep the panel's order
        self._edits: dict[Kind, dict[str, ModelEntry | LoraEntry | None]] = {"model": {}, "lora": {}}
        self._skipped: dict[Kind, dict[str, Any]] = {"model": {}, "lora": {}}  # stored edits that did not read
        self.offer = self.env  # replaced whole: worker threads read it
        self._lock = asyncio.Lock()

    @property
    def default_model(self) -> str:
        """The default model's name (the first of .env's)."""
        return self.env.models[0].name

    def snapshot(self) -> Offer:
        """What is offered now (safe to call from any thread)."""
        return self.offer

    def load(self, store: JobStore) -> None:
        """Read the panel's edits (blocking; before the policy loads, whose defaults may name what they add). An
        edit that no longer reads as valid is skipped with a warning (and kept as stored, for a later version)."""
        try:
            stored = json.loads(store.kv_get(KV_KEY) or "{}")
            if not isinstance(stored, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            log.warning("ignoring the panel's stored catalogue: %s", exc)
            stored = {}
        for kind in ("model", "lora"):
            edits = stored.get(kind) or {}
            for name, fields in (edits.items() if isinstance(edits, dict) else ()):
                try:
                    if fields is None and kind == "model" and name == self.default_model:
                        raise ParamError("the default model cannot be removed in the panel")
                    self._edits[kind][name] = None if fields is None else self._checked(kind, _entry(kind, name,
                                                                                                      fields))
                except (TypeError, ValueError) as exc:  # ParamError is a ValueError
                    self._skipped[kind][name] = fields
                    log.warning("ignoring the panel's stored %s '%s': %s", kind, name, exc)
        self._publish()

    def origin(self, kind: Kind, name: str) -> str:
        """Where an entry comes from, in words: ``.env``, ``.env, edited in the panel`` or ``panel``."""
        if not any(e.name == name for e in self._env_entries(kind)):
            return "panel"
        return ".env, edited in the panel" if name in self._edits[kind] else ".env"

    def removed(self, kind: Kind) -> list[str]:
        """The .env entries the panel removed (Reset brings one back)."""
        return [name for name, entry in self._edits[kind].items() if entry is None]

    async def save(self, entry: ModelEntry | LoraEntry, *, actor: str = OPERATOR) -> None:
        """Add ``entry``, or replace the entry of its name (ParamError: the catalogue is full, or the default
        model would change in a way only .env may)."""
        kind: Kind = "model" if isinstance(entry, ModelEntry) else "lora"
        async with self._lock:
            entry = self._checked(kind, entry)
            current = self._entries(kind)
            if entry.name not in {e.name for e in current}:
                top = MAX_MODELS if kind == "model" else MAX_LORAS_OFFERED
                if len(current) >= top:
                    raise ParamError(f"{len(current)} {kind}s are offered, the most this catalogue keeps; remove one "
                                     f"first")
            await self._write(kind, entry.name, entry)
        detail = ", ".join(f"{k}={v}" for k, v in asdict(entry).items() if v not in ("", False))
        await self._audit.record(GLOBAL, actor, "catalogue", f"{kind} {entry.name} saved: {detail}")

    async def remove(self, kind: Kind, name: str, *, actor: str = OPERATOR) -> None:
        """Stop offering ``name`` (ParamError: it is not offered, or it is the default model)."""
        name = (name or "").strip().lower()
        async with self._lock:
            if name not in {e.name for e in self._entries(kind)}:
                raise ParamError(f"no {kind} named '{name}' is offered")
            if kind == "model" and name == self.default_model:
                raise ParamError(f"'{name}' is the default model, which every worker keeps loaded; change MODELS in "
                                 f".env and restart to replace it")
            in_env = any(e.name == name for e in self._env_entries(kind))
            await self._write(kind, name, None if in_env else ...)
        await self._audit.record(GLOBAL, actor, "catalogue", f"{kind} {name} removed")

    async def reset(self, kind: Kind, name: str, *, actor: str = OPERATOR) -> None:
        """Drop the panel's edit of an .env entry, which comes back as .env has it (ParamError: nothing to reset)."""
        name = (name or "").strip().lower()
        async with self._lock:
            if name not in self._edits[kind] or not any(e.name == name for e in self._env_entries(kind)):
                raise ParamError(f"'{name}' has no panel edit of an .env entry to reset")
            await self._write(kind, name, ...)
        await self._audit.record(GLOBAL, actor, "catalogue", f"{kind} {name} reset to .env")

    # --- inside ---------------------------------------------------------------------------------

    def _env_entries(self, kind: Kind) -> tuple[ModelEntry | LoraEntry, ...]:
        return self.env.models if kind == "model" else self.env.loras

    def _entries(self, kind: Kind) -> tuple[Any, ...]:
        return self.offer.models if kind == "model" else self.offer.loras

    def _checked(self, kind: Kind, entry: Any) -> Any:
        """``entry`` if the panel may hold it (the default model keeps its .env source and serves every channel)."""
        if kind == "model" and entry.name == self.default_model:
            base = self.env.models[0]
            if entry.source != base.source or entry.nsfw:
                raise ParamError(f"'{entry.name}' is the default model: the panel may change its description only "
                                 f"(its source and NSFW mark come from .env)")
        return entry

    async def _write(self, kind: Kind, name: str, entry: Any) -> None:
        """Apply one edit (``...``: drop the edit), store every edit, then publish the new offer."""
        edits = {k: dict(v) for k, v in self._edits.items()}
        if entry is ...:
            edits[kind].pop(name, None)
        else:
            edits[kind][name] = entry
        text = json.dumps({k: {**self._skipped[k], **{n: None if e is None else asdict(e) for n, e in v.items()}}
                           for k, v in edits.items()})
        await asyncio.to_thread(self._store().kv_set, KV_KEY, text)
        self._edits = edits
        self._publish()

    def _publish(self) -> None:
        self.offer = Offer(self._merged("model"), self._merged("lora"))
        self._on_change(self.offer)

    def _merged(self, kind: Kind) -> tuple[Any, ...]:
        """.env's entries with the panel's replacements and removals, then the panel's additions."""
        edits = self._edits[kind]
        env = self._env_entries(kind)
        kept = [edits.get(e.name, e) for e in env]  # None: removed
        added = [e for name, e in edits.items() if all(x.name != name for x in env)]
        return tuple(e for e in [*kept, *added] if e is not None)
