"""A member's own defaults (/prefer): size, steps, guidance, count, negative prompt, fast mode and style, whether
their results reach only them (``private``), remix mode (``remix``: Reroll and V open a form for new words), and
whether their words go to the model in English (``translate``).

They sit between the place's defaults and what a request says: an explicit option or inline parameter wins, and
a preference the place's limits do not allow (steps above this server's maximum, a style deleted since, fast mode
where it is not offered) is left out of that request with a note, never an error that blocks every request.
The job store keeps them; the most recently used members' are kept in memory (at most CACHED).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.jobs.store import JobStore
from engine.requests.checks import Phrase
from engine.requests.params import Defaults, Limits, ParamError, ParamRequest
from engine.requests.sizes import SizeError, resolve_size
from engine.requests.styles import StyleBook
from engine.rules.policy import validate_overrides

# the request fields a member may set a default for (ParamRequest's names)
PREF_FIELDS = ("size", "steps", "guidance", "count", "negative_prompt", "fast", "style")
# switches: results only to the member and Reroll and V opening a form first (remix), both the front door's; the
# member's words into English (translate), a request field
PRIVATE, REMIX, TRANSLATE = "private", "remix", "translate"
SWITCHES = (PRIVATE, REMIX, TRANSLATE)
CACHED = 10_000  # members whose preferences stay in memory


class Preferences:
    """The one owner of members' preferences: validated when set, applied to each of their requests."""

    def __init__(self, store: Callable[[], JobStore], limits: Callable[[], Limits], styles: StyleBook) -> None:
        self._store = store
        self._limits = limits  # read at each use: the catalogue may change the models and LoRAs offered
        self._styles = styles
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = asyncio.Lock()  # two /prefer at once from one member: the later one wins whole

    async def get(self, user_id: str) -> dict[str, Any]:
        """The member's preferences (empty when none)."""
        if user_id in self._cache:
            self._cache.move_to_end(user_id)
            return dict(self._cache[user_id])
        prefs = await asyncio.to_thread(self._store().get_prefs, user_id)
        if user_id not in self._cache:  # a set() while this read ran has cached the newer values: keep those
            self._remember(user_id, prefs)
        return dict(self._cache[user_id])

    def _remember(self, user_id: str, prefs: dict[str, Any]) -> None:
        self._cache[user_id] = prefs
        self._cache.move_to_end(user_id)
        while len(self._cache) > CACHED:
            self._cache.popitem(last=False)

    async def set(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and store changes (``None`` removes one); returns every preference now set. Raises ParamError
        naming the first wrong value and what is allowed."""
        unknown = sorted(set(changes) - {*PREF_FIELDS, *SWITCHES})
        if unknown:
            raise ParamError("no preference named {names}; known: {known}", names=", ".join(unknown),
                             known=", ".join((*PREF_FIELDS, *SWITCHES)))
        clean = validate_overrides({k: v for k, v in changes.items() if v is not None and k not in SWITCHES},
                                   self._limits(), self._styles.names())
        for switch in SWITCHES:
            if changes.get(switch) is not None:
                if not isinstance(changes[switch], bool):
                    raise ParamError("{name} must be true or false (got '{value}')", name=switch, value=changes[switch])
                clean[switch] = changes[switch]
        async with self._lock:
            prefs = await self.get(user_id)
            prefs.update(clean)
            for key, value in changes.items():
                if value is None:
                    prefs.pop(key, None)
            await asyncio.to_thread(self._store().set_prefs, user_id, prefs)
            self._remember(user_id, prefs)
        return dict(prefs)

    async def reset(self, user_id: str) -> None:
        """Forget every preference of the member."""
        async with self._lock:
            await asyncio.to_thread(self._store().set_prefs, user_id, {})
            self._remember(user_id, {})

    def apply(self, req: ParamRequest, prefs: dict[str, Any], defaults: Defaults,
              fast_available: bool) -> tuple[ParamRequest, tuple[Phrase, ...]]:
        """``req`` with the fields it leaves open taken from ``prefs``, and a note for each preference this place
        does not allow (``defaults``: the place's, whose limits still hold)."""
        filled: dict[str, Any] = {}
        notes = []
        # fast mode brings its own steps and guidance (engine/requests/params.py): quality-mode preferences for
        # them would turn a fast job into a slow, broken one
        fast_pref = prefs.get("fast") if fast_available or not prefs.get("fast") else None  # dropped below if so
        fast = req.fast if req.fast is not None else fast_pref if fast_pref is not None else defaults.fast
        for key, value in prefs.items():
            if key not in PREF_FIELDS or getattr(req, key) is not None or (fast and key in ("steps", "guidance")):
                continue
            why = self._not_here(key, value, defaults, fast_available)
            if why:
                notes.append(Phrase.of("Your preferred {why}, so it was left out here (/prefer changes it).", why=why))
                continue
            filled[key] = "none" if key == "style" and not value else value
        if req.translate is None and prefs.get(TRANSLATE):
            filled["translate"] = True
        return (replace(req, **filled) if filled else req), tuple(notes)

    def _not_here(self, key: str, value: Any, defaults: Defaults, fast_available: bool) -> Phrase | None:
        limits = self._limits()
        if key == "size":
            try:
                resolve_size(value, limits.sizes)
            except SizeError:
                return Phrase.of("size {size} is no longer offered", size=value)
        if key == "guidance" and value > limits.max_guidance:
            return Phrase.of("guidance ({value}) is above the maximum of {limit}", value=f"{value:g}",
                             limit=f"{limits.max_guidance:g}")
        # the bounds build_params holds a request to: this place's limits under the deployment's
        max_steps, max_count = min(defaults.max_steps, limits.max_steps), min(defaults.max_count, limits.max_count)
        if key == "steps" and value > max_steps:
            return Phrase.of("steps ({value}) are above this server's maximum of {limit}", value=value, limit=max_steps)
        if key == "count" and value > max_count:
            return Phrase.of("count ({value}) is above this server's maximum of {limit}", value=value, limit=max_count)
        if key == "style" and value and self._styles.get(value) is None:
            return Phrase.of("style '{name}' no longer exists", name=value)
        if key == "fast" and value and not fast_available:
            return Phrase("fast mode is not offered here")
        return None
