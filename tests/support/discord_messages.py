"""FakeDiscord's messages: attachments, embeds, creating and editing them under Discord's limits. A mixin:
the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import copy
import mimetypes
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .discord_interaction import FakeInteraction
from .discord_protocol import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
)
from .discord_records import (
    RecordedFile,
    _ApiError,
    _iso,
    _png_size,
)


class MessagesMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

    # ----------------------------------------------------------------------------------------------------------
    # Messages
    # ----------------------------------------------------------------------------------------------------------

    def _check_files(self, files: list[RecordedFile], size_limit: int) -> None:
        for f in files:
            if f.size > size_limit:
                raise _ApiError(413, 40005, "Request entity too large")
        if len(files) > self.limits.max_attachments:
            raise _ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")

    def _build_attachments(
        self,
        channel_id: int,
        existing: list[dict[str, Any]],
        listed: list[dict[str, Any]] | None,
        files: list[RecordedFile],
        ephemeral: bool,
    ) -> list[dict[str, Any]]:
        """Discord's attachment semantics: ``attachments`` lists kept attachments (by id) and new files (by
        index into ``files[n]``); if it is absent, new files are appended to the existing ones."""

        def new_attachment(f: RecordedFile, meta: Mapping[str, Any]) -> dict[str, Any]:
            att_id = self.snowflake()
            filename = str(meta.get("filename") or f.filename)
            self._attachment_data[att_id] = f.data
            url = f"{self.base_url}/cdn/attachments/{channel_id}/{att_id}/{quote(filename)}"
            att: dict[str, Any] = {
                "id": str(att_id),
                "filename": filename,
                "size": f.size,
                "url": url,
                "proxy_url": url,
                "content_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            }
            if meta.get("description"):
                att["description"] = meta["description"]
            dims = _png_size(f.data)
            if dims:
                att["width"], att["height"] = dims
            if ephemeral:
                att["ephemeral"] = True
            return att

        by_index: dict[int, RecordedFile] = {}
        for f in files:
            m = re.fullmatch(r"files\[(\d+)\]", f.part_name)
            by_index[int(m.group(1)) if m else len(by_index)] = f
        if listed is None:
            return list(existing) + [new_attachment(f, {}) for f in files]
        existing_by_id = {str(a["id"]): a for a in existing}
        result: list[dict[str, Any]] = []
        used: set[int] = set()
        for meta in listed:
            ident = str(meta.get("id"))
            if ident in existing_by_id:
                result.append(existing_by_id[ident])
            elif ident.isdigit() and int(ident) in by_index:
                used.add(int(ident))
                result.append(new_attachment(by_index[int(ident)], meta))
        for idx, f in sorted(by_index.items()):
            if idx not in used:
                result.append(new_attachment(f, {}))
        if len(result) > self.limits.max_attachments:
            raise _ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")
        return result

    @staticmethod
    def _resolve_embeds(embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Discord answers with the CDN URL where the request said attachment://name.
        urls = {a["filename"]: a["url"] for a in attachments}
        out = []
        for embed in copy.deepcopy(embeds):
            embed.setdefault("type", "rich")
            for key in ("image", "thumbnail", "footer", "author"):
                sub = embed.get(key)
                if not isinstance(sub, dict):
                    continue
                for url_key in ("url", "icon_url"):
                    url = sub.get(url_key)
                    if isinstance(url, str) and url.startswith("attachment://"):
                        resolved = urls.get(url[len("attachment://") :])
                        if resolved:
                            sub[url_key] = resolved
                            sub["proxy_" + url_key] = resolved
            out.append(embed)
        return out

    def _create_message(
        self,
        channel_id: int,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        flags: int = 0,
        msg_type: int = 0,
        interaction: FakeInteraction | None = None,
    ) -> dict[str, Any]:
        flags |= int(body.get("flags") or 0)
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        attachments = self._build_attachments(channel_id, [], body.get("attachments"), files, ephemeral)
        now = self.clock.now()
        msg: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "type": msg_type,
            "content": body.get("content") or "",
            "embeds": self._resolve_embeds(body.get("embeds") or [], attachments),
            "components": _as_discord_stores(body.get("components") or []),
            "attachments": attachments,
            "flags": flags,
            "author": self.bot_user.to_dict(),
            "timestamp": _iso(now),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            # Not part of Discord's message object: kept so tests can assert on what the bot asked for.
            "allowed_mentions": copy.deepcopy(body.get("allowed_mentions")),
        }
        if body.get("message_reference"):
            msg["message_reference"] = copy.deepcopy(body["message_reference"])
        if interaction is not None:
            msg["webhook_id"] = str(self.application_id)
            msg["application_id"] = str(self.application_id)
            metadata: dict[str, Any] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.to_dict(),
                "authorizing_integration_owners": copy.deepcopy(interaction.payload["authorizing_integration_owners"]),
            }
            if interaction.source_message_id is not None:
                metadata["interacted_message_id"] = str(interaction.source_message_id)
            msg["interaction_metadata"] = metadata
        self.messages[int(msg["id"])] = msg
        return msg

    def _edit_message(self, msg: dict[str, Any], body: Mapping[str, Any], files: list[RecordedFile]) -> dict[str, Any]:
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "components" in body:
            msg["components"] = _as_discord_stores(body["components"] or [])
        if "allowed_mentions" in body:
            msg["allowed_mentions"] = copy.deepcopy(body["allowed_mentions"])
        if "attachments" in body or files:
            msg["attachments"] = self._build_attachments(
                int(msg["channel_id"]),
                msg["attachments"],
                body.get("attachments"),
                files,
                bool(msg["flags"] & FLAG_EPHEMERAL),
            )
        if "embeds" in body:
            msg["embeds"] = self._resolve_embeds(body["embeds"] or [], msg["attachments"])
        # The ephemeral flag cannot change after creation; editing ends the "thinking" state.
        msg["flags"] = int(msg["flags"]) & ~FLAG_LOADING
        msg["edited_timestamp"] = _iso(self.clock.now())
        return msg

    def _message_or_404(self, message_id: int) -> dict[str, Any]:
        msg = self.messages.get(message_id)
        if msg is None:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg


def _as_discord_stores(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Components as Discord keeps and answers them: each with a numeric ``id`` in the message (assigned when the
    sender gave none), and a Unicode emoji as its name alone (no ``id``)."""
    stored = copy.deepcopy(components)
    stack, next_id = list(stored), 1
    while stack:
        comp = stack.pop(0)
        if comp.get("id") is None:
            comp["id"] = next_id
        next_id = max(next_id, int(comp["id"])) + 1
        emoji = comp.get("emoji")
        if isinstance(emoji, dict) and emoji.get("id") is None:
            emoji.pop("id", None)
        stack.extend(comp.get("components") or [])
    return stored
