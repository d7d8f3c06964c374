"""Playground tab: generate through the same queue as Discord, ahead of users, and watch it run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, error, note, ok
from engine.engine_settings import SCHEDULERS
from engine.jobs.records import Job, JobRequest, Refused, Requester
from engine.requests.loras import LoraEntry
from engine.requests.params import GenerationParams, ParamError, ParamRequest
from engine.rules.policy import GLOBAL

# the operator goes ahead of Discord users, but stays behind a batch that is already running
OPERATOR_PRIORITY = 1
# while nothing happens to the job (queued, model loading) the status line is refreshed this often
HEARTBEAT_SECONDS = 1.0
# progress events can arrive every few ms on a fast GPU; the browser only needs a few per second
MIN_UPDATE_SECONDS = 0.25


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Playground tab's components and events to the current Blocks."""
    engine = ctx.engine
    limits = engine.policy.limits
    d = engine.policy.defaults()
    sizes = [str(s) for s in limits.sizes]
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red fox in the snow, golden hour, 35mm photo")
            negative = gr.Textbox(label="Negative prompt", value=d.negative_prompt, lines=2,
                                  placeholder="ugly, blurry, poor quality")
            with gr.Row():
                size = gr.Dropdown(sizes, value=d.size, label="Size")
                scheduler = gr.Dropdown(list(SCHEDULERS), value=d.scheduler, label="Scheduler")
            with gr.Row():
                steps = gr.Slider(1, limits.max_steps, value=d.steps, step=1, label="Steps")
                guidance = gr.Slider(0, limits.max_guidance, value=d.guidance, step=0.5, label="Guidance (CFG)")
            with gr.Row():
                seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 picks a random seed")
                count = gr.Slider(1, limits.max_count, value=1, step=1, label="Images")
            fast = gr.Checkbox(value=False, label="Fast mode (LCM-LoRA)",
                               info=f"{engine.settings.fast_steps} steps, guidance 1; available once the model "
                                    f"and its LoRA have loaded")
            with gr.Row():
                tile = gr.Checkbox(value=False, label="Seamless tile", info="the image repeats without edges (--tile)")
                model = gr.Dropdown([e.name for e in limits.models], value=limits.models[0].name, label="Model",
                                    info="the Models tab keeps the list", allow_custom_value=True)
            loras = gr.Textbox(label="LoRAs", value="", **_lora_hints(limits.loras))
            generate = gr.Button("Generate", variant="primary", size="lg")
        with gr.Column(scale=6):
            status = gr.HTML(note("Ready. Your jobs go ahead of Discord users in the shared queue."),
                             elem_id="playground-status")
            # shown only while a job runs and a preview has arrived
            preview = gr.Image(label="Preview", type="filepath", visible=False, height=256, interactive=False)
            gallery = gr.Gallery(label="Result", columns=2, height=380, object_fit="contain", interactive=False,
                                 elem_id="playground-gallery")
            summary = gr.HTML()
            with gr.Row(equal_height=True):
                use_defaults = gr.Button("Use as defaults", variant="secondary", size="sm", scale=0, min_width=160)
                use_message = gr.HTML()
            with gr.Accordion("All parameters", open=False):
                details = gr.JSON(label="Parameters and seeds")
    last = gr.State(None)

    async def run(prompt_text: str, negative_text: str, size_value: str, steps_value: float,
                  guidance_value: float, seed_value: float | None, count_value: float, scheduler_value: str,
                  fast_value: bool, tile_value: bool, loras_value: str, model_value: str | None,
                  request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        """Queue one job for the operator and stream its progress, preview and result.

        Outputs: status HTML, preview image, gallery of (image, "seed N"), summary HTML, parameters JSON.
        """
        username = request.username or "admin"
        use_fast = bool(fast_value)
        try:
            seed_int = None if seed_value is None or int(seed_value) < 0 else int(seed_value)
            params = engine.resolve(ParamRequest(
                prompt=prompt_text or "", negative_prompt=negative_text or "", size=size_value,
                # fast mode's steps and guidance are the engine's recipe (FAST_STEPS, guidance 1)
                steps=None if use_fast else int(steps_value),
                guidance=None if use_fast else float(guidance_value),
                seed=seed_int, count=int(count_value), scheduler=scheduler_value, fast=use_fast,
                tile=bool(tile_value), loras=(loras_value or "").strip() or None, model=model_value or None,
            ))
        except (ParamError, TypeError, ValueError) as exc:
            yield error(f"{exc}. Fix it and press Generate again."), _hidden(), [], "", {}, gr.skip()
            return
        requester = Requester(user_id=f"admin:{username}", user_name=username, source="admin")
        # subscribe before submitting: on a fast GPU the job can finish before request() returns
        with engine.subscribe(None) as stream:
            try:
                submission = await engine.request(JobRequest(params, requester, priority=OPERATOR_PRIORITY))
            except Refused as exc:
                yield error(exc.message), _hidden(), [], "", {}, gr.skip()
                return
            job = submission.job
            info = _details(job, params)
            notes = "".join(note(str(n)) for n in submission.notes)  # the panel speaks English
            line = _waiting(ctx, job.id)
            yield line + notes, _hidden(), [], "", info, gr.skip()
            last_update = 0.0
            shown: Any = _hidden()
            try:
                while True:
                    try:
                        event = await stream.next(timeout=HEARTBEAT_SECONDS)
                    except TimeoutError:
                        if engine.position(job.id)[0] != 0:  # still waiting: say where it stands
                            line = _waiting(ctx, job.id)
                        yield line + notes, shown, [], "", info, gr.skip()
                        continue
                    if event.job.id != job.id:
                        continue
                    if event.kind == "done":
                        images = await ctx.stage.stage(event.job.results)
                        captions = [f"seed {s}" for s in params.seeds]
                        yield (ok(f"Done: job #{job.id}, {len(images)} image(s) in "
                                  f"{event.job.gen_seconds or 0:.1f} s.") + notes,
                               _hidden(), list(zip(images, captions, strict=False)), _summary(params),
                               _details(event.job, params), params.to_dict())
                        return
                    if event.kind in ("failed", "cancelled"):
                        reason = event.job.error or "it was cancelled (from the Queue tab or by the bot)."
                        yield error(f"Job #{job.id} did not finish: {reason}"), _hidden(), [], "", info, gr.skip()
                        return
                    if event.kind in ("started", "progress"):
                        now = time.monotonic()
                        line = _progress(job.id, event.step, event.total)
                        if event.preview:
                            path = await ctx.stage.stage_bytes(event.preview, f"job{job.id}-s{event.step}.jpg")
                            shown = gr.update(value=path, visible=True)
                        elif now - last_update < MIN_UPDATE_SECONDS:
                            continue
                        last_update = now
                        yield line + notes, shown, [], "", info, gr.skip()
            finally:
                await ctx.stage.drop_previews(f"job{job.id}-")

    run_inputs = [prompt, negative, size, steps, guidance, seed, count, scheduler, fast, tile, loras, model]
    run_outputs = [status, preview, gallery, summary, details, last]
    generate.click(run, inputs=run_inputs, outputs=run_outputs, api_name="generate", concurrency_limit=8)
    prompt.submit(run, inputs=run_inputs, outputs=run_outputs, api_name="generate_on_enter", concurrency_limit=8,
                  api_visibility="undocumented")

    async def store_as_defaults(params: dict[str, Any] | None) -> str:
        """Make the shown result's size/steps/guidance/negative/scheduler the global defaults."""
        if not params:
            return error("Generate an image first; its settings become the defaults.")
        p = GenerationParams.from_dict(params)
        if p.fast:
            return error("This image used fast mode, whose steps and guidance are fixed. Generate one without "
                         "fast mode to use its settings as defaults.")
        changes = {"size": f"{p.width}x{p.height}", "steps": p.steps, "guidance": p.guidance,
                   "negative_prompt": p.negative_prompt, "scheduler": p.scheduler}
        try:
            await engine.policy.set_defaults(GLOBAL, changes)
        except ParamError as exc:
            return error(f"{exc}. Adjust it in the Defaults tab.")
        return ok(f"Saved as global defaults: {changes['size']}, {p.steps} steps, guidance {p.guidance:g}, "
                  f"{p.scheduler}. The next /imagine uses them.")

    use_defaults.click(store_as_defaults, inputs=[last], outputs=[use_message], api_name="use_as_defaults",
                       concurrency_limit=None)

    async def load_form() -> tuple[Any, ...]:
        """Fill the form from the current global defaults and offer fast mode only when it works."""
        current = engine.policy.defaults()
        status_now = await asyncio.to_thread(engine.status)  # it queries SQLite
        if status_now.fast_available:
            fast_update = gr.update(interactive=True, info=f"{engine.settings.fast_steps} steps, guidance 1")
        elif status_now.model_state == "loading":
            fast_update = gr.update(interactive=False, value=False,
                                    info="Available once the model has loaded (if FAST_LORA_ID is set); "
                                         "reload the page then.")
        else:
            fast_update = gr.update(interactive=False, value=False,
                                    info="Not available: the fast-mode LoRA is not loaded (see FAST_LORA_ID).")
        offered = engine.policy.limits  # the Models tab may have changed what is offered
        names = [e.name for e in offered.models]
        return (current.negative_prompt, current.size, current.steps, current.guidance, current.scheduler,
                fast_update, gr.update(choices=names, value=current.model if current.model in names else names[0]),
                gr.update(**_lora_hints(offered.loras)))

    demo.load(load_form, outputs=[negative, size, steps, guidance, scheduler, fast, model, loras],
              api_name="playground_form", concurrency_limit=None, show_progress="hidden")


def _lora_hints(offered: tuple[LoraEntry, ...]) -> dict[str, str]:
    """The LoRAs field's placeholder and hint: what is offered now."""
    return {"placeholder": " ".join(f"{e.name}:{e.weight:g}" for e in offered[:3]) or "none offered",
            "info": "by name, with weights if you like; offered: " + (", ".join(e.name for e in offered) or
                                                                      "none (add one in the Models tab)")}


def _waiting(ctx: PanelContext, job_id: int) -> str:
    position, eta = ctx.engine.position(job_id)
    state = ctx.engine.model_state
    if state == "loading":
        return note(f"Job #{job_id} is queued; the model is still loading, so it will start once loading "
                    f"finishes.")
    if position <= 0:
        return _progress(job_id, 0, 1)
    ahead = f"{position - 1} job(s) ahead" if position > 1 else "next in line"
    eta_text = f", about {eta:.0f} s" if eta else ""
    return note(f"Job #{job_id} is queued: {ahead}{eta_text}.")


def _hidden() -> Any:
    return gr.update(value=None, visible=False)


def _summary(params: GenerationParams) -> str:
    seeds = ", ".join(str(s) for s in params.seeds)
    mode = " · fast mode" if params.fast else ""
    return note(f"Seed {seeds} · {params.width}x{params.height} · {params.steps} steps · guidance "
                f"{params.guidance:g} · {params.scheduler}{mode}")


def _progress(job_id: int, step: int, total: int) -> str:
    percent = 100 * step / max(1, total)
    return (f'<p class="imagine-note">Job #{job_id}: step {step} of {total}</p>'
            f'<div class="imagine-progress"><div style="width:{percent:.0f}%"></div></div>')


def _details(job: Job, params: GenerationParams) -> dict[str, Any]:
    return {
        "job_id": job.id, "state": job.state, "prompt": params.prompt, "negative_prompt": params.negative_prompt,
        "size": f"{params.width}x{params.height}", "steps": params.steps, "guidance": params.guidance,
        "scheduler": params.scheduler, "fast": params.fast, "seed": params.seed, "seeds": params.seeds,
        "count": params.count, "seconds": job.gen_seconds, "model": params.model,
        "loras": [list(lora) for lora in params.loras], "tile": params.tile,
        "nsfw_scores": list(job.safety) if job.safety else None,  # image safety (SAFETY_MODEL_ID), if on
    }


__all__ = ["OPERATOR_PRIORITY", "build"]
