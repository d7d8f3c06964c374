"""FakeDiscord's interaction callbacks and webhooks: the 3 s / one-acknowledgement / 15 min rules and the
per-token rate limit. A mixin: the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

from aiohttp import web

from . import discord_uploads as uploads
from .discord_interaction import FakeInteraction, _Ctx
from .discord_protocol import (
    CALLBACK_AUTOCOMPLETE_RESULT,
    CALLBACK_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_CHANNEL_MESSAGE,
    CALLBACK_DEFERRED_UPDATE_MESSAGE,
    CALLBACK_MODAL,
    CALLBACK_UPDATE_MESSAGE,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTERACTION_APPLICATION_COMMAND,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
)
from .discord_records import (
    _ApiError,
    _is_empty_message,
    _json_response,
    _validate_message_body,
)


class WebhooksMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

    # ----------------------------------------------------------------------------------------------------------
    # REST: interaction callback and webhooks
    # ----------------------------------------------------------------------------------------------------------

    def _body_dict(self, ctx: _Ctx) -> dict[str, Any]:
        return ctx.body if isinstance(ctx.body, dict) else {}

    async def _r_callback(self, ctx: _Ctx) -> web.StreamResponse:
        inter = self.interactions.get(int(ctx.params["iid"]))
        if inter is None or inter.token != ctx.params["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        if inter.acked:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock.now() - inter.created_at > self.limits.ack_deadline:
            raise _ApiError(404, 10062, "Unknown interaction")
        body = self._body_dict(ctx)
        cb_type = body.get("type")
        data = body.get("data") or {}
        allowed = {CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE, CALLBACK_MODAL}
        if inter.type == INTERACTION_AUTOCOMPLETE:
            allowed = {CALLBACK_AUTOCOMPLETE_RESULT}  # an autocomplete may only be answered with choices
        if inter.type == INTERACTION_COMPONENT or (
            inter.type == INTERACTION_MODAL_SUBMIT and inter.source_message_id is not None
        ):
            allowed |= {CALLBACK_DEFERRED_UPDATE_MESSAGE, CALLBACK_UPDATE_MESSAGE}
        if inter.type == INTERACTION_MODAL_SUBMIT:
            allowed.discard(CALLBACK_MODAL)
        if cb_type not in allowed:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": "Invalid interaction response type",
                            }
                        ]
                    }
                },
            )

        resource: dict[str, Any] = {"type": cb_type}
        if cb_type in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            self._check_files(ctx.files, inter.attachment_size_limit)
            _validate_message_body(data, self.limits.max_content)
        if cb_type == CALLBACK_CHANNEL_MESSAGE:
            if _is_empty_message(data, ctx.files):
                raise _ApiError(400, 50006, "Cannot send an empty message")
            msg = self._create_message(
                inter.channel.id, data, ctx.files, msg_type=self._response_message_type(inter), interaction=inter
            )
            inter.original_message_id = int(msg["id"])
            resource["message"] = msg
        elif cb_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
            # Discord shows a "thinking" message straight away; it becomes @original.
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            msg = self._create_message(
                inter.channel.id, {}, [], flags=flags, msg_type=self._response_message_type(inter), interaction=inter
            )
            inter.original_message_id = int(msg["id"])
            inter.original_loading = True
        elif cb_type in (CALLBACK_DEFERRED_UPDATE_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            # For component interactions @original is the message that carries the component.
            inter.original_message_id = inter.source_message_id
            if cb_type == CALLBACK_UPDATE_MESSAGE and inter.source_message_id is not None:
                msg = self._message_or_404(inter.source_message_id)
                self._edit_message(msg, data, ctx.files)
                resource["message"] = msg
        elif cb_type == CALLBACK_MODAL:
            inter.modal = copy.deepcopy(data)
        elif cb_type == CALLBACK_AUTOCOMPLETE_RESULT:
            errors = uploads.choices_errors(data.get("choices"))
            if errors:
                raise _ApiError(400, 50035, "Invalid Form Body", errors={"data": errors})
            inter.choices = copy.deepcopy(data["choices"])
        inter.ack_type = cb_type

        original = inter.original
        interaction_obj: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        if original is not None:
            interaction_obj.update(
                {
                    "response_message_id": original["id"],
                    "response_message_loading": bool(int(original["flags"]) & FLAG_LOADING),
                    "response_message_ephemeral": bool(int(original["flags"]) & FLAG_EPHEMERAL),
                }
            )
        if ctx.record.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        # discord.py reads data['interaction'] unconditionally: a 204 here would crash it.
        return _json_response(200, {"interaction": interaction_obj, "resource": resource})

    @staticmethod
    def _response_message_type(inter: FakeInteraction) -> int:
        # 20 = CHAT_INPUT_COMMAND reply; component and modal responses are plain messages.
        return 20 if inter.type == INTERACTION_APPLICATION_COMMAND else 0

    def _webhook_interaction(self, ctx: _Ctx) -> tuple[FakeInteraction, dict[str, str]]:
        """Token checks shared by all /webhooks/{app}/{token} routes; returns the interaction and the
        rate-limit headers for a successful answer."""
        inter = self._by_token.get(ctx.params["token"])
        if inter is None or int(ctx.params["app"]) != self.application_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        if self.clock.now() - inter.created_at > self.limits.token_lifetime:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        headers = self._take_rate_limit(inter.token)
        if not inter.acked:
            # Without an acknowledgement within 3 s the token never became usable.
            raise _ApiError(404, 10015, "Unknown Webhook")
        return inter, headers

    def _take_rate_limit(self, token: str) -> dict[str, str]:
        """Sliding-window 5 requests / 2 s per webhook token; raises a retryable 429 when exceeded."""
        now = self.clock.now()
        window = self._rate_windows.setdefault(token, deque())
        limit, period = self.limits.webhook_rate_limit, self.limits.webhook_rate_window
        while window and window[0] <= now - period:
            window.popleft()
        bucket = "fake" + token[:12]
        if len(window) >= limit:
            retry_after = max(0.001, round(window[0] + period - now, 3))
            raise _ApiError(
                429,
                0,
                "You are being rate limited.",
                body={"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                headers={
                    # discord.py only retries a 429 that carries Via (otherwise it assumes a Cloudflare ban).
                    "Via": "1.1 google",
                    "Retry-After": str(math.ceil(retry_after)),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{now + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": bucket,
                    "X-RateLimit-Scope": "user",
                },
            )
        window.append(now)
        if not self.limits.advertise_rate_limit_headers:
            return {}
        reset_after = max(0.001, round(window[0] + period - now, 3))
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(limit - len(window)),
            "X-RateLimit-Reset": f"{now + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def _webhook_message(self, inter: FakeInteraction, mid: str) -> dict[str, Any]:
        if mid == "@original":
            if inter.original_message_id is None:
                raise _ApiError(404, 10008, "Unknown Message")
            return self._message_or_404(inter.original_message_id)
        message_id = int(mid)
        if message_id != inter.original_message_id and message_id not in inter.followup_ids:
            raise _ApiError(404, 10008, "Unknown Message")
        return self._message_or_404(message_id)

    async def _r_webhook_get(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        return _json_response(200, self._webhook_message(inter, ctx.params["mid"]), headers)

    async def _r_webhook_patch(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        msg = self._webhook_message(inter, ctx.params["mid"])
        body = self._body_dict(ctx)
        self._check_files(ctx.files, inter.attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        self._edit_message(msg, body, ctx.files)
        if int(msg["id"]) == inter.original_message_id:
            inter.original_loading = False
        return _json_response(200, msg, headers)

    async def _r_webhook_delete(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        msg = self._webhook_message(inter, ctx.params["mid"])
        del self.messages[int(msg["id"])]
        return web.Response(status=204, headers=headers)

    async def _r_webhook_post(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, inter.attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        if _is_empty_message(body, ctx.files):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        if inter.original_loading and inter.original_message_id is not None:
            # Deprecated but live Discord behaviour: the first followup after a type-5 defer edits the
            # loading message instead of creating a new one (its ephemeral state stays that of the defer).
            msg = self._edit_message(self._message_or_404(inter.original_message_id), body, ctx.files)
            inter.original_loading = False
        else:
            msg = self._create_message(inter.channel.id, body, ctx.files, interaction=inter)
            inter.followup_ids.append(int(msg["id"]))
        if ctx.record.query.get("wait") not in ("1", "true", "True"):
            return web.Response(status=204, headers=headers)
        return _json_response(200, msg, headers)

