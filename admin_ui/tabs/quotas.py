"""Quotas tab: images per UTC day and clock hour, per member and server-wide, and today's usage."""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.requests.params import ParamError
from engine.rules.policy import GLOBAL
from engine.rules.quota import windows

FIELDS: tuple[str, ...] = ("quota_member_day", "quota_member_hour", "quota_server_day", "quota_server_hour",
                           "quota_exempt_roles")
LABELS = {"quota_member_day": "Images per member per day", "quota_member_hour": "Images per member per hour",
          "quota_server_day": "Images per server per day", "quota_server_hour": "Images per server per hour"}


async def usage_table(ctx: PanelContext) -> str:
    """Each server's images today and this hour against its limits, with when each window resets."""
    engine = ctx.engine
    w = windows(time.time())
    rows = []
    for guild, (day, hour) in sorted((await engine.quota_servers()).items()):
        d = engine.policy.defaults(guild)
        cells = (ctx.scope_label(guild), f"{day} of {d.quota_server_day or 'no limit'}",
                 f"{hour} of {d.quota_server_hour or 'no limit'}",
                 f"{d.quota_member_day or 'no limit'} a day, {d.quota_member_hour or 'no limit'} an hour")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c), quote=False)}</td>" for c in cells) + "</tr>")
    resets = (f"The day resets at {time.strftime('%H:%M', time.gmtime(w.day_end))} UTC, the hour at "
              f"{time.strftime('%H:%M', time.gmtime(w.hour_end))} UTC.")
    if not rows:
        return f'<p class="imagine-note">No images in any server today. {resets}</p>'
    head = "".join(f"<th>{h}</th>" for h in ("Server", "Today", "This hour", "Per member"))
    return f'<table class="imagine-quotas"><tr>{head}</tr>{"".join(rows)}</table><p>{resets}</p>'


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Quotas tab's components and events to the current Blocks."""
    engine = ctx.engine
    d = engine.policy.defaults()
    gr.Markdown("Images per UTC day and per clock hour; 0 means no limit. Members with an exempt role, and your "
                "own Playground jobs, are never limited. A server without its own values follows the global ones.")
    scope = gr.Dropdown(ctx.scope_choices(), value=GLOBAL, allow_custom_value=True, label="Scope",
                        info="Global, a server the bot is in, or type a server id")
    with gr.Row():
        numbers = [gr.Number(value=getattr(d, name), precision=0, minimum=0, label=LABELS[name])
                   for name in FIELDS[:4]]
    roles = gr.Textbox(value=", ".join(d.quota_exempt_roles), label="Exempt role ids",
                       info="Comma-separated role ids (Discord: Server Settings → Roles → Copy Role ID)")
    save = gr.Button("Save quotas", variant="primary")
    message = gr.HTML()
    usage = gr.HTML()  # filled when the page loads

    def form(scope_id: str) -> list[Any]:
        current = engine.policy.defaults(None if scope_id == GLOBAL else scope_id)
        return [*(getattr(current, name) for name in FIELDS[:4]), ", ".join(current.quota_exempt_roles)]

    async def load(scope_value: str) -> tuple[Any, ...]:
        """A scope's quotas and today's usage."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return (*[gr.skip()] * len(FIELDS), error(str(exc)), await usage_table(ctx))
        return (*form(scope_id), note(f"Showing {ctx.scope_label(scope_id)}."), await usage_table(ctx))

    async def save_quotas(scope_value: str, *values: Any) -> tuple[Any, ...]:
        """Store the form for a scope; values equal to the level above are not stored."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc)), await usage_table(ctx)
        parent = engine.policy.parent_defaults(scope_id)
        changes: dict[str, Any] = {}
        for name, value in zip(FIELDS, values, strict=True):
            if name == "quota_exempt_roles":
                value = tuple(sorted({r.strip() for r in str(value or "").split(",") if r.strip()}))
            elif value is not None:
                value = int(value)
            changes[name] = None if value is None or value == getattr(parent, name) else value
        try:
            await engine.policy.set_defaults(scope_id, changes)
        except ParamError as exc:
            return error(f"Not saved: {exc}. Correct it and press Save again."), await usage_table(ctx)
        saved = ok(f"Saved quotas for {ctx.scope_label(scope_id)}; they apply to the next /imagine.")
        return saved, await usage_table(ctx)

    inputs = [*numbers, roles]
    scope.change(load, inputs=[scope], outputs=[*inputs, message, usage], api_name="load_quotas",
                 concurrency_limit=None)
    save.click(save_quotas, inputs=[scope, *inputs], outputs=[message, usage], api_name="save_quotas",
               concurrency_limit=None)
    demo.load(load, inputs=[scope], outputs=[*inputs, message, usage], api_name="quotas_form",
              concurrency_limit=None, show_progress="hidden")


__all__ = ["build", "usage_table"]
