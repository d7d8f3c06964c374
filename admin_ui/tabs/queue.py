"""Queue tab: queued and running jobs, refreshed by a timer, with cancel by job id."""

from __future__ import annotations

from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, error, ok

HEADERS = ["id", "user", "guild", "prompt", "position", "progress"]
REFRESH_SECONDS = 2.0
PROMPT_CHARS = 80


def rows(ctx: PanelContext) -> list[list[Any]]:
    """One row per active job: running first, then queued in the order they will run."""
    out: list[list[Any]] = []
    for entry in ctx.engine.queue_snapshot():
        job = entry.job
        who = job.requester.user_name or job.requester.user_id
        if job.requester.source == "admin":
            who = f"{who} (panel)"
        prompt = job.params.prompt if len(job.params.prompt) <= PROMPT_CHARS else job.params.prompt[:PROMPT_CHARS] + "…"
        position = "running" if entry.position == 0 else str(entry.position)
        progress = f"{entry.step}/{entry.total}" if entry.position == 0 else "waiting"
        out.append([job.id, who, ctx.guild_label(job.requester.guild_id), prompt, position, progress])
    return out


def table(ctx: PanelContext) -> dict[str, Any]:
    """The Dataframe value (headers stay even when the queue is empty)."""
    return {"headers": HEADERS, "data": rows(ctx)}


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Queue tab's components and events to the current Blocks."""
    engine = ctx.engine
    gr.Markdown(f"Jobs from Discord and from this panel, in the order they will run. Refreshes every "
                f"{REFRESH_SECONDS:g} s.")
    jobs = gr.Dataframe(value=table(ctx), headers=HEADERS, interactive=False, wrap=True, label="Queue")
    with gr.Row():
        job_id = gr.Number(value=None, label="Job id", precision=0, minimum=0)
        cancel = gr.Button("Cancel job", variant="stop")
    message = gr.HTML()
    timer = gr.Timer(REFRESH_SECONDS)

    async def refresh() -> dict[str, Any]:
        """The current queue."""
        return table(ctx)

    async def cancel_job(value: float | None) -> tuple[str, dict[str, Any]]:
        """Cancel a queued job, or a running one at its next step."""
        if value is None:
            return error("Type the id of a job from the table, then press Cancel."), table(ctx)
        ident = int(value)
        outcome = await engine.cancel(ident)
        messages = {
            "cancelled": ok(f"Cancelled job #{ident}. Its requester is told it was cancelled."),
            "finished": error(f"Job #{ident} has already finished; delete its images in the History tab."),
            "not_found": error(f"There is no job #{ident}; check the id in the table."),
        }
        return messages.get(outcome, error(f"Job #{ident}: {outcome}")), table(ctx)

    timer.tick(refresh, outputs=[jobs], api_name="queue", concurrency_limit=None, show_progress="hidden")
    cancel.click(cancel_job, inputs=[job_id], outputs=[message, jobs], api_name="cancel", concurrency_limit=None)
    demo.load(refresh, outputs=[jobs], api_name="queue_load", concurrency_limit=None, show_progress="hidden")


__all__ = ["HEADERS", "build", "rows"]
