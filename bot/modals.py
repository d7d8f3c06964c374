"""The forms (modals) the bot opens, and reading what a submitted form holds.

A form's ``custom_id`` names what it is for (``imagine:editform:<job>``), and its submission is
answered by a listener (bot/cogs/forms.py) that matches that id, never by a Modal object kept in
memory: discord.py would forget such an object on a restart, and the submission would fail while
the form was still open on the user's screen. The "Vary with Imagine" form names a picture that only
the bot's memory holds (its URL does not fit in a custom_id), so after a restart it says so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import discord

from bot.components import PREFIX
from bot.i18n.speech import say
from engine.requests.params import GenerationParams

# Discord's limits for a text input's value and a form's title and labels
TEXT_INPUT_MAX = 4000
TITLE_MAX = 45
LABEL_MAX = 45

EDIT_FORM = "editform"
# the key is optional here only to answer forms opened before keys existed (they are refused, saying why)
EDIT_FORM_RE = re.compile(rf"{PREFIX}:{EDIT_FORM}:(?P<job>\d+)(?::(?P<key>[0-9a-f]{{16}}))?")
VARY_FORM = "varyform"
VARY_FORM_RE = re.compile(rf"{PREFIX}:{VARY_FORM}:(?P<key>[0-9a-f]+)")
REMIX_FORM = "remixform"
# image "r": a reroll; a number: a variation of that image (0-based), "s" after it: Vary (Subtle)
REMIX_FORM_RE = re.compile(
    rf"{PREFIX}:{REMIX_FORM}:(?P<job>\d+):(?P<image>r|\d+)(?P<subtle>s?):(?P<key>[0-9a-f]{{16}})")
ZOOM_FORM, REGION_FORM = "zoomform", "regionform"
# Custom Zoom of image <image> of <job>; Vary (Region) of it, the chosen cells as hex (bit row * GRID + column)
ZOOM_FORM_RE = re.compile(rf"{PREFIX}:{ZOOM_FORM}:(?P<job>\d+):(?P<image>\d+):(?P<key>[0-9a-f]{{16}})")
REGION_FORM_RE = re.compile(rf"{PREFIX}:{REGION_FORM}:(?P<job>\d+):(?P<image>\d+):(?P<cells>[0-9a-f]{{1,7}})"
                            rf"(?P<private>:p)?:(?P<key>[0-9a-f]{{16}})")
PROMPT_FIELD, NEGATIVE_FIELD, STRENGTH_FIELD, ZOOM_FIELD = "prompt", "negative", "strength", "zoom"


class FormKeys:
    """Keys that bind a form to the member it was shown to, so nobody else can submit it (a forged submission
    names a job and a key, and the key is an HMAC of both with the member's id under a secret of the bot's)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def key(self, subject: str, user_id: int) -> str:
        """The key of form ``subject`` (e.g. ``edit:12``) for member ``user_id``: 16 hex digits."""
        return hmac.new(self._secret, f"{subject}:{user_id}".encode(), hashlib.sha256).hexdigest()[:16]

    def valid(self, subject: str, user_id: int, key: str | None) -> bool:
        """Whether ``key`` is the one this member was shown for this form."""
        return key is not None and hmac.compare_digest(key, self.key(subject, user_id))


def edit_subject(job_id: int) -> str:
    """What an Edit form's key covers: the job it edits."""
    return f"{EDIT_FORM}:{job_id}"


def edit_form_id(job_id: int, key: str) -> str:
    """``imagine:editform:<job>:<key>``: the id of the Edit form of a job, as shown to one member."""
    return f"{PREFIX}:{EDIT_FORM}:{job_id}:{key}"


def _text(label: str, custom_id: str, default: str, *, required: bool, placeholder: str,
          style: discord.TextStyle = discord.TextStyle.paragraph, max_length: int = TEXT_INPUT_MAX
          ) -> discord.ui.TextInput[Any]:
    """A text input (``label`` and ``placeholder`` already in the member's language)."""
    if len(label) > LABEL_MAX:  # Discord would refuse the whole form (400 / 50035): never let one out
        raise ValueError(f"text input label {label!r} is over Discord's {LABEL_MAX} characters")
    return discord.ui.TextInput(label=label, custom_id=custom_id, style=style, default=default[:max_length] or None,
                                required=required, max_length=max_length, placeholder=placeholder)


def _unkept(form: discord.ui.Modal) -> discord.ui.Modal:
    # a stopped modal is not stored by discord.py (send_modal keeps only unfinished ones): its submission
    # goes to the listener, the same before and after a restart
    form.stop()
    return form


def _words(form: discord.ui.Modal, params: GenerationParams, placeholder: str, locale: str) -> discord.ui.Modal:
    form.add_item(_text(say(locale, "Prompt"), PROMPT_FIELD, params.typed_prompt, required=True,
                        placeholder=say(locale, placeholder)))
    form.add_item(_text(say(locale, "Negative prompt"), NEGATIVE_FIELD, params.typed_negative, required=False,
                        placeholder=say(locale, "What to keep out of the image (empty: nothing)")))
    return form


