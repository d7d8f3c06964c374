"""The buttons under a job's message, as plain components, and the one definition of their ``custom_id``.

The job id (and for V and U buttons the image index) lives in each ``custom_id``, so a click on a message
from before a restart still names its job. The DynamicItems in ``bot.cogs.buttons`` match clicks with
the templates below, built from the same pieces as the ids, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

import discord

from bot.i18n.speech import say
from engine.requests.canvas_edits import GRID, cell_name

PREFIX = "imagine"
_JOB = r"(?P<job>\d+)"
_IMAGE = r"(?P<image>\d+)"

# the actions whose button carries only the job id: imagine:<action>:<job>
REROLL, INFO, DELETE, EDIT, PNG, CANCEL = "reroll", "info", "delete", "edit", "png", "cancel"
# the first row of a result, in order (Discord allows 5 buttons per row)
RESULT_ACTIONS = (REROLL, INFO, DELETE, EDIT, PNG)
# per-image actions also carry the 0-based image index: imagine:<action>:<job>:<image>. Under a grid: V (vary) and
# U (select: the image alone, with its own buttons); under a single image: Vary (Subtle), Vary (Strong) (= V),
# Upscale (Subtle) (= the U of messages from before the single-image message) and Upscale (Creative)
VARY, UPSCALE, SELECT, VARY_SUBTLE, UPSCALE_CREATIVE = "vary", "upscale", "select", "varysubtle", "upcreative"
# V buttons go below the first row, then U buttons, 5 per row (MAX_COUNT <= 10 keeps them within Discord's 5 rows)
VARY_PER_ROW = 5


@dataclass(frozen=True)
class ButtonLook:
    """How a job button looks (its behaviour lives with its DynamicItem)."""

    label: str
    emoji: str
    style: discord.ButtonStyle
    what: str  # what it does, as /help says it


LOOKS: dict[str, ButtonLook] = {
    REROLL: ButtonLook("Reroll", "\U0001f3b2", discord.ButtonStyle.primary, "the same request with new seeds"),
    INFO: ButtonLook("Info", "\u2139\ufe0f", discord.ButtonStyle.secondary,
                     "every parameter and an /imagine line per image, only for you"),
    DELETE: ButtonLook("Delete", "\U0001f5d1\ufe0f", discord.ButtonStyle.danger,
                       "removes the result (yours, or with Manage Messages)"),
    EDIT: ButtonLook("Edit", "\u270f\ufe0f", discord.ButtonStyle.secondary,
                     "change the prompts in a form; a new job with the same settings"),
    PNG: ButtonLook("PNG", "\U0001f4be", discord.ButtonStyle.secondary,
                    "the lossless originals with their parameters, only for you"),
    CANCEL: ButtonLook("Cancel", "\u2716\ufe0f", discord.ButtonStyle.secondary,
                       "stops your job while it waits or runs"),
}
VARY_WHAT = "new images that keep image n's composition"
SELECT_WHAT = "image n alone, with its own buttons"


def job_custom_id(action: str, job_id: int) -> str:
    """``imagine:<action>:<job>``, the id of a Reroll, Info, Delete, Edit, PNG or Cancel button."""
    return f"{PREFIX}:{action}:{job_id}"


def job_template(action: str) -> str:
    """The regular expression a DynamicItem uses to recognise ``job_custom_id(action, ...)``."""
    return f"{PREFIX}:{action}:{_JOB}"


def image_template(action: str) -> str:
    """The regular expression a DynamicItem uses to recognise ``image_custom_id(action, ...)``."""
    return f"{PREFIX}:{action}:{_JOB}:{_IMAGE}"


def image_custom_id(action: str, job_id: int, image: int) -> str:
    """``imagine:<action>:<job>:<image>``, the id of a per-image button of image ``image`` (0-based)."""
    return f"{PREFIX}:{action}:{job_id}:{image}"


VARY_TEMPLATE = image_template(VARY)
UPSCALE_TEMPLATE = image_template(UPSCALE)


def job_button(action: str, job_id: int, locale: str = "") -> discord.ui.Button[discord.ui.View]:
    """The Reroll, Info, Delete, Edit, PNG or Cancel button of a job (first row), labelled in ``locale``."""
    look = LOOKS[action]
    return discord.ui.Button(label=say(locale, look.label), emoji=look.emoji, style=look.style, row=0,
                             custom_id=job_custom_id(action, job_id))


def vary_button(job_id: int, image: int) -> discord.ui.Button[discord.ui.View]:
    """The V<n> button that makes variations of image ``image`` (0-based) of a job."""
    return discord.ui.Button(label=f"V{image + 1}", style=discord.ButtonStyle.secondary,
                             row=1 + image // VARY_PER_ROW, custom_id=image_custom_id(VARY, job_id, image))


def select_button(job_id: int, image: int, images: int = 1) -> discord.ui.Button[discord.ui.View]:
    """The U<n> button that posts image ``image`` (0-based) of a job of ``images`` images alone, with its own
    buttons (below the V rows)."""
    first_row = 1 + math.ceil(images / VARY_PER_ROW)
    return discord.ui.Button(label=f"U{image + 1}", style=discord.ButtonStyle.secondary,
                             row=min(4, first_row + image // VARY_PER_ROW),
                             custom_id=image_custom_id(SELECT, job_id, image))


# canvas edits (engine/requests/canvas_edits.py) under a single image: Zoom Out by a factor in the id (zoom2,
# zoom1.5), Custom Zoom (a form), Vary (Region) (a grid to choose cells from, then a form) and a pan per direction
ZOOM_FACTORS = ("2", "1.5")
CUSTOM_ZOOM, REGION = "zoomcustom", "region"
PAN_DIRECTIONS = ("left", "right", "up", "down")
ZOOM_TEMPLATE = rf"{PREFIX}:zoom(?P<factor>{'|'.join(re.escape(f) for f in ZOOM_FACTORS)}):{_JOB}:{_IMAGE}"
PAN_TEMPLATE = rf"{PREFIX}:pan(?P<direction>{'|'.join(PAN_DIRECTIONS)}):{_JOB}:{_IMAGE}"
# the select menu under a Vary (Region) grid: imagine:regionpick:<job>:<image>, one option per cell, and ":p" when
# the image's message was private (the grid is always private, so it cannot tell)
REGION_PICK = "regionpick"
REGION_PICK_TEMPLATE = rf"{PREFIX}:{REGION_PICK}:{_JOB}:{_IMAGE}(?P<private>:p)?"
PAN_WHAT = "Pan: the canvas grows that way, only the new part is painted"

# the buttons under a single image, row by row: (action, label or None for an arrow, emoji, what /help says)
SINGLE_ROWS: tuple[tuple[tuple[str, str | None, str, str], ...], ...] = (
    ((VARY_SUBTLE, "Vary (Subtle)", "\U0001fab6", "new images that stay close to this one"),
     (VARY, "Vary (Strong)", "\U0001f300", "new images that keep this one's composition"),
     (UPSCALE, "Upscale (Subtle)", "\U0001f50d", "this image at twice the size, details added"),
     (UPSCALE_CREATIVE, "Upscale (Creative)", "\u2728", "twice the size, with more new detail")),
    (("zoom2", "Zoom Out 2x", "\U0001f50e", "the image at half size in the middle, a new border around it"),
     ("zoom1.5", "Zoom Out 1.5x", "\U0001f50e", "the same with a narrower border"),
     (CUSTOM_ZOOM, "Custom Zoom", "\U0001f4d0", "a form: your own factor (1.1 to 2) and words"),
     (REGION, "Vary (Region)", "\U0001f58c\ufe0f", "choose cells of a grid; only they are painted again")),
    tuple((f"pan{d}", None, emoji, PAN_WHAT) for d, emoji in zip(
        PAN_DIRECTIONS, ("\u2b05\ufe0f", "\u27a1\ufe0f", "\u2b06\ufe0f", "\u2b07\ufe0f"), strict=True)),
)
SINGLE_ACTIONS = tuple(action for row in SINGLE_ROWS for action in row)


def per_image_button(action: str, job_id: int, image: int, locale: str = "") -> discord.ui.Button[discord.ui.View]:
    """One of the SINGLE_ACTIONS buttons of image ``image`` (0-based) of a job, on its row, labelled in ``locale``."""
    row, (_, label, emoji, _what) = next((r, a) for r, actions in enumerate(SINGLE_ROWS) for a in actions
                                         if a[0] == action)
    return discord.ui.Button(label=say(locale, label) if label else None, emoji=emoji,
                             style=discord.ButtonStyle.secondary, row=row,
                             custom_id=image_custom_id(action, job_id, image))


def _static(*items: discord.ui.Item[discord.ui.View]) -> discord.ui.View:
    # clicks are routed by the DynamicItems, so the view is stopped: discord.py then does not keep it in
    # its view store (one entry per message, forever)
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()
    return view


def result_view(job_id: int, images: int, *, upscaled: bool = False, withheld: Collection[int] = (),
                locale: str = "") -> discord.ui.View:
    """Buttons under a finished result: Reroll, Info, Delete, Edit, PNG, then V1..Vn (variations of image n) and
    U1..Un (image n alone, with its own buttons). An upscaled result has neither: it is already at twice the size.
    Images ``withheld`` by the NSFW policy (0-based) get neither: they are not shown, so not built on."""
    shown = [i for i in range(images) if i not in withheld]
    per_image = [] if upscaled else [*(vary_button(job_id, i) for i in shown),
                                     *(select_button(job_id, i, images) for i in shown)]
    return _static(*(job_button(action, job_id, locale) for action in RESULT_ACTIONS), *per_image)


def single_view(job_id: int, image: int, locale: str = "") -> discord.ui.View:
    """Buttons under one image posted alone (the U<n> of a grid): Vary (Subtle), Vary (Strong), Upscale (Subtle),
    Upscale (Creative); Zoom Out 2x, 1.5x, Custom Zoom, Vary (Region); the four pans."""
    return _static(*(per_image_button(action, job_id, image, locale) for action, *_ in SINGLE_ACTIONS))


def pending_view(job_id: int, locale: str = "") -> discord.ui.View:
    """The button under a queued or running job."""
    return _static(job_button(CANCEL, job_id, locale))


def region_select(job_id: int, image: int, private: bool) -> discord.ui.Select[discord.ui.View]:
    """The select menu under a Vary (Region) grid: one option per cell (A1 top left), as many as the member likes;
    ``private``: the image's own message was."""
    cells = GRID * GRID  # 25: the most options one select menu holds
    custom_id = image_custom_id(REGION_PICK, job_id, image) + (":p" if private else "")
    return discord.ui.Select(custom_id=custom_id, min_values=1, max_values=cells,
                             placeholder="Cells to paint again (A1: top left)",
                             options=[discord.SelectOption(label=cell_name(i), value=str(i)) for i in range(cells)])


def region_picker(job_id: int, image: int, private: bool) -> discord.ui.View:
    """The view under a Vary (Region) grid: its select menu."""
    return _static(region_select(job_id, image, private))
