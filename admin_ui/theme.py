"""The panel's look: a green theme built in code, a bundled font, and CSS over a shipped background.

Everything here renders offline: the font files ship inside the gradio wheel (LocalFont) and the
background is ``admin_ui/assets/background.png``, served by the parent app under ``/brand/``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.themes.utils import colors, fonts, sizes

PRODUCT_NAME = "Imagine"
TAGLINE = "Operator panel for the self-hosted /imagine Discord bot on Segmind SSD-1B."

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BACKGROUND_FILE = ASSETS_DIR / "background.png"
FAVICON_FILE = ASSETS_DIR / "favicon.png"
# public, unauthenticated URLs (relative to the panel root) so the login page can use them too
BRAND_PREFIX = "brand"
BACKGROUND_URL = f"{BRAND_PREFIX}/background.png"

# Montserrat ships in the gradio wheel with exactly these two weights; asking for any other weight
# would make GoogleFont fall back to fonts.googleapis.com, which fails offline
FONT_NAME = "Montserrat"
FONT_WEIGHTS = (400, 700)
FONT_DIR = fonts.STATIC_FONTS_DIR / fonts.font_dir_name(FONT_NAME)
MONO_FONT_NAME = "IBM Plex Mono"
MONO_FONT_WEIGHTS = (400, 600)

# a green-tinted grey, so that neutral surfaces sit on the dark green background without looking grey
moss = colors.Color(
    name="moss",
    c50="#f3f8f4", c100="#e3efe6", c200="#c7dccd", c300="#a2c2ad", c400="#7aa288",
    c500="#58836a", c600="#3f6650", c700="#2d4d3b", c800="#1d3428", c900="#12241b", c950="#0a1711",
)

# surfaces are translucent so the background stays visible behind the blocks
_PANEL = "rgba(7, 28, 19, 0.78)"
_INPUT = "rgba(2, 14, 9, 0.55)"


def build_theme() -> gr.themes.Base:
    """A dark green theme in the spirit of "small_and_pretty": small text, green primary, rounded.

    The background is dark in both browser colour modes, so the light-mode variables copy the
    dark ones: light text on dark panels stays readable whatever the operator's OS prefers.
    """
    theme = gr.themes.Base(
        primary_hue=colors.green,
        secondary_hue=colors.emerald,
        neutral_hue=moss,
        text_size=sizes.text_sm,
        spacing_size=sizes.spacing_sm,
        radius_size=sizes.radius_md,
        font=(fonts.LocalFont(FONT_NAME, weights=FONT_WEIGHTS), "ui-sans-serif", "system-ui", "sans-serif"),
        font_mono=(fonts.LocalFont(MONO_FONT_NAME, weights=MONO_FONT_WEIGHTS), "ui-monospace", "monospace"),
    )
    for name in list(vars(theme)):
        if name.endswith("_dark") and getattr(theme, name) is not None:
            setattr(theme, name[: -len("_dark")], getattr(theme, name))
    theme.set(**_both(
        body_background_fill="#06140d",
        body_text_color="*neutral_50",
        body_text_color_subdued="*neutral_300",
        background_fill_primary=_PANEL,
        background_fill_secondary="rgba(10, 36, 25, 0.72)",
        border_color_primary="rgba(134, 239, 172, 0.16)",
        border_color_accent="*primary_400",
        color_accent="*primary_500",
        color_accent_soft="rgba(34, 197, 94, 0.18)",
        link_text_color="*primary_300",
        link_text_color_hover="*primary_200",
        link_text_color_visited="*primary_300",
        link_text_color_active="*primary_200",
        block_background_fill=_PANEL,
        block_border_color="rgba(134, 239, 172, 0.14)",
        block_label_background_fill="rgba(2, 14, 9, 0.6)",
        block_label_text_color="*neutral_200",
        block_title_text_color="*neutral_100",
        block_info_text_color="*neutral_300",
        block_shadow="0 8px 24px rgba(0, 0, 0, 0.25)",
        panel_background_fill="rgba(7, 28, 19, 0.55)",
        input_background_fill=_INPUT,
        input_background_fill_focus="rgba(2, 14, 9, 0.7)",
        input_border_color="rgba(134, 239, 172, 0.22)",
        input_border_color_focus="*primary_400",
        input_placeholder_color="*neutral_400",
        code_background_fill="rgba(2, 14, 9, 0.6)",
        checkbox_background_color=_INPUT,
        checkbox_border_color="rgba(134, 239, 172, 0.35)",
        checkbox_label_background_fill="rgba(2, 14, 9, 0.45)",
        checkbox_label_background_fill_hover="rgba(22, 101, 52, 0.45)",
        checkbox_label_background_fill_selected="rgba(22, 101, 52, 0.65)",
        checkbox_label_text_color="*neutral_50",
        table_even_background_fill="rgba(2, 14, 9, 0.35)",
        table_odd_background_fill="rgba(10, 36, 25, 0.55)",
        table_border_color="rgba(134, 239, 172, 0.14)",
        button_primary_background_fill="linear-gradient(135deg, *primary_500, *secondary_600)",
        button_primary_background_fill_hover="linear-gradient(135deg, *primary_400, *secondary_500)",
        button_primary_border_color="*primary_500",
        button_primary_text_color="white",
        button_primary_shadow="0 4px 14px rgba(34, 197, 94, 0.35)",
        button_secondary_shadow="none",
        button_cancel_shadow="none",
        button_secondary_background_fill="rgba(134, 239, 172, 0.10)",
        button_secondary_background_fill_hover="rgba(134, 239, 172, 0.20)",
        button_secondary_border_color="rgba(134, 239, 172, 0.28)",
        button_secondary_text_color="*neutral_50",
        button_cancel_background_fill="rgba(220, 38, 38, 0.28)",
        button_cancel_background_fill_hover="rgba(220, 38, 38, 0.45)",
        button_cancel_border_color="rgba(248, 113, 113, 0.45)",
        button_cancel_text_color="#fecaca",
        error_background_fill="rgba(127, 29, 29, 0.55)",
        error_border_color="#f87171",
        error_text_color="#fee2e2",
        stat_background_fill="*primary_600",
        loader_color="*primary_400",
        slider_color="*primary_500",
    ), block_radius="*radius_lg", button_large_radius="*radius_lg")
    return theme


def _both(**values: Any) -> dict[str, Any]:
    """The same values for the light and the dark variant of each variable (where one exists)."""
    accepted = inspect.signature(gr.themes.Base.set).parameters
    out = dict(values)
    out.update({f"{k}_dark": v for k, v in values.items() if f"{k}_dark" in accepted})
    return out


CSS = f"""
.gradio-container {{
    background-color: #06140d;
    background-image: url('{BACKGROUND_URL}');
    background-size: cover;
    background-position: center top;
    min-height: 100vh;
    color: var(--body-text-color);
}}
/* keep the layout readable on wide screens without stretching text fields across the monitor */
.gradio-container > .main {{ max-width: 1280px; margin: 0 auto; }}
#imagine-header {{ padding: 10px 4px 2px; }}
#imagine-header h1 {{
    margin: 0; font-size: 2.1rem; font-weight: 700; letter-spacing: 0.02em; color: #f0fdf4;
    text-shadow: 0 2px 18px rgba(34, 197, 94, 0.35);
}}
#imagine-header h1 .dot {{ color: #4ade80; }}
#imagine-header p {{ margin: 4px 0 0; color: #bbf7d0; font-size: 0.95rem; }}
#imagine-header .logout {{ float: right; margin: 10px 0 0; }}
#imagine-header .logout button {{
    background: none; border: 0; padding: 0; cursor: pointer; color: #bbf7d0; font: inherit; font-size: 0.85rem;
    text-decoration: underline;
}}
.imagine-banner {{
    border-radius: 10px; padding: 8px 14px; margin: 4px 0;
    background: rgba(250, 204, 21, 0.14); border: 1px solid rgba(250, 204, 21, 0.45); color: #fef9c3;
}}
.imagine-banner.failed {{
    background: rgba(239, 68, 68, 0.16); border-color: rgba(248, 113, 113, 0.5); color: #fee2e2;
}}
.imagine-note {{ color: #d1fae5; }}
.imagine-error {{ color: #fecaca; font-weight: 700; }}
.imagine-ok {{ color: #86efac; font-weight: 700; }}
.imagine-progress {{ height: 8px; border-radius: 999px; background: rgba(134, 239, 172, 0.15); overflow: hidden; }}
.imagine-progress > div {{ height: 100%; background: linear-gradient(90deg, #22c55e, #10b981); transition: width .3s; }}
/* Markdown and tables inherit the light body colour on the dark panels */
.prose, .prose * {{ color: inherit; }}
.tab-nav button, [role="tab"] {{ font-weight: 700; }}
/* the unfilled part of a slider track is drawn with --neutral-200, far too bright on dark panels */
.gradio-container input[type=range] {{ --neutral-200: rgba(134, 239, 172, 0.2); }}
.imagine-status {{ border-collapse: collapse; min-width: 420px; background: rgba(7, 28, 19, 0.78);
    border-radius: 12px; overflow: hidden; border: 1px solid rgba(134, 239, 172, 0.16); }}
.imagine-status th, .imagine-status td {{ padding: 9px 16px; text-align: left;
    border-bottom: 1px solid rgba(134, 239, 172, 0.10); border-left: 0; border-right: 0; border-top: 0; }}
.imagine-status th {{ color: #a7f3d0; font-weight: 400; width: 200px; }}
.imagine-status td {{ color: #f0fdf4; font-weight: 700; }}
.imagine-status td.model {{ font-family: var(--font-mono); font-weight: 400; }}
.imagine-status.state-ready td.state {{ color: #86efac; }}
.imagine-status.state-loading td.state {{ color: #fde68a; }}
.imagine-status.state-failed td.state {{ color: #fca5a5; }}
"""


__all__ = [
    "ASSETS_DIR", "BACKGROUND_FILE", "BACKGROUND_URL", "BRAND_PREFIX", "CSS", "FAVICON_FILE", "FONT_DIR",
    "FONT_NAME", "FONT_WEIGHTS", "PRODUCT_NAME", "TAGLINE", "build_theme",
]
