"""History tab: recent results as a gallery, filters, full parameters of the selected item, delete."""

from __future__ import annotations

import datetime as dt
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.jobs.records import Job
from engine.requests.params import GenerationParams
from engine.rules.policy import GLOBAL

LIMIT = 60
CAPTION_CHARS = 48


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the History tab's components and events to the current Blocks."""
    engine = ctx.engine
    with gr.Row():
        user = gr.Textbox(label="User", placeholder="name or id")
        guild = gr.Textbox(label="Server", placeholder="server id or name")
        text = gr.Textbox(label="Prompt contains")
        search = gr.Button("Search", variant="primary", scale=0)
    summary = gr.HTML()
    gallery = gr.Gallery(label="Recent results", columns=6, height=460, object_fit="cover", interactive=False,
                         elem_id="history-gallery",
                         allow_preview=True)
    ids = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            details = gr.JSON(label="Selected result")
        with gr.Column(scale=1):
            job_id = gr.Number(value=None, label="Job id", precision=0, minimum=0)
            show = gr.Button("Show parameters")
            delete = gr.Button("Delete job and images", variant="stop")
            message = gr.HTML()

    def nsfw_threshold(job: Job) -> float:
        """The NSFW threshold of the job's server now (the deployment's outside servers)."""
        return engine.policy.defaults(job.requester.guild_id).nsfw_threshold

    async def find(user_value: str, guild_value: str, text_value: str) -> tuple[Any, list[int], str]:
        """Recent finished jobs matching the filters: (gallery, job ids, summary)."""
        guild_id: str | None = None
        if guild_value and guild_value.strip():
            try:
                guild_id = ctx.scope(guild_value)
            except ScopeError as exc:
                return gr.skip(), gr.skip(), error(str(exc))
            if guild_id == GLOBAL:
                guild_id = None
        jobs = await engine.history(limit=LIMIT, user=(user_value or "").strip() or None, guild=guild_id,
                                    text=(text_value or "").strip() or None)
        # the small delivery copies keep the gallery light; parameters come from the job record
        tiles = [(job, index, path) for job in jobs for index, path in enumerate(job.delivery_paths)]
        staged = await ctx.stage.stage([path for _job, _index, path in tiles])
        items = [(path, _caption(job, index, nsfw_threshold(job)))
                 for (job, index, _src), path in zip(tiles, staged, strict=True)]
        owners = [job.id for job, _index, _src in tiles]
        found = f"{len(jobs)} job(s), {len(items)} image(s)"
        return items, owners, note(found + (" (newest first; narrow the filters to see older ones)"
                                            if len(jobs) >= LIMIT else "."))

    async def job_details(value: float | None) -> dict[str, Any]:
        """Full parameters and facts of one job."""
        if value is None:
            return {}
        job = await engine.get_job(int(value))
        if job is None:
            return {"error": f"there is no job #{int(value)}"}
        return _details(ctx, job, nsfw_threshold(job))

    async def select(owner_ids: list[int], evt: gr.SelectData) -> tuple[Any, dict[str, Any]]:
        """Clicking a tile shows its job."""
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        if not owner_ids or index >= len(owner_ids):
            return gr.skip(), {}
        ident = owner_ids[index]
        return ident, await job_details(ident)

    async def delete_job(value: float | None, user_value: str, guild_value: str,
                         text_value: str) -> tuple[str, dict[str, Any], Any, list[int], str]:
        """Delete a finished job and its files, then refresh the gallery."""
        if value is None:
            return error("Select an image (or type a job id) first, then press Delete."), {}, gr.skip(), gr.skip(), \
                gr.skip()
        ident = int(value)
        job = await engine.get_job(ident)
        if job is not None and job.is_active:
            return error(f"Job #{ident} is still {job.state}; cancel it in the Queue tab first."), {}, gr.skip(), \
                gr.skip(), gr.skip()
        removed = await engine.delete_job(ident)
        if removed is None:
            outcome = error(f"There is no job #{ident}; it may have been deleted already.")
        else:
            await ctx.stage.unstage([*removed.results, *removed.delivery_paths])
            outcome = ok(f"Deleted job #{ident} and its {len(removed.results)} image(s).")
        items, owners, found = await find(user_value, guild_value, text_value)
        return outcome, {}, items, owners, found

    filters = [user, guild, text]
    search.click(find, inputs=filters, outputs=[gallery, ids, summary], api_name="history", concurrency_limit=None)
    for box, name in zip(filters, ("user", "server", "text"), strict=True):
        box.submit(find, inputs=filters, outputs=[gallery, ids, summary], api_name=f"history_by_{name}",
                   concurrency_limit=None, api_visibility="undocumented")
    gallery.select(select, inputs=[ids], outputs=[job_id, details], api_name="history_select",
                   concurrency_limit=None, api_visibility="undocumented")
    show.click(job_details, inputs=[job_id], outputs=[details], api_name="job", concurrency_limit=None)
    delete.click(delete_job, inputs=[job_id, *filters], outputs=[message, details, gallery, ids, summary],
                 api_name="delete", concurrency_limit=None)
    demo.load(find, inputs=filters, outputs=[gallery, ids, summary], api_name="history_load", concurrency_limit=None,
              show_progress="hidden")


