"""Moderation tab: blocked words (global and per server), each server's NSFW policy and picture rule, the deny
list, and the moderation log (refused prompts, and who changed what)."""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.gpu.safety import policy_summary
from engine.requests.params import NSFW_POLICIES, PICTURE_RULES, ParamError
from engine.rules import moderation
from engine.rules.audit import AuditLine
from engine.rules.deny import MAX_DAYS
from engine.rules.policy import GLOBAL, OPERATOR, parse_words


def log_table(lines: list[AuditLine], ctx: PanelContext) -> str:
    """The moderation log as an HTML table, newest first (every cell escaped: prompts are members' text)."""
    if not lines:
        return '<p class="imagine-note">Nothing logged yet.</p>'
    head = "".join(f"<th>{h}</th>" for h in ("When (UTC)", "Where", "Who", "What", "Detail"))
    rows = []
    for line in lines:
        cells = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(line.at)), ctx.scope_label(line.scope), line.actor,
                 line.kind, line.detail)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c), quote=False)}</td>" for c in cells) + "</tr>")
    return f'<table class="imagine-log"><tr>{head}</tr>{"".join(rows)}</table>'


def policy_help(checking: bool) -> str:
    """The policy choices explained, as they work with image safety on (``checking``) or off."""
    return " · ".join(f"{p}: {policy_summary(p, checking)}" for p in NSFW_POLICIES)


