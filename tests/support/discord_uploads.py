"""What users send the bot, as the Discord emulator models it: files they upload, messages holding them,
message context-menu commands, and autocomplete.

- **Uploads.** A user's file becomes an attachment object (``id, filename, size, url, proxy_url,
  content_type``, and ``width``/``height`` for images, as ``developers/resources/message.mdx`` "Attachment
  Object" lists them) whose ``url`` the emulator serves from its CDN route. Discord refuses an upload
  over the user's limit before any bot sees it (10 MiB without Nitro, the same default as a bot's
  ``attachment_size_limit``), so the emulator refuses it too (ValueError: no client could send it).
  The CDN answers a download with the bytes and the type guessed from the file name; a test can make a
  download fail (``FakeDiscord.fail_downloads``).
- **Attachment options** (type 11) carry the attachment's id as the value and the object under
  ``data.resolved.attachments`` (discord.py's ``namespace.py`` reads it there).
- **Message commands** (type 3) are invoked on a message: ``data.target_id`` and the whole message under
  ``data.resolved.messages`` (``developers/interactions/application-commands.mdx`` "Message Commands").
- **Autocomplete** (interaction type 4) sends the options typed so far with ``focused: true`` on one; the
  only answer allowed is callback type 8 with at most 25 choices, each name 1-100 characters and each
  string value at most 100 (``receiving-and-responding.mdx`` "Autocomplete").

This module imports nothing from the emulator, which imports it.
"""

from __future__ import annotations

import copy
import io
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

MiB = 1024 * 1024
#: What a user without Nitro may upload (and the default the bot's interactions carry).
USER_UPLOAD_LIMIT = 10 * MiB
#: What a user with Nitro may upload.
NITRO_UPLOAD_LIMIT = 500 * MiB
OPTION_ATTACHMENT = 11
OPTION_USER = 6
COMMAND_CHAT_INPUT = 1
COMMAND_MESSAGE = 3
MAX_CHOICES = 25
CHOICE_NAME_MAX = 100
CHOICE_VALUE_MAX = 100


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an image Discord would measure (PNG, JPEG, GIF, WebP), else None."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # not an image: Discord simply omits width and height
        return None


def attachment_object(base_url: str, channel_id: int, att_id: int, filename: str, data: bytes,
                      content_type: str | None, *, limit: int = USER_UPLOAD_LIMIT) -> dict[str, Any]:
    """The attachment object of a user's upload (ValueError when Discord would refuse the upload)."""
    if len(data) > limit:
        raise ValueError(f"{filename} is {len(data)} bytes; Discord refuses uploads over {limit} bytes")
    if not filename or len(filename) > 1024:
        raise ValueError("an attachment needs a file name of 1 to 1024 characters")
    url = f"{base_url}/cdn/attachments/{channel_id}/{att_id}/{quote(filename)}"
    att: dict[str, Any] = {
        "id": str(att_id), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
        "content_type": content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
    }
    dims = image_size(data)
    if dims:
        att["width"], att["height"] = dims
    return att


def resolve_attachment_options(options: list[dict[str, Any]], attachments: Mapping[str, dict[str, Any]]
                               ) -> dict[str, Any]:
    """Replace attachment option values (attachment objects) by their ids; returns ``data.resolved``."""
    resolved: dict[str, Any] = {}
    for option in options:
        if option.get("type") != OPTION_ATTACHMENT:
            continue
        value = option["value"]
        if not isinstance(value, dict) or str(value.get("id")) not in attachments:
            raise ValueError(f"option {option['name']!r} needs an attachment from upload_attachment()")
        option["value"] = str(value["id"])
        resolved.setdefault("attachments", {})[str(value["id"])] = copy.deepcopy(value)
    return resolved


def resolve_user_options(options: list[dict[str, Any]]) -> dict[str, Any]:
    """Replace user option values (FakeUser objects) by their ids; returns their part of ``data.resolved``
    (``users``, as Discord sends for a USER option: discord.py builds the ``discord.User`` from it)."""
    resolved: dict[str, Any] = {}
    for option in options:
        if option.get("type") != OPTION_USER:
            continue
        user = option["value"]
        if not hasattr(user, "to_dict"):
            raise ValueError(f"option {option['name']!r} needs a user (a FakeUser from add_user())")
        option["value"] = str(user.id)
        resolved.setdefault("users", {})[str(user.id)] = user.to_dict()
    return resolved


def message_command_data(command: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` of a message command invoked on ``message``."""
    target = {k: v for k, v in copy.deepcopy(dict(message)).items() if k != "allowed_mentions"}
    return {"id": command["id"], "name": command["name"], "type": COMMAND_MESSAGE, "target_id": str(message["id"]),
            "resolved": {"messages": {str(message["id"]): target}}}


def focus(options: list[dict[str, Any]], focused: str) -> list[dict[str, Any]]:
    """Autocomplete options: ``focused`` marked, every value a string as the user typed it."""
    if focused not in {o["name"] for o in options}:
        raise ValueError(f"the focused option {focused!r} must be one of the options given")
    out = []
    for option in options:
        item = dict(option)
        if item["name"] == focused:
            item["focused"] = True
            item["value"] = str(item["value"])
        out.append(item)
    return out


def choices_errors(choices: Any) -> dict[str, Any]:
    """Errors of an autocomplete answer's ``choices``, shaped like a 50035 body ({} when valid)."""
    if not isinstance(choices, list):
        return {"choices": {"_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}}
    errors: dict[str, Any] = {}
    if len(choices) > MAX_CHOICES:
        errors["choices"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                          "message": f"Must be {MAX_CHOICES} or fewer in length."}]}
    for index, choice in enumerate(choices):
        name, value = choice.get("name"), choice.get("value")
        if not isinstance(name, str) or not 1 <= len(name) <= CHOICE_NAME_MAX:
            errors[f"choices.{index}.name"] = {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH",
                                                            "message": "Must be between 1 and 100 in length."}]}
        if isinstance(value, str) and len(value) > CHOICE_VALUE_MAX:
            errors[f"choices.{index}.value"] = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                             "message": "Must be 100 or fewer in length."}]}
    return errors
