"""What every tab needs: the engine, guild names, scope choices and operator-facing messages."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from admin_ui.files import Stage
from engine.rules.policy import ELSEWHERE, GLOBAL
from engine.service import Engine

log = logging.getLogger(__name__)

GuildNames = Callable[[], dict[str, str]]
# the bot's connection state in words ("connected", "reconnecting (why)"), from the entry point
DiscordState = Callable[[], str]
GLOBAL_LABEL = "Global (every server)"
ELSEWHERE_LABEL = "Outside servers (DMs, group DMs, user installs)"
NO_DISCORD = "not connected (no Discord bot in this process)"
PANEL_ONLY = "off (DISCORD_TOKEN is not set: the panel runs alone)"
# Discord ids (snowflakes) are 17-20 digits today; accept any plain number so test guilds work too
_GUILD_ID_RE = re.compile(r"^\d{1,25}$")


class ScopeError(ValueError):
    """A scope the operator typed that is neither 'global' nor a server id."""


@dataclass
class PanelContext:
    """Shared state for building the tabs of one panel."""

    engine: Engine
    stage: Stage
    guild_names: GuildNames = field(default=lambda: {})
    discord_state: DiscordState = field(default=lambda: NO_DISCORD)

    def guilds(self) -> dict[str, str]:
        """Server id -> name from the bot; empty in panel-only mode or if the bot cannot answer."""
        try:
            return {str(k): str(v) for k, v in (self.guild_names() or {}).items()}
        except Exception:  # the bot may be reconnecting; the panel must keep working
            log.exception("guild_names provider failed")
            return {}

    def discord(self) -> str:
        """The Discord connection state for the Status tab (never raises)."""
        try:
            return str(self.discord_state())
        except Exception:  # the bot may be half-way through a reconnect; the panel must keep working
            log.exception("discord_state provider failed")
            return "unknown"

    def guild_label(self, guild_id: str | None) -> str:
        """A server's display name ("Name (id)"), or a dash for direct messages / the panel."""
        if not guild_id:
            return "—"
        name = self.guilds().get(str(guild_id))
        return f"{name} ({guild_id})" if name else str(guild_id)

    def scope_choices(self) -> list[tuple[str, str]]:
        """Dropdown choices: global, the bot's servers, and any server that already has settings."""
        names = self.guilds()
        ids = set(names) | {s for s in self.engine.policy.override_scopes() if s not in (GLOBAL, ELSEWHERE)}
        servers = sorted(ids, key=lambda i: (names.get(i, "~").lower(), i))
        return [(GLOBAL_LABEL, GLOBAL), (ELSEWHERE_LABEL, ELSEWHERE)] + [
            (f"{names[i]} ({i})" if i in names else f"Server {i}", i) for i in servers]

    def scope(self, value: str | None) -> str:
        """Normalise a scope from the dropdown (or typed by hand) to 'global' or a server id.

        Raises ScopeError with what to type instead.
        """
        text = (value or "").strip()
        if not text or text.lower() in (GLOBAL, GLOBAL_LABEL.lower()):
            return GLOBAL
        if text.lower() in (ELSEWHERE, ELSEWHERE_LABEL.lower()):
            return ELSEWHERE
        for label, scope in self.scope_choices():
            if text == label:
                return scope
        match = re.search(r"\((\d+)\)$", text)  # "Name (id)" pasted back from a label
        if match:
            return match.group(1)
        for gid, name in self.guilds().items():
            if text.lower() == name.lower():
                return gid
        if _GUILD_ID_RE.match(text):
            return text
        raise ScopeError(
            f"'{text}' is not a server. Pick one from the list, choose '{GLOBAL_LABEL}', or type a server id "
            f"(in Discord: enable Developer Mode, right-click the server, Copy Server ID)."
        )

    def scope_label(self, scope: str) -> str:
        """How a scope is named in messages."""
        if scope == ELSEWHERE:
            return "outside servers (DMs, group DMs, user installs)"
        return "the global defaults" if scope == GLOBAL else f"server {self.guild_label(scope)}"


def ok(text: str) -> str:
    """A success message for an HTML output."""
    return f'<p class="imagine-ok">{html.escape(text, quote=False)}</p>'


def error(text: str) -> str:
    """An error message for an HTML output; the text should say what to do next."""
    return f'<p class="imagine-error">⚠ {html.escape(text, quote=False)}</p>'


def note(text: str) -> str:
    """A neutral note for an HTML output."""
    return f'<p class="imagine-note">{html.escape(text, quote=False)}</p>'


__all__ = ["ELSEWHERE_LABEL", "GLOBAL_LABEL", "NO_DISCORD", "PANEL_ONLY", "DiscordState", "GuildNames", "PanelContext",
           "error", "note", "ok"]
