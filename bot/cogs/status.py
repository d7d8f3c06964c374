"""The Status cog: /status tells anyone how the service is doing."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.replies import reply_ephemeral
from engine.ops.status import EngineStatus
from engine.service import Engine

_MODEL_STATES = {"ready": "ready", "loading": "loading\u2026", "failed": "failed to load"}


def status_text(st: EngineStatus, nsfw_threshold: float) -> str:
    """Model, device, queue, speed and the last hour's jobs, as /status shows them (``nsfw_threshold``: the
    one in force where it was asked)."""
    device = f"{st.device} {st.dtype}" if st.device else ("GPU workers" if st.remote else "not loaded yet")
    lines = [f"**Model:** `{render.safe(st.model_id, 100)}` ({_MODEL_STATES[st.model_state]})",
             f"**Device:** {device}",
             f"**Queue:** {st.queued} waiting \u00b7 {st.running} running",
             f"**Speed:** {st.seconds_per_image:.2f} s per image" if st.seconds_per_image else
             "**Speed:** no images yet",
             f"**Last hour:** {st.jobs_last_hour} jobs"]
    if len(st.models) > 1:
        loaded = f" \u00b7 loaded: {', '.join(st.loaded)}" if st.loaded else ""
        lines.append(f"**Models:** {', '.join(st.models)} (`--model`; the first is the default){loaded}")
    if st.loras:
        lines.append(f"**LoRAs:** {', '.join(st.loras)} (`--lora`)")
    if st.fast_available:
        lines.append("**Fast mode:** available (`--fast`)")
    if st.safety:
        lines.append(f"**Image safety:** `{render.safe(st.safety, 150)}` flags images scoring {nsfw_threshold:g} "
                     f"or more")
    if st.remote:
        lines.append(workers_line(st))
    return "\n".join(lines)


def workers_line(st: EngineStatus) -> str:
    """The GPU workers behind the queue (with NATS_URL), or that none is connected."""
    if not st.workers:
        return "**GPU workers:** none connected — jobs wait in the queue until one starts"
    ready = sum(w.state == "ready" for w in st.workers)
    each = ", ".join(f"{render.safe(w.name, 40)} ({w.device}, {w.state}, {w.busy}/{w.slots} busy"
                     f"{', ' + '+'.join(w.models) if len(st.models) > 1 and w.models else ''})"
                     for w in st.workers[:10])
    return f"**GPU workers:** {ready} of {len(st.workers)} ready — {each}"


class StatusCog(commands.Cog, name="Status"):
    """The service's state for anyone who asks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @app_commands.command(name="status", description="Queue length, model and speed")
    async def status(self, interaction: discord.Interaction) -> None:
        """Answer with the engine's status, only for the user."""
        guild = str(interaction.guild_id) if interaction.guild_id else None
        threshold = self.engine.policy.defaults(guild).nsfw_threshold
        await reply_ephemeral(interaction, status_text(self.engine.status(), threshold))
