"""The Status cog: /status tells anyone how the service is doing."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.i18n.speech import locale_of, say
from bot.replies import reply_ephemeral
from engine.ops.status import EngineStatus
from engine.service import Engine

_MODEL_STATES = {"ready": "ready", "loading": "loading\u2026", "failed": "failed to load"}


def _field(locale: str, label: str, value: str) -> str:
    return f"**{say(locale, label)}:** {value}"


def status_text(st: EngineStatus, nsfw_threshold: float, locale: str = "") -> str:
    """Model, device, queue, speed and the last hour's jobs, as /status shows them in ``locale`` (``nsfw_threshold``:
    the one in force where it was asked); names, devices and numbers as they are."""
    device = f"{st.device} {st.dtype}" if st.device else say(locale, "GPU workers" if st.remote else "not loaded yet")
    speed = say(locale, "{seconds} s per image", seconds=f"{st.seconds_per_image:.2f}") if st.seconds_per_image else \
        say(locale, "no images yet")
    state = say(locale, _MODEL_STATES[st.model_state])
    lines = [_field(locale, "Model", f"`{render.safe(st.model_id, 100)}` ({state})"),
             _field(locale, "Device", device),
             _field(locale, "Queue", say(locale, "{queued} waiting \u00b7 {running} running", queued=st.queued,
                                         running=st.running)),
             _field(locale, "Speed", speed),
             _field(locale, "Last hour", say(locale, "{jobs} jobs", jobs=st.jobs_last_hour))]
    if len(st.models) > 1:
        loaded = " \u00b7 " + say(locale, "loaded: {names}", names=", ".join(st.loaded)) if st.loaded else ""
        lines.append(_field(locale, "Models", f"{', '.join(st.models)} "
                                              f"{say(locale, '(`--model`; the first is the default)')}{loaded}"))
    if st.loras:
        lines.append(_field(locale, "LoRAs", f"{', '.join(st.loras)} (`--lora`)"))
    if st.fast_available:
        lines.append(_field(locale, "Fast mode", say(locale, "available (`--fast`)")))
    if st.safety:
        lines.append(_field(locale, "Image safety", f"`{render.safe(st.safety, 150)}` " + say(
            locale, "flags images scoring {threshold} or more", threshold=f"{nsfw_threshold:g}")))
    if st.remote:
        lines.append(workers_line(st, locale))
    return "\n".join(lines)


def workers_line(st: EngineStatus, locale: str = "") -> str:
    """The GPU workers behind the queue (with NATS_URL), or that none is connected."""
    if not st.workers:
        return _field(locale, "GPU workers", say(locale, "none connected \u2014 jobs wait in the queue until one "
                                                         "starts"))
    ready = sum(w.state == "ready" for w in st.workers)
    each = ", ".join(f"{render.safe(w.name, 40)} ({w.device}, {w.state}, {w.busy}/{w.slots} busy"
                     f"{', ' + '+'.join(w.models) if len(st.models) > 1 and w.models else ''})"
                     for w in st.workers[:10])
    return _field(locale, "GPU workers", say(locale, "{ready} of {total} ready", ready=ready, total=len(st.workers))
                  + f" \u2014 {each}")


class StatusCog(commands.Cog, name="Status"):
    """The service's state for anyone who asks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @app_commands.command(name="status", description="Queue length, model and speed")
    async def status(self, interaction: discord.Interaction) -> None:
        """Answer with the engine's status, only for the user."""
        guild = str(interaction.guild_id) if interaction.guild_id else None
        threshold = self.engine.policy.defaults(guild).nsfw_threshold
        await reply_ephemeral(interaction, status_text(self.engine.status(), threshold, locale_of(interaction)))
