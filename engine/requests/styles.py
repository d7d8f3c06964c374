"""Style presets: named wrappers around a user's prompt that the operator defines in the panel.

A style (``engine.requests.params.Style``) is a template around ``{prompt}`` ("cinematic still of {prompt}, film
grain"), a negative prompt added to the user's, and optional defaults for guidance and steps. Users pick one with the
``style`` option or ``--style name``; a server may have a default style. The StyleBook owns the styles
(loaded once, then in memory; the job store keeps them); ``engine.requests.params.build_params`` is the one
place a style is applied, so every front door and every job made from another gets the same words.
"""

from __future__ import annotations

import asyncio
import logging
import re

from engine.jobs.store import JobStore
from engine.requests.checks import MAX_PROMPT_CHARS, ParamError, clean_prompt
from engine.requests.params import PLACEHOLDER, Limits, Style

log = logging.getLogger(__name__)

# what a user types to ask for no style at all, also where the server has a default one
NO_STYLE = "none"
NAME_MAX = 32
# one word (inline parameters end at a space): letters, digits, '-' and '_', lower case
_NAME_RE = re.compile(rf"^[a-z0-9][a-z0-9_-]{{0,{NAME_MAX - 1}}}$")


def style_name(text: str | None) -> str:
    """A style name as stored and matched: trimmed and lower case ("" for none)."""
    name = (text or "").strip().lower()
    return "" if name == NO_STYLE else name


def check_name(text: str) -> str:
    """A valid style name, or ParamError saying what a name may hold."""
    name = style_name(text)
    if not _NAME_RE.match(name):
        raise ParamError(f"style name '{text.strip()}' is not allowed: use 1 to {NAME_MAX} lower-case letters, "
                         f"digits, '-' or '_', starting with a letter or digit (one word, so --style can name it)")
    return name


def make_style(name: str, template: str, negative: str = "", guidance: float | None = None,
               steps: int | None = None, *, limits: Limits) -> Style:
    """A checked style: its name, a template holding ``{prompt}`` once, and values within the deployment's bounds.

    Raises ParamError naming the first thing that is wrong.
    """
    template = clean_prompt(template, allow_empty=True)
    if template.count(PLACEHOLDER) != 1:
        raise ParamError(f"the template must contain {PLACEHOLDER} exactly once, where the user's words go "
                         f"(for example 'cinematic still of {PLACEHOLDER}, film grain')")
    if len(template) - len(PLACEHOLDER) > MAX_PROMPT_CHARS // 2:
        raise ParamError(f"the template is too long; keep it under {MAX_PROMPT_CHARS // 2} characters besides "
                         f"{PLACEHOLDER}, so the user's words still fit")
    if guidance is not None and (guidance != guidance or not 0 <= guidance <= limits.max_guidance):
        raise ParamError(f"the style's guidance must be from 0 to {limits.max_guidance:g} (got {guidance})")
    if steps is not None and not 1 <= steps <= limits.max_steps:
        raise ParamError(f"the style's steps must be from 1 to {limits.max_steps} (got {steps})")
    return Style(check_name(name), template, clean_prompt(negative, allow_empty=True),
                 None if guidance is None else round(float(guidance), 4), None if steps is None else int(steps))


class StyleBook:
    """Owner of the style presets (loaded once, then in memory; the store keeps them across restarts)."""

    def __init__(self) -> None:
        self._styles: dict[str, Style] = {}
        self._store: JobStore | None = None
        self._lock = asyncio.Lock()  # two panel sessions may save the same style at once

    def load(self, store: JobStore) -> None:
        """Read every style (blocking; call off the event loop)."""
        self._store = store
        self._styles = {row["name"]: Style(**row) for row in store.styles()}

    def names(self) -> list[str]:
        """Every style's name, sorted."""
        return sorted(self._styles)

    def get(self, name: str | None) -> Style | None:
        """A style by name (any case), or None."""
        return self._styles.get(style_name(name))

    def search(self, text: str, limit: int = 25) -> list[Style]:
        """Styles whose name starts with ``text``, then those that contain it (for autocomplete)."""
        wanted = style_name(text)
        starts = [s for n, s in sorted(self._styles.items()) if n.startswith(wanted)]
        contains = [s for n, s in sorted(self._styles.items()) if wanted in n and not n.startswith(wanted)]
        return (starts + contains)[:limit]

    def pick(self, requested: str | None, default: str = "") -> Style | None:
        """The style of a request: the one it names (``none``: no style), else the server's default.

        An unknown name the user typed raises ParamError listing the styles; a default that was
        deleted since it was chosen is skipped (the user asked for nothing that does not exist).
        """
        if requested is not None:
            name = style_name(requested)
            if not name:
                return None
            style = self._styles.get(name)
            if style is None:
                if not self.names():
                    raise ParamError("style '{name}' is unknown; no styles are defined on this server",
                                     name=requested.strip())
                raise ParamError("style '{name}' is unknown; known styles: {known}", name=requested.strip(),
                                 known=", ".join(self.names()))
            return style
        style = self._styles.get(style_name(default))
        if default and style is None:
            log.warning("the default style %r no longer exists; using no style", default)
        return style

    async def save(self, style: Style) -> None:
        """Create or replace a style; the next request uses it."""
        async with self._lock:
            await asyncio.to_thread(self._require_store().set_style, style.name,
                                    (style.template, style.negative, style.guidance, style.steps))
            self._styles[style.name] = style

    async def delete(self, name: str) -> bool:
        """Remove a style; False if there is none by that name. Defaults naming it fall back to no style."""
        key = style_name(name)
        async with self._lock:
            removed = await asyncio.to_thread(self._require_store().set_style, key, None)
            self._styles.pop(key, None)
        return removed

    def _require_store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the engine is not started")
        return self._store