def edit_form(job_id: int, params: GenerationParams, key: str, locale: str = "") -> discord.ui.Modal:
    """The Edit form of a job, filled in with the words the user wrote (without a style's additions); ``key``
    binds it to the member it is shown to (``FormKeys``); in ``locale``, the member's language."""
    form = discord.ui.Modal(title=say(locale, "Edit and rerun job {job}", job=job_id)[:TITLE_MAX],
                            custom_id=edit_form_id(job_id, key), timeout=None)
    return _unkept(_words(form, params, "What to draw; inline parameters such as --steps 30 work too", locale))


def remix_subject(job_id: int, image: int | None, subtle: bool = False) -> str:
    """What a remix form's key covers: the job, and the image it varies (``r``: a reroll; ``s``: subtly)."""
    return f"{REMIX_FORM}:{job_id}:{'r' if image is None else image}{'s' if subtle else ''}"


def remix_form(job_id: int, image: int | None, params: GenerationParams, key: str,
               subtle: bool = False, locale: str = "") -> discord.ui.Modal:
    """Remix mode's form before a Reroll (``image`` None), a V or Vary button: the job's words to change first."""
    what = say(locale, "Remix: reroll job {job}", job=job_id) if image is None else \
        say(locale, "Remix: vary image {image} of job {job}", image=image + 1, job=job_id)
    form = discord.ui.Modal(title=what[:TITLE_MAX], timeout=None,
                            custom_id=f"{PREFIX}:{remix_subject(job_id, image, subtle)}:{key}")
    return _unkept(_words(form, params, "What to draw now; inline parameters such as --steps 30 work too", locale))


def canvas_subject(form: str, job_id: int, image: int, cells: int = 0, private: bool = False) -> str:
    """What a Custom Zoom (``form`` ZOOM_FORM) or Vary (Region) (REGION_FORM: its ``cells``, and ``private`` when the
    image's message was: its form is opened from the private grid, which cannot tell) form's key covers."""
    if form != REGION_FORM:
        return f"{form}:{job_id}:{image}"
    return f"{form}:{job_id}:{image}:{cells:x}" + (":p" if private else "")


def zoom_form(job_id: int, image: int, params: GenerationParams, key: str, locale: str = "") -> discord.ui.Modal:
    """Custom Zoom: the zoom-out factor and the words for the new border, bound to a member by ``key``."""
    form = discord.ui.Modal(title=say(locale, "Custom Zoom: image {image} of job {job}", image=image + 1,
                                      job=job_id)[:TITLE_MAX], timeout=None,
                            custom_id=f"{PREFIX}:{canvas_subject(ZOOM_FORM, job_id, image)}:{key}")
    form.add_item(_text(say(locale, "Zoom out by (1.1 to 2)"), ZOOM_FIELD, "2", required=True, placeholder="2",
                        style=discord.TextStyle.short, max_length=8))
    return _unkept(_words(form, params, "What the wider picture shows; inline parameters work too", locale))


def region_form(job_id: int, image: int, cells: int, private: bool, params: GenerationParams,
                key: str, locale: str = "") -> discord.ui.Modal:
    """Vary (Region): the words for the chosen ``cells`` (the rest of the image stays), bound to a member by ``key``;
    ``private``: the image's message was, so the result is too."""
    form = discord.ui.Modal(title=say(locale, "Vary (Region): image {image} of job {job}", image=image + 1,
                                      job=job_id)[:TITLE_MAX], timeout=None,
                            custom_id=f"{PREFIX}:{canvas_subject(REGION_FORM, job_id, image, cells, private)}:{key}")
    return _unkept(_words(form, params, "What the chosen cells show now; inline parameters work too", locale))


def vary_form_id(key: str) -> str:
    """``imagine:varyform:<key>``: the id of a "Vary with Imagine" form; ``key`` names the picture in memory."""
    return f"{PREFIX}:{VARY_FORM}:{key}"


def vary_form(key: str, prompt: str, strength: float, locale: str = "") -> discord.ui.Modal:
    """The "Vary with Imagine" form: what to make of the picture (filled in from the message) and how far."""
    form = discord.ui.Modal(title=say(locale, "Vary with Imagine"), custom_id=vary_form_id(key), timeout=None)
    form.add_item(_text(say(locale, "Prompt"), PROMPT_FIELD, prompt, required=True,
                        placeholder=say(locale, "What the new images show; inline parameters such as --ar 16:9 work "
                                                "too")))
    form.add_item(_text(say(locale, "Strength (0.05 keeps picture, 1 ignores it)"), STRENGTH_FIELD, f"{strength:g}",
                        required=False, placeholder=f"{strength:g}", style=discord.TextStyle.short, max_length=8))
    return _unkept(form)


def submitted_values(data: Any) -> dict[str, str]:
    """custom_id -> value of every text input in a MODAL_SUBMIT's ``data`` (rows, or labels, of inputs)."""
    values: dict[str, str] = {}

    def walk(components: Any) -> None:
        for component in components or []:
            if not isinstance(component, dict):
                continue
            if component.get("type") == 1:  # an action row
                walk(component.get("components"))
            elif component.get("type") == 18:  # a label around one input
                walk([component.get("component")])
            elif component.get("type") == 4 and component.get("custom_id"):
                values[str(component["custom_id"])] = str(component.get("value") or "")

    walk((data or {}).get("components"))
    return values
