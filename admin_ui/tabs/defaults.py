"""Defaults tab: the global defaults and per-server overrides that /imagine uses at once."""

from __future__ import annotations

from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.engine_settings import SCHEDULERS
from engine.requests.params import ParamError
from engine.rules.policy import GLOBAL

# the fields this tab edits, in the order of the form (nsfw_policy lives in the Moderation tab)
FIELDS: tuple[str, ...] = ("size", "steps", "guidance", "negative_prompt", "count", "scheduler", "fast",
                           "max_steps", "max_count", "per_user_cap")


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Defaults tab's components and events to the current Blocks."""
    engine = ctx.engine
    limits = engine.policy.limits
    d = engine.policy.defaults()
    gr.Markdown("Changes apply to the next `/imagine` at once. A server inherits the global defaults; only "
                "the values you change for it are stored, so the rest keeps following the global ones.")
    scope = gr.Dropdown(ctx.scope_choices(), value=GLOBAL, allow_custom_value=True, label="Scope",
                        info="Global, a server the bot is in, or type a server id")
    with gr.Row():
        size = gr.Dropdown([str(s) for s in limits.sizes], value=d.size, label="Size")
        scheduler = gr.Dropdown(list(SCHEDULERS), value=d.scheduler, label="Scheduler")
        count = gr.Number(value=d.count, precision=0, label="Images per request")
    with gr.Row():
        steps = gr.Number(value=d.steps, precision=0, label="Steps", info=f"1 to {limits.max_steps}")
        guidance = gr.Number(value=d.guidance, label="Guidance (CFG)", info=f"0 to {limits.max_guidance:g}")
        fast = gr.Checkbox(value=d.fast, label="Fast mode by default")
    negative = gr.Textbox(value=d.negative_prompt, label="Negative prompt", lines=2)
    with gr.Row():
        max_steps = gr.Number(value=d.max_steps, precision=0, label="Max steps a user may ask for")
        max_count = gr.Number(value=d.max_count, precision=0, label="Max images per request")
        per_user_cap = gr.Number(value=d.per_user_cap, precision=0, label="Jobs per user at once")
    with gr.Row():
        save = gr.Button("Save", variant="primary")
        reset = gr.Button("Reset this scope", variant="stop")
    message = gr.HTML()
    with gr.Accordion("Stored values for this scope", open=False):
        stored = gr.JSON(label="Overrides")
    form = [size, steps, guidance, negative, count, scheduler, fast, max_steps, max_count, per_user_cap]

    def form_values(scope_id: str) -> list[Any]:
        current = engine.policy.defaults(None if scope_id == GLOBAL else scope_id)
        return [getattr(current, name) for name in FIELDS]

    async def load(scope_value: str) -> tuple[Any, ...]:
        """Show the effective defaults of a scope."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return (*[gr.skip()] * len(FIELDS), error(str(exc)), gr.skip())
        return (*form_values(scope_id), note(f"Showing {ctx.scope_label(scope_id)}."), engine.policy.overrides(scope_id))

    async def save_defaults(scope_value: str, *values: Any) -> tuple[Any, ...]:
        """Validate and store the form for a scope (inputs in FIELDS order after the scope)."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc)), gr.skip(), gr.skip()
        parent = engine.policy.parent_defaults(scope_id)  # what a value falls back to when not stored here
        changes: dict[str, Any] = {}
        for name, value in zip(FIELDS, values, strict=True):
            if isinstance(value, str) and name != "negative_prompt":
                value = value.strip() or None
            # store only what differs from the level above; None removes a stored value
            changes[name] = None if value is None or value == getattr(parent, name) else value
        try:
            await engine.policy.set_defaults(scope_id, changes)
        except ParamError as exc:
            return error(f"Not saved: {exc}. Correct it and press Save again."), gr.skip(), gr.skip()
        return (ok(f"Saved {ctx.scope_label(scope_id)}; the next /imagine uses them."), engine.policy.overrides(scope_id),
                gr.update(choices=ctx.scope_choices()))

    async def reset_defaults(scope_value: str) -> tuple[Any, ...]:
        """Remove this tab's stored values for a scope, so it follows the level above again."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return (*[gr.skip()] * len(FIELDS), error(str(exc)), gr.skip())
        await engine.policy.set_defaults(scope_id, {name: None for name in FIELDS})
        return (*form_values(scope_id), ok(f"Reset {ctx.scope_label(scope_id)}."), engine.policy.overrides(scope_id))

    async def refresh_scopes() -> Any:
        return gr.update(choices=ctx.scope_choices())

    scope.change(load, inputs=[scope], outputs=[*form, message, stored], api_name="load_defaults",
                 concurrency_limit=None)
    save.click(save_defaults, inputs=[scope, *form], outputs=[message, stored, scope], api_name="save_defaults",
               concurrency_limit=None)
    reset.click(reset_defaults, inputs=[scope], outputs=[*form, message, stored], api_name="reset_defaults",
                concurrency_limit=None)
    demo.load(refresh_scopes, outputs=[scope], api_name="defaults_scopes", concurrency_limit=None,
              show_progress="hidden")
    demo.load(load, inputs=[scope], outputs=[*form, message, stored], api_name="defaults_form",
              concurrency_limit=None, show_progress="hidden")


__all__ = ["FIELDS", "build"]
