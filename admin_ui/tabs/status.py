"""Status tab: the model, the device, throughput and uptime; also feeds the loading banner."""

from __future__ import annotations

import html
import re

import gradio as gr

from admin_ui.context import PanelContext
from engine.ops.status import EngineStatus

REFRESH_SECONDS = 5.0


def banner(status: EngineStatus) -> str:
    """The line at the top of every tab while the model is not ready (empty when it is)."""
    if status.model_state == "loading" and status.remote:
        return ('<div class="imagine-banner">No GPU worker is ready. Playground and Discord jobs are queued and '
                'start as soon as one connects (python -m engine.worker with the same NATS_URL and MODEL_ID).</div>')
    if status.model_state == "loading":
        return ('<div class="imagine-banner">The model is still loading. Playground and Discord jobs are queued '
                'and start as soon as it is ready.</div>')
    if status.model_state == "failed":
        return (f'<div class="imagine-banner failed">The model failed to load: '
                f'{html.escape(status.model_error or "unknown error", quote=False)} '
                f'Check MODEL_ID and DEVICE, then restart the service.</div>')
    return ""


def report(status: EngineStatus, discord: str | None = None) -> str:
    """The status as an HTML table (plain words, no emoji: servers often lack an emoji font).

    ``discord`` is the bot's connection state in words; None leaves the row out.
    """
    state = {"ready": "loaded", "loading": "loading…"}.get(status.model_state, "failed")
    if status.model_state == "failed":
        state += f": {status.model_error}"
    spi = f"{status.seconds_per_image:.2f} s" if status.seconds_per_image else "— (no images yet)"
    rows = [
        ("Model", status.model_id),
        ("Models offered", ", ".join(status.models) + (f" (loaded: {', '.join(status.loaded)})" if status.loaded
                                                       else "")),
        ("LoRAs offered", ", ".join(status.loras) or "none (LORAS is not set)"),
        ("State", state),
        ("Device", status.device or "—"),
        ("Precision", status.dtype or "—"),
        ("GPU memory", status.gpu_memory or "— (not on a GPU)"),
        ("Fast mode", "available" if status.fast_available else "not available"),
        ("Image safety", f"{status.safety}, flags images scoring {status.nsfw_threshold:g} or more (servers may "
                         f"set their own)" if status.safety else "off (SAFETY_MODEL_ID is not set)"),
        ("Queue", f"{status.queued} queued, {status.running} running"),
        ("Jobs in the last hour", str(status.jobs_last_hour)),
        ("Mean time per image", spi),
        ("Uptime", _duration(status.uptime_seconds)),
    ]
    if discord is not None:
        rows.insert(0, ("Discord", discord))
    if status.remote:
        rows.append(("GPU workers", f"{sum(w.state == 'ready' for w in status.workers)} ready of "
                                    f"{len(status.workers)} connected"))
    body = "".join(f'<tr><th>{html.escape(name)}</th>'
                   f'<td class="{_css(name)}">{html.escape(value, quote=False)}</td></tr>' for name, value in rows)
    table = f'<table class="imagine-status state-{status.model_state}">{body}</table>'
    return table + (workers_table(status) if status.remote else "")


def workers_table(status: EngineStatus) -> str:
    """One row per live GPU worker (NATS_URL): where it runs, its state, load and speed."""
    if not status.workers:
        return '<p class="imagine-workers-none">No GPU worker is connected; jobs wait in the queue.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("Worker", "Device", "State", "Busy", "Fast mode", "Time per image",
                                              "Last heard"))
    rows = []
    for w in status.workers:
        state = w.state + (f": {w.error}" if w.error else "")
        cells = (w.name, f"{w.device} {w.dtype}".strip(), state, f"{w.busy} of {w.slots}", "yes" if w.fast else "no",
                 f"{w.seconds_per_image:.2f} s" if w.seconds_per_image else "—", f"{w.seen_seconds_ago:.0f} s ago")
        rows.append("<tr>" + "".join(f"<td>{html.escape(c, quote=False)}</td>" for c in cells) + "</tr>")
    return f'<table class="imagine-workers"><tr>{head}</tr>{"".join(rows)}</table>'


def _css(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name.lower()).strip("-")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def build(ctx: PanelContext, demo: gr.Blocks, banner_box: gr.HTML) -> None:
    """Add the Status tab's components and events to the current Blocks."""
    engine = ctx.engine
    status_now = engine.status()
    table = gr.HTML(report(status_now, ctx.discord()))
    timer = gr.Timer(REFRESH_SECONDS)

    async def refresh() -> tuple[str, str]:
        """The current status table and the banner."""
        current = engine.status()  # in memory only: no need to leave the event loop
        return report(current, ctx.discord()), banner(current)

    timer.tick(refresh, outputs=[table, banner_box], api_name="status", concurrency_limit=None,
               show_progress="hidden")
    demo.load(refresh, outputs=[table, banner_box], api_name="status_load", concurrency_limit=None,
              show_progress="hidden")


__all__ = ["banner", "build", "report", "workers_table"]
