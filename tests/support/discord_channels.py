"""FakeDiscord's REST routes for channels, messages in channels, DMs, users, guilds and the CDN. A mixin:
the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import mimetypes
from typing import Any

from aiohttp import web

from . import discord_contexts as contexts
from .discord_interaction import _Ctx
from .discord_protocol import (
    FLAG_EPHEMERAL,
)
from .discord_records import (
    FakeChannel,
    _ApiError,
    _is_empty_message,
    _json_response,
    _validate_message_body,
)


class ChannelsMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

    # ----------------------------------------------------------------------------------------------------------
    # REST: channels, DMs, guilds, CDN
    # ----------------------------------------------------------------------------------------------------------

    def _channel_or_404(self, ctx: _Ctx) -> FakeChannel:
        channel = self.channels.get(int(ctx.params["cid"]))
        if channel is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        if not contexts.bot_can_access(channel, self._guild_of(channel)):
            # a guild without the bot, or a DM / group DM it is not in: only the interaction webhook works there
            raise _ApiError(403, 50001, "Missing Access")
        return channel

    def _channel_message_or_404(self, ctx: _Ctx, channel: FakeChannel) -> dict[str, Any]:
        msg = self._message_or_404(int(ctx.params["mid"]))
        # Ephemeral messages are invisible to the bot's own channel routes.
        if int(msg["channel_id"]) != channel.id or int(msg["flags"]) & FLAG_EPHEMERAL:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    def _check_can_post(self, channel: FakeChannel) -> None:
        if channel.type == 1:
            assert channel.recipient is not None
            if not channel.recipient.accepts_dms:
                raise _ApiError(403, 50007, "Cannot send messages to this user")
        elif not channel.bot_can_post:
            raise _ApiError(403, 50013, "Missing Permissions")

    async def _r_channel_post(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        self._check_can_post(channel)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, self.limits.channel_attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        if _is_empty_message(body, ctx.files):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        # Only SUPPRESS_EMBEDS / SUPPRESS_NOTIFICATIONS may be set here; ephemeral is interaction-only.
        body = dict(body)
        body["flags"] = int(body.get("flags") or 0) & ~FLAG_EPHEMERAL
        msg = self._create_message(channel.id, body, ctx.files)
        return _json_response(200, msg)

    async def _r_channel_history(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        limit = int(ctx.record.query.get("limit", "50"))
        visible = [m for m in self.channel_messages(channel.id) if not int(m["flags"]) & FLAG_EPHEMERAL]
        return _json_response(200, list(reversed(visible))[:limit])

    async def _r_channel_get_message(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        return _json_response(200, self._channel_message_or_404(ctx, channel))

    async def _r_channel_patch(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        msg = self._channel_message_or_404(ctx, channel)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, self.limits.channel_attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        return _json_response(200, self._edit_message(msg, body, ctx.files))

    async def _r_channel_delete(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        msg = self._channel_message_or_404(ctx, channel)
        del self.messages[int(msg["id"])]
        return web.Response(status=204)

    async def _r_typing(self, ctx: _Ctx) -> web.StreamResponse:
        self._channel_or_404(ctx)
        return web.Response(status=204)

    async def _r_get_channel(self, ctx: _Ctx) -> web.StreamResponse:
        return _json_response(200, self._channel_dict(self._channel_or_404(ctx)))

    async def _r_create_dm(self, ctx: _Ctx) -> web.StreamResponse:
        body = self._body_dict(ctx)
        user = self.users.get(int(body.get("recipient_id") or 0))
        if user is None:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={"recipient_id": {"_errors": [{"code": "USER_UNKNOWN", "message": "Unknown user"}]}},
            )
        return _json_response(200, self._channel_dict(self.dm_channel(user)))

    async def _r_get_user(self, ctx: _Ctx) -> web.StreamResponse:
        user = self.users.get(int(ctx.params["uid"]))
        if user is None:
            raise _ApiError(404, 10013, "Unknown User")
        return _json_response(200, user.to_dict())

    async def _r_get_guild(self, ctx: _Ctx) -> web.StreamResponse:
        guild = self.guilds.get(int(ctx.params["gid"]))
        if guild is None:
            raise _ApiError(404, 10004, "Unknown Guild")
        if not guild.bot_member:
            raise _ApiError(403, 50001, "Missing Access")
        return _json_response(200, self._guild_dict(guild, full=False))

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        att_id = int(request.match_info["attachment_id"])
        data = self._attachment_data.get(att_id)
        if att_id in self.fail_downloads:
            return web.Response(status=self.fail_downloads[att_id], text="CDN error")
        if att_id in self.redirect_downloads:
            return web.Response(status=302, headers={"Location": self.redirect_downloads[att_id]})
        if data is None:
            return web.Response(status=404, text="Not Found")
        ctype = mimetypes.guess_type(request.match_info["filename"])[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

