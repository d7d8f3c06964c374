"""The panel's Blocks: header, loading banner and the nine tabs."""

from __future__ import annotations

import html

import gradio as gr

from admin_ui.context import NO_DISCORD, DiscordState, GuildNames, PanelContext
from admin_ui.files import Stage
from admin_ui.tabs import defaults, history, models, moderation, playground, queue, quotas, status, styles
from admin_ui.theme import PRODUCT_NAME, TAGLINE
from engine.service import Engine


def header_html() -> str:
    """The product name, one line about it, and a way out."""
    # a form, not a link: logging out is a POST, so no other page can log the operator out with a GET
    return ('<div id="imagine-header"><form method="post" action="logout" class="logout">'
            '<button type="submit">Log out</button></form>'
            f'<h1>{html.escape(PRODUCT_NAME)}<span class="dot">.</span></h1>'
            f'<p>{html.escape(TAGLINE)}</p></div>')


def build_blocks(engine: Engine, stage: Stage, guild_names: GuildNames = lambda: {},
                 discord_state: DiscordState = lambda: NO_DISCORD) -> gr.Blocks:
    """Build the panel for ``engine``; result images are handed to Gradio through ``stage``.

    ``guild_names`` gives server id -> name while the bot is connected (empty in panel-only mode),
    ``discord_state`` the bot's connection state in words (shown on the Status tab).
    Theme and CSS are not set here: Gradio 6 takes them in ``mount_gradio_app`` (see server.py).
    Every event has an explicit ``api_name`` so gradio_client can drive the panel.
    """
    ctx = PanelContext(engine=engine, stage=stage, guild_names=guild_names, discord_state=discord_state)
    with gr.Blocks(title=f"{PRODUCT_NAME} · admin", analytics_enabled=False) as demo:
        gr.HTML(header_html())
        banner_box = gr.HTML(status.banner(engine.status()), elem_id="imagine-banner")
        with gr.Tabs():
            with gr.Tab("Playground", id="playground"):
                playground.build(ctx, demo)
            with gr.Tab("Defaults", id="defaults"):
                defaults.build(ctx, demo)
            with gr.Tab("Styles", id="styles"):
                styles.build(ctx, demo)
            with gr.Tab("Models", id="models"):
                models.build(ctx, demo)
            with gr.Tab("Queue", id="queue"):
                queue.build(ctx, demo)
            with gr.Tab("History", id="history"):
                history.build(ctx, demo)
            with gr.Tab("Moderation", id="moderation"):
                moderation.build(ctx, demo)
            with gr.Tab("Quotas", id="quotas"):
                quotas.build(ctx, demo)
            with gr.Tab("Status", id="status"):
                status.build(ctx, demo, banner_box)
    # handlers are async and cheap (they await the engine), so they need no Gradio-side serialising;
    # the GPU is serialised by the engine's own queue
    demo.queue(default_concurrency_limit=None, max_size=256)
    return demo


__all__ = ["build_blocks", "header_html"]