def build(ctx: PanelContext, demo: gr.Blocks) -> None:
    """Add the Moderation tab's components and events to the current Blocks."""
    engine = ctx.engine
    env_words = sorted({moderation.normalize_word(w) for w in engine.settings.blocklist} - {""})
    gr.Markdown("Prompts containing a blocked word or phrase are refused (whole words; case, accents and "
                "look-alike characters are ignored). A server's list adds to the global one.")
    scope = gr.Dropdown(ctx.scope_choices(), value=GLOBAL, allow_custom_value=True, label="Scope",
                        info="Global, a server the bot is in, or type a server id")
    words = gr.Textbox(label="Blocked words", lines=6, placeholder="one per line, or separated by commas")
    env_note = gr.HTML()
    save_words = gr.Button("Save blocked words", variant="primary")
    policy = gr.Radio(list(NSFW_POLICIES), value=engine.policy.defaults().nsfw_policy, label="NSFW policy",
                      info=policy_help(bool(engine.settings.safety_model_id)))
    threshold = gr.Slider(0.01, 1.0, step=0.01, value=engine.policy.defaults().nsfw_threshold,
                          label="NSFW threshold", visible=bool(engine.settings.safety_model_id),
                          info="The image safety score from which an image counts as NSFW; lower is stricter")
    save_policy = gr.Button("Save NSFW policy", variant="primary")
    pictures = gr.Radio(list(PICTURE_RULES), value=engine.policy.defaults().pictures, label="Members' own pictures",
                        info="/imagine image: and Vary with Imagine — off, in channels marked NSFW only, or anywhere")
    save_pictures = gr.Button("Save picture rule", variant="primary")
    with gr.Row():
        member = gr.Textbox(label="Member id",
                            placeholder="Discord user id (Developer Mode: right-click → Copy User ID)")
        days = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_DAYS, label="Days (0: until lifted)")
        reason = gr.Textbox(label="Reason", placeholder="shown in the log")
    with gr.Row():
        deny_button = gr.Button("Deny in this scope", variant="stop")
        undeny_button = gr.Button("Lift")
    message = gr.HTML()
    log_view = gr.HTML()

    def env_text(scope_id: str) -> str:
        if scope_id == GLOBAL and env_words:
            return note(f"Also blocked everywhere by the BLOCKLIST setting: {', '.join(env_words)} "
                        f"(change it in .env and restart).")
        return ""

    def stored_words(scope_id: str) -> list[str]:
        listed = engine.policy.blocklist(scope_id)
        # the BLOCKLIST variable's words are shown apart: they cannot be removed here
        return [w for w in listed if w not in env_words] if scope_id == GLOBAL else listed

    async def load(scope_value: str) -> tuple[Any, ...]:
        """A scope's blocked words, NSFW policy and NSFW threshold."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), error(str(exc))
        listed = stored_words(scope_id)
        current = engine.policy.defaults(None if scope_id == GLOBAL else scope_id)
        return ("\n".join(listed), env_text(scope_id), current.nsfw_policy, current.nsfw_threshold,
                note(f"Showing {ctx.scope_label(scope_id)}."))

    async def save_blocklist(scope_value: str, text: str) -> tuple[Any, ...]:
        """Replace a scope's blocked words with the textbox's (comma or newline separated)."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return gr.skip(), error(str(exc)), gr.skip()
        stored = await engine.policy.set_blocklist(scope_id, parse_words(text))
        return ("\n".join(stored), ok(f"Saved {len(stored)} blocked word(s) for {ctx.scope_label(scope_id)}; "
                                      f"they apply to the next prompt."), gr.update(choices=ctx.scope_choices()))

    async def save_nsfw_policy(scope_value: str, value: str, score: float) -> str:
        """Store the NSFW policy (allow | spoiler | block) and threshold of a server, or the global default."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc))
        parent = engine.policy.parent_defaults(scope_id)
        # equal to the level above: store nothing, so the server keeps following it
        changes = {"nsfw_policy": None if value == parent.nsfw_policy else value,
                   "nsfw_threshold": None if score == parent.nsfw_threshold else score}
        try:
            await engine.policy.set_defaults(scope_id, changes)
        except ParamError as exc:
            return error(f"Not saved: {exc}.")
        flagged = f", flagging from score {score:g}" if engine.settings.safety_model_id else ""
        return ok(f"NSFW policy for {ctx.scope_label(scope_id)} is now '{value}'{flagged}.")

    async def load_pictures(scope_value: str) -> Any:
        """A scope's rule for members' own pictures."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError:
            return gr.skip()
        return engine.policy.defaults(None if scope_id == GLOBAL else scope_id).pictures

    async def save_picture_rule(scope_value: str, value: str) -> str:
        """Store whether members may start from their own picture in a scope (off | nsfw_only | on)."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc))
        parent = engine.policy.parent_defaults(scope_id)
        try:
            await engine.policy.set_defaults(scope_id, {"pictures": None if value == parent.pictures else value})
        except ParamError as exc:
            return error(f"Not saved: {exc}.")
        return ok(f"Members' own pictures for {ctx.scope_label(scope_id)}: '{value}'.")

    async def deny_member(scope_value: str, user_id: str, day_count: float | None, why: str) -> tuple[str, str]:
        """Keep a member from making images in a scope (global: everywhere), for some days or until lifted."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc)), gr.skip()
        user = (user_id or "").strip()
        if not user.isdigit():
            return error("Type the member's Discord user id (a number), then press Deny again."), gr.skip()
        try:
            entry = await engine.deny_list.deny(scope_id, user, days=float(day_count or 0), reason=why or "",
                                                by_whom=OPERATOR)
        except ValueError as exc:
            return error(f"Not saved: {exc}."), gr.skip()
        until = "until lifted" if entry.until is None else \
            f"until {time.strftime('%Y-%m-%d %H:%M', time.gmtime(entry.until))} UTC"
        done = ok(f"Member {user} may not make images in {ctx.scope_label(scope_id)} {until}.")
        return done, await show_log(scope_id)

    async def undeny_member(scope_value: str, user_id: str) -> tuple[str, str]:
        """Lift a member's entry in a scope."""
        try:
            scope_id = ctx.scope(scope_value)
        except ScopeError as exc:
            return error(str(exc)), gr.skip()
        user = (user_id or "").strip()
        lifted = await engine.deny_list.undeny(scope_id, user, by_whom=OPERATOR)
        text = ok(f"Member {user} may make images in {ctx.scope_label(scope_id)} again.") if lifted else \
            note(f"Member {user} was not denied in {ctx.scope_label(scope_id)}.")
        return text, await show_log(scope_id)

    async def show_log(scope_id: str) -> str:
        denied = engine.deny_list.entries(scope_id)
        listed = ", ".join(e.user_id for e in denied[:50]) or "nobody"
        lines = await engine.audit.lines(limit=50, scope=None if scope_id == GLOBAL else scope_id)
        return (f'<p class="imagine-note">Denied here: {html.escape(listed, quote=False)}</p>'
                + log_table(lines, ctx))

    async def load_log(scope_value: str) -> Any:
        """The deny list and the newest lines of the moderation log of a scope (global: of everything)."""
        try:
            return await show_log(ctx.scope(scope_value))
        except ScopeError:
            return gr.skip()

    async def refresh_scopes() -> Any:
        return gr.update(choices=ctx.scope_choices())

    scope.change(load, inputs=[scope], outputs=[words, env_note, policy, threshold, message],
                 api_name="load_moderation", concurrency_limit=None)
    save_words.click(save_blocklist, inputs=[scope, words], outputs=[words, message, scope], api_name="save_blocklist",
                     concurrency_limit=None)
    save_policy.click(save_nsfw_policy, inputs=[scope, policy, threshold], outputs=[message],
                      api_name="save_nsfw_policy", concurrency_limit=None)
    scope.change(load_pictures, inputs=[scope], outputs=[pictures], api_name="load_pictures", concurrency_limit=None)
    save_pictures.click(save_picture_rule, inputs=[scope, pictures], outputs=[message], api_name="save_pictures",
                        concurrency_limit=None)
    deny_button.click(deny_member, inputs=[scope, member, days, reason], outputs=[message, log_view],
                      api_name="deny_member", concurrency_limit=None)
    undeny_button.click(undeny_member, inputs=[scope, member], outputs=[message, log_view], api_name="undeny_member",
                        concurrency_limit=None)
    scope.change(load_log, inputs=[scope], outputs=[log_view], api_name="moderation_log", concurrency_limit=None)
    demo.load(load_log, inputs=[scope], outputs=[log_view], concurrency_limit=None, show_progress="hidden")
    demo.load(refresh_scopes, outputs=[scope], api_name="moderation_scopes", concurrency_limit=None,
              show_progress="hidden")
    demo.load(load, inputs=[scope], outputs=[words, env_note, policy, threshold, message], api_name="moderation_form",
              concurrency_limit=None, show_progress="hidden")


__all__ = ["build"]