def _caption(job: Job, index: int, threshold: float) -> str:
    prompt = job.params.prompt
    if len(prompt) > CAPTION_CHARS:
        prompt = prompt[:CAPTION_CHARS] + "…"
    who = job.requester.user_name or job.requester.user_id
    seeds = job.params.seeds
    seed = seeds[index] if index < len(seeds) else job.params.seed
    source = _source(job.params)
    origin = ""
    if source and source["kind"] == "picture":
        origin = " · from a picture"
    elif source:
        origin = f" · {source.get('edit') or source['kind']} of #{source['job_id']}/{source['image']}"
    safety = ""
    if index < len(job.safety):  # checked by the image safety classifier (SAFETY_MODEL_ID)
        score = job.safety[index]
        safety = f" · NSFW {score:.2f}" + (" (flagged)" if score >= threshold else "")
    return f"#{job.id} · {who} · seed {seed}{origin}{safety} · {prompt}"


def _source(p: GenerationParams) -> dict[str, Any] | None:
    """What an image-to-image job started from: an upscaled or varied result, or a user's picture."""
    if p.edit is not None:  # Zoom Out, Pan, Vary (Region)
        return {"kind": "canvas", "edit": p.edit.label, "job_id": p.source_job, "image": p.source_image + 1}
    if p.upscale > 1:
        return {"kind": "upscale", "job_id": p.source_job, "image": p.source_image + 1, "scale": p.upscale,
                "strength": p.strength}
    if p.source_job is not None:
        return {"kind": "variation", "job_id": p.source_job, "image": p.source_image + 1, "strength": p.strength}
    if p.init_image is not None:
        return {"kind": "picture", "file": p.init_image, "strength": p.strength}
    return None


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _details(ctx: PanelContext, job: Job, threshold: float) -> dict[str, Any]:
    p = job.params
    return {
        "job_id": job.id, "state": job.state, "via": job.requester.source,
        "user": job.requester.user_name or job.requester.user_id, "user_id": job.requester.user_id,
        "server": ctx.guild_label(job.requester.guild_id), "channel_id": job.requester.channel_id,
        "prompt": p.prompt, "negative_prompt": p.negative_prompt, "style": p.style or None,
        "user_prompt": p.typed_prompt, "size": f"{p.width}x{p.height}",
        "steps": p.steps, "guidance": p.guidance, "scheduler": p.scheduler, "fast": p.fast,
        "seed": p.seed, "seeds": p.seeds, "count": p.count,
        "variation_of": ({"job_id": p.source_job, "image": p.source_image + 1, "strength": p.strength}
                         if p.source_job is not None and p.upscale == 1 and not p.canvas else None),
        "source": _source(p),
        "created": _when(job.created_at), "finished": _when(job.finished_at),
        "seconds": round(job.gen_seconds, 2) if job.gen_seconds is not None else None,
        "error": job.error, "files": list(job.results),
        # each image's score from the image safety classifier; None: not checked (no SAFETY_MODEL_ID then)
        "nsfw_scores": list(job.safety) if job.safety else None,
        "nsfw_flagged": [i + 1 for i, score in enumerate(job.safety) if score >= threshold] if job.safety else None,
    }


__all__ = ["LIMIT", "build"]
