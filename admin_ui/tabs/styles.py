"""Styles tab: named style presets users pick with /imagine's ``style`` option, and the default style per scope."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.requests.params import PLACEHOLDER, ParamError
from engine.requests.styles import NO_STYLE, make_style
from engine.rules.policy import GLOBAL

NEW = "(new style)"


def styles_table(ctx: PanelContext) -> str:
    """Every style with its template, negative prompt and defaults."""
    styles = [ctx.engine.styles.get(name) for name in ctx.engine.styles.names()]
    if not styles:
        return '<p class="imagine-note">No styles yet. Give one a name and a template, then press Save.</p>'
    rows = []
    for s in styles:
        assert s is not None
        cells = (s.name, s.template, s.negative or "—", "—" if s.guidance is None else f"{s.guidance:g}",
                 "—" if s.steps is None else str(s.steps))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c, quote=False)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Name", "Template", "Negative prompt", "Guidance", "Steps"))
    return f'<table class="imagine-styles"><tr>{head}</tr>{"".join(rows)}</table>'


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Styles tab's components and events to the current Blocks."""
    engine = ctx.engine
    limits = engine.policy.limits
    gr.Markdown(f"A style wraps the user's words in a template (`{PLACEHOLDER}` marks where they go) and adds its "
                "negative prompt to theirs; its guidance and steps replace the server's defaults when the user "
                "sets none. Users pick one with `/imagine style:` or `--style name`; changes apply at once.")
    pick = gr.Dropdown([NEW, *engine.styles.names()], value=NEW, label="Style", allow_custom_value=False)
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="cinematic", info="One word: lower-case letters, digits, - or _")
        guidance = gr.Number(value=None, label="Guidance (optional)", info=f"0 to {limits.max_guidance:g}")
        steps = gr.Number(value=None, precision=0, label="Steps (optional)", info=f"1 to {limits.max_steps}")
    template = gr.Textbox(label="Template", lines=2, placeholder=f"cinematic still of {PLACEHOLDER}, film grain")
    negative = gr.Textbox(label="Negative prompt added", lines=2, placeholder="cartoon, flat colours")
    with gr.Row():
        save = gr.Button("Save style", variant="primary")
        delete = gr.Button("Delete style", variant="stop")
    message = gr.HTML()
    table = gr.HTML(styles_table(ctx))
    gr.Markdown("### Default style\nApplied when a user names no style (`none`: no default). A server without "
                "its own follows the global one; `/settings defaults style:` changes a server's from Discord.")
    with gr.Row():
        scope = gr.Dropdown(ctx.scope_choices(), value=GLOBAL, allow_custom_value=True, label="Scope")
        default = gr.Dropdown([NO_STYLE, *engine.styles.names()], value=engine.policy.defaults().style or NO_STYLE,
                              label="Default style", allow_custom_value=True)
        save_default = gr.Button("Save default", scale=0)
    default_message = gr.HTML()

    def choices(picked: str | None = None) -> tuple[Any, Any]:
        """The two dropdowns' choices after a change (``picked``: select it in the first)."""
        names = engine.styles.names()
        first = gr.update(choices=[NEW, *names]) if picked is None else gr.update(choices=[NEW, *names], value=picked)
        return first, gr.update(choices=[NO_STYLE, *names])

    async def load(value: str) -> tuple[Any, ...]:
        """A style's fields into the form (empty for a new one)."""
        style = engine.styles.get(value) if value and value != NEW else None
        if style is None:
            return "", "", "", None, None
        return style.name, style.template, style.negative, style.guidance, style.steps

    async def save_style(name_value: str, template_value: str, negative_value: str, guidance_value: float | None,
                         steps_value: float | None) -> tuple[Any, ...]:
        """Check and store a style (replacing one of the same name)."""
        try:
            style = make_style(name_value or "", template_value or "", negative_value or "", guidance_value,
                               None if steps_value is None else int(steps_value), limits=limits)
        except ParamError as exc:
            return (error(f"Not saved: {exc}."), gr.skip(), gr.skip(), gr.skip())
        await engine.styles.save(style)
        return (ok(f"Saved the style '{style.name}'; the next /imagine can use it."), styles_table(ctx),
                *choices(style.name))

    async def delete_style(name_value: str) -> tuple[Any, ...]:
        """Remove a style; defaults that name it fall back to no style."""
        if not (name_value or "").strip():
            return error("Pick a style (or type its name) first, then press Delete."), gr.skip(), gr.skip(), gr.skip()
        if not await engine.styles.delete(name_value):
            return error(f"There is no style '{name_value.strip()}'."), gr.skip(), gr.skip(), gr.skip()
        return ok(f"Deleted the style '{name_value.strip()}'."), styles_table(ctx), *choices(NEW)

    async def load_default(scope_value: str) -> tuple[Any, str]:
        """A scope's effective default style."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return gr.skip(), error(str(exc))
        current = engine.policy.defaults(None if scope_id == GLOBAL else scope_id).style
        return current or NO_STYLE, note(f"Showing {ctx.scope_label(scope_id)}.")

    async def store_default(scope_value: str, style_value: str) -> str:
        """Store a scope's default style (validated: it must exist)."""
        try:
            scope_id = ctx.scope(scope_value)
            await engine.policy.set_defaults(scope_id, {"style": style_value or NO_STYLE})
        except (ScopeError, ParamError) as exc:
            return error(f"Not saved: {exc}.")
        return ok(f"Saved the default style of {ctx.scope_label(scope_id)}: {style_value or NO_STYLE}.")

    fields = [name, template, negative, guidance, steps]
    pick.change(load, inputs=[pick], outputs=fields, api_name="load_style", concurrency_limit=None)
    save.click(save_style, inputs=fields, outputs=[message, table, pick, default], api_name="save_style",
               concurrency_limit=None)
    delete.click(delete_style, inputs=[name], outputs=[message, table, pick, default], api_name="delete_style",
                 concurrency_limit=None)
    scope.change(load_default, inputs=[scope], outputs=[default, default_message], api_name="load_default_style",
                 concurrency_limit=None)
    save_default.click(store_default, inputs=[scope, default], outputs=[default_message],
                       api_name="save_default_style", concurrency_limit=None)
    demo.load(lambda: (styles_table(ctx), *choices()), outputs=[table, pick, default], api_name="styles",
              concurrency_limit=None, show_progress="hidden")


__all__ = ["build", "styles_table"]
