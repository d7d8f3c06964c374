"""FakeDiscord's REST front: request parsing, routing, authentication, and the application and command
routes. A mixin: the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import BodyPartReader, web

from . import discord_contexts as contexts
from .discord_contract import contract, discord_errors
from .discord_interaction import _Ctx, _RouteHandler
from .discord_protocol import (
    API_PREFIX,
)
from .discord_records import (
    CommandSync,
    RecordedFile,
    RecordedRequest,
    _ApiError,
    _json_response,
    _max_length_error,
)


class RestMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

    # ----------------------------------------------------------------------------------------------------------
    # REST plumbing
    # ----------------------------------------------------------------------------------------------------------

    async def _parse_body(self, request: web.Request) -> tuple[Any, list[RecordedFile]]:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            body: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: discord.py never sends one
                    continue
                data = await part.read(decode=False)
                name = part.name or ""
                if name == "payload_json":
                    body = json.loads(bytes(data).decode("utf-8"))
                elif part.filename is not None:
                    files.append(
                        RecordedFile(
                            part_name=name,
                            filename=part.filename,
                            size=len(data),
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :] or "/"
        body, files = await self._parse_body(request)
        record = RecordedRequest(
            index=-1,
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            files=files,
            time=self.clock.now(),
        )
        try:
            response = await self._route(request, record, body, files)
        except _ApiError as err:
            response = _json_response(err.status, err.to_body(), err.headers)
            record.response = err.to_body()
        record.status = response.status
        if record.response is None and isinstance(response, web.Response) and response.body:
            with contextlib.suppress(Exception):
                record.response = json.loads(response.body)  # type: ignore[arg-type]
        if 200 <= response.status < 300 and record.response is not None:  # our answers, held to Discord's shapes
            self.answer_violations.extend(
                contract().response_violations(record.method, record.path, response.status, record.response))
        record.index = len(self.requests)
        self.requests.append(record)
        self._notify()
        return response

    async def _route(
        self, request: web.Request, record: RecordedRequest, body: Any, files: list[RecordedFile]
    ) -> web.StreamResponse:
        matched: tuple[_RouteHandler, dict[str, str]] | None = None
        path_allowed: list[str] = []
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(record.path)
            if m is None:
                continue
            if method != record.method:
                path_allowed.append(method)
                continue
            matched = (handler, {k: v for k, v in m.groupdict().items() if v is not None})
            record.token = matched[1].get("token")
            break

        # Injected failures win over everything else, even over unknown routes.
        for inj in self._injections:
            if inj.remaining > 0 and self._matches(record, inj.method, inj.path_glob, None):
                inj.remaining -= 1
                inj.hits += 1
                if isinstance(inj.body, (dict, list)):
                    return _json_response(inj.status, inj.body, inj.headers)
                return web.Response(status=inj.status, text=str(inj.body), headers=inj.headers)

        if matched is None:
            if path_allowed:
                raise _ApiError(405, 0, "405: Method Not Allowed")
            raise _ApiError(404, 0, "404: Not Found")
        handler, params = matched
        # Webhook and interaction-callback routes are authenticated by the token in the path only.
        if not (record.path.startswith("/webhooks/") or record.path.startswith("/interactions/")):
            self._check_bot_auth(request)
        if len(files) > self.limits.max_attachments:  # Discord counts the files before it reads the form
            raise _ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")
        if record.method in ("POST", "PATCH", "PUT") and isinstance(body, (dict, list)):
            violations = contract().request_violations(record.method, record.path, body)
            if violations:  # what Discord itself would refuse: answered as Discord does, and recorded
                self.contract_violations.extend(violations)
                raise _ApiError(400, 50035, "Invalid Form Body", errors=discord_errors(violations))
        return await handler(_Ctx(request=request, record=record, params=params, body=body, files=files))

    def _check_bot_auth(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bot ") or (self.token is not None and auth != f"Bot {self.token}"):
            raise _ApiError(401, 0, "401: Unauthorized")

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _RouteHandler]]:
        app = r"(?P<app>\d+)"
        tok = r"(?P<token>[^/]+)"
        table: list[tuple[str, str, _RouteHandler]] = [
            ("GET", r"/users/@me", self._r_get_me),
            ("GET", r"/oauth2/applications/@me", self._r_get_app),
            ("GET", r"/applications/@me", self._r_get_app),
            ("GET", r"/gateway", self._r_gateway),
            ("GET", r"/gateway/bot", self._r_gateway),
            ("GET", rf"/applications/{app}/commands", self._r_get_commands),
            ("PUT", rf"/applications/{app}/commands", self._r_put_commands),
            ("POST", rf"/applications/{app}/commands", self._r_post_command),
            ("GET", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_get_commands),
            ("PUT", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_put_commands),
            ("POST", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_post_command),
            ("POST", rf"/interactions/(?P<iid>\d+)/{tok}/callback", self._r_callback),
            ("GET", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_get),
            ("PATCH", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_patch),
            ("DELETE", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_delete),
            ("POST", rf"/webhooks/{app}/{tok}", self._r_webhook_post),
            ("POST", r"/channels/(?P<cid>\d+)/messages", self._r_channel_post),
            ("GET", r"/channels/(?P<cid>\d+)/messages", self._r_channel_history),
            ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_get_message),
            ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_patch),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_delete),
            ("POST", r"/channels/(?P<cid>\d+)/typing", self._r_typing),
            ("GET", r"/channels/(?P<cid>\d+)", self._r_get_channel),
            ("POST", r"/users/@me/channels", self._r_create_dm),
            ("GET", r"/users/(?P<uid>\d+)", self._r_get_user),
            ("GET", r"/guilds/(?P<gid>\d+)", self._r_get_guild),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # ----------------------------------------------------------------------------------------------------------
    # REST: identity and commands
    # ----------------------------------------------------------------------------------------------------------

    async def _r_get_me(self, ctx: _Ctx) -> web.StreamResponse:
        data = self.bot_user.to_dict()
        data.update({"verified": True, "mfa_enabled": False, "flags": 0, "locale": "en-US"})
        return _json_response(200, data)

    async def _r_get_app(self, ctx: _Ctx) -> web.StreamResponse:
        return _json_response(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self._owner.to_dict(),
                "flags": 0,
                "bot": self.bot_user.to_dict(),
                "summary": "",
                # the rest of what Discord answers here; discord.py reads none of it
                "type": None,
                "flags_new": "0",
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "team": None,
                "eligible_oauth2_scopes": [],
            },
        )

    async def _r_gateway(self, ctx: _Ctx) -> web.StreamResponse:
        # Only AutoShardedClient asks; point it back here.
        return _json_response(
            200,
            {
                "url": self.gateway_url,
                # Discord's recommendation: one shard per max_guilds_per_shard guilds (2 500 in Discord)
                "shards": max(1, -(-sum(g.bot_member for g in self.guilds.values()) // self.max_guilds_per_shard)),
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            },
        )

    def _check_app(self, ctx: _Ctx) -> None:
        if int(ctx.params["app"]) != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")

    def _guild_param(self, ctx: _Ctx) -> int | None:
        if "guild" not in ctx.params:
            return None
        gid = int(ctx.params["guild"])
        if gid not in self.guilds or not self.guilds[gid].bot_member:
            raise _ApiError(403, 50001, "Missing Access")
        return gid

    def _validate_command(self, cmd: Mapping[str, Any], index: int) -> dict[str, Any]:
        errs: dict[str, Any] = {}
        name = cmd.get("name")
        ctype = cmd.get("type", 1)
        if not isinstance(name, str) or not (1 <= len(name) <= 32):
            errs["name"] = _max_length_error(32)
        elif ctype == 1 and not re.fullmatch(r"[-_\w]{1,32}", name) or (ctype == 1 and name != name.lower()):
            errs["name"] = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Invalid name"}]}
        desc = cmd.get("description", "")
        if ctype == 1 and (not isinstance(desc, str) or not (1 <= len(desc) <= 100)):
            errs["description"] = _max_length_error(100)
        errs.update(contexts.command_field_errors(cmd))
        return {str(index): errs} if errs else {}

    def _store_commands(self, commands: list[dict[str, Any]], guild_id: int | None) -> list[dict[str, Any]]:
        previous = {(c["name"], c.get("type", 1)): c for c in self._commands.get(guild_id, [])}
        stored: list[dict[str, Any]] = []
        for cmd in commands:
            key = (cmd["name"], cmd.get("type", 1))
            # Discord keeps a command's id across overwrites when name and type are unchanged.
            old = previous.get(key)
            obj: dict[str, Any] = {
                "id": old["id"] if old else str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
            }
            obj.update(copy.deepcopy(cmd))
            if obj["default_member_permissions"] is not None:  # a permission bit set, sent back as a string
                obj["default_member_permissions"] = str(obj["default_member_permissions"])
            # what the command declared is kept as sent; an unset install list is Discord's default, guild only
            obj["integration_types"] = obj["integration_types"] or [contexts.GUILD_INSTALL]
            if guild_id is not None:
                obj["guild_id"] = str(guild_id)
            stored.append(obj)
        return stored

    async def _r_get_commands(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        return _json_response(200, self.commands(self._guild_param(ctx)))

    async def _r_put_commands(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        guild_id = self._guild_param(ctx)
        body = ctx.body if isinstance(ctx.body, list) else []
        errors: dict[str, Any] = {}
        for i, cmd in enumerate(body):
            errors.update(self._validate_command(cmd, i))
        if errors:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=errors)
        self._commands[guild_id] = self._store_commands(body, guild_id)
        self.command_syncs.append(CommandSync(guild_id=guild_id, commands=copy.deepcopy(body), time=self.clock.now()))
        return _json_response(200, self.commands(guild_id))

    async def _r_post_command(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        guild_id = self._guild_param(ctx)
        cmd = ctx.body if isinstance(ctx.body, dict) else {}
        errors = self._validate_command(cmd, 0)
        if errors:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=errors["0"])
        key = (cmd["name"], cmd.get("type", 1))
        stored = self._store_commands([cmd], guild_id)[0]
        others = [c for c in self._commands.get(guild_id, []) if (c["name"], c.get("type", 1)) != key]
        self._commands[guild_id] = others + [stored]
        return _json_response(201, stored)
