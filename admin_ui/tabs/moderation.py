"""Moderation tab: blocked words (global and per server) and each server's NSFW policy."""

from __future__ import annotations

from typing import Any

import gradio as gr

from admin_ui.context import PanelContext, ScopeError, error, note, ok
from engine.gpu.safety import policy_summary
from engine.requests.params import NSFW_POLICIES, PICTURE_RULES, ParamError
from engine.rules import moderation
from engine.rules.policy import GLOBAL, parse_words


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
    message = gr.HTML()

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
    demo.load(refresh_scopes, outputs=[scope], api_name="moderation_scopes", concurrency_limit=None,
              show_progress="hidden")
    demo.load(load, inputs=[scope], outputs=[words, env_note, policy, threshold, message], api_name="moderation_form",
              concurrency_limit=None, show_progress="hidden")


__all__ = ["build"]
