"""Serving the panel inside the bot's process: FastAPI + Gradio + uvicorn on the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from gradio.utils import get_cache_folder, get_upload_folder
from pydantic import SecretStr
from starlette.routing import Mount

from admin_ui.admin_settings import AdminSettings
from admin_ui.app import build_blocks
from admin_ui.auth import (
    DEVICE_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    AdminConfigError,
    Sessions,
    check_bind,
    prepare_password,
)
from admin_ui.context import NO_DISCORD, DiscordState, GuildNames
from admin_ui.files import CACHE_DIR_NAME, Stage, remove_legacy_stages
from admin_ui.gallery.gallery_settings import GallerySettings
from admin_ui.gallery.routes import add_gallery_routes
from admin_ui.gradio_sessions import HOUSEKEEPING_SECONDS, PANEL_SESSIONS, bound_sessions, prune, session_counts
from admin_ui.guards import LoginGate, OriginGuard, SecurityHeaders
from admin_ui.health import add_health_routes
from admin_ui.login_page import render_login_page, render_logout_page
from admin_ui.theme import ASSETS_DIR, BACKGROUND_FILE, BRAND_PREFIX, CSS, FAVICON_FILE, FONT_DIR, build_theme
from admin_ui.throttle import DEVICE_SECONDS
from engine.media.privacy import private_dirs
from engine.service import Engine

log = logging.getLogger(__name__)

# the only files the parent app serves without a login: what the login page itself needs
_PUBLIC_FILES: dict[str, Path] = {
    "background.png": BACKGROUND_FILE,
    "favicon.png": FAVICON_FILE,
    **{f"fonts/{p.name}": p for p in sorted(FONT_DIR.glob("*.woff2"))},
}
DISCORD_API = "https://discord.com/api/v10"  # the gallery's token and user calls (DISCORD_API_BASE)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class AdminStartError(RuntimeError):
    """The panel could not start listening; the message says what to change."""


def build_app(engine: Engine, sessions: Sessions, stage: Stage, *, guild_names: GuildNames = lambda: {},
              discord_state: DiscordState = lambda: NO_DISCORD, host: str = "127.0.0.1", port: int = 7860,
              allowed_origins: frozenset[str] = frozenset(),
              metrics_token: SecretStr | None = None, gallery: GallerySettings | None = None,
              discord_api_base: str = DISCORD_API) -> tuple[FastAPI, gr.Blocks]:
    """The parent FastAPI app: public brand files, login/logout, the members' gallery (``gallery``: its Discord
    application; off without one) and the Gradio panel mounted at /.

    Gradio's cache folder must already be ``stage.folder`` (GRADIO_TEMP_DIR, see AdminServer.start):
    Gradio reads it as it builds the components and the app. ``allowed_origins`` (ADMIN_ORIGIN) are
    origins accepted besides the one the Host header names.
    """
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(app, engine, discord_state, metrics_token)

    @app.get(f"/{BRAND_PREFIX}/{{name:path}}", include_in_schema=False)
    async def brand_file(name: str) -> Response:
        path = _PUBLIC_FILES.get(name)
        if path is None:
            return JSONResponse({"detail": "Not found"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        if sessions.current_user(request) is not None:
            return RedirectResponse("./", status_code=303)
        return HTMLResponse(render_login_page(username=sessions.username), headers={"Cache-Control": "no-store"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        # browsers post the form and want a page back; gradio_client posts the same fields and wants 2xx/401
        form = await request.form()
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        wants_html = "text/html" in request.headers.get("accept", "")
        outcome = await sessions.login(username, password, client=request.client.host if request.client else "",
                                       device=request.cookies.get(DEVICE_COOKIE))
        if outcome.refusal is not None:
            headers = {"Cache-Control": "no-store", "Retry-After": str(math.ceil(outcome.refusal.retry_after))}
            if wants_html:
                return HTMLResponse(render_login_page(outcome.refusal.message, username), status_code=429,
                                    headers=headers)
            return JSONResponse({"detail": outcome.refusal.message}, status_code=429, headers=headers)
        if outcome.token is None:
            if wants_html:
                return HTMLResponse(render_login_page("Wrong user or password. Try again.", username),
                                    status_code=401, headers={"Cache-Control": "no-store"})
            return JSONResponse({"detail": "Incorrect credentials."}, status_code=401)
        response: Response = RedirectResponse("./", status_code=303) if wants_html else JSONResponse({"success": True})
        secure = request.url.scheme == "https"
        response.set_cookie(SESSION_COOKIE, outcome.token, max_age=int(SESSION_SECONDS), httponly=True,
                            samesite="lax", secure=secure, path="/")
        if outcome.device is not None:
            response.set_cookie(DEVICE_COOKIE, outcome.device, max_age=int(DEVICE_SECONDS), httponly=True,
                                samesite="strict", secure=secure, path="/")
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout_page() -> Response:
        # a GET must not log out: any page could do it with a link or an <img>; offer the button instead
        return HTMLResponse(render_logout_page(), headers={"Cache-Control": "no-store"})

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        sessions.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # without settings the gallery is off (model_construct: the defaults, not the environment's values)
    add_gallery_routes(app, engine, gallery or GallerySettings.model_construct(), discord_api_base)

    blocks = build_blocks(engine, stage, guild_names=guild_names, discord_state=discord_state)
    bound_sessions(blocks)
    private_dirs(engine.settings.results_dir)
    gr.mount_gradio_app(
        app, blocks, path="/",
        server_name=host, server_port=port,
        theme=build_theme(), css=CSS,
        auth_dependency=sessions.current_user,
        footer_links=[],
        # the panel serves its assets, the results and its own cache folder, nothing else (not DATA_DIR's
        # database or password, not Gradio's examples cache in the working directory)
        allowed_paths=[str(ASSETS_DIR), str(engine.settings.results_dir.resolve())],
        blocked_paths=[str(get_cache_folder().absolute())],
        favicon_path=str(FAVICON_FILE),
        ssr_mode=False, mcp_server=False, run_history=False, enable_monitoring=False, pwa=False,
        max_file_size="5mb", show_error=True,
    )
    # a CORS middleware on the parent app makes Gradio drop its own, which reflects any Origin with
    # credentials; this one grants nothing: the panel's pages are same-origin and need no CORS
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(LoginGate, sessions=sessions)
    app.add_middleware(OriginGuard, extra_origins=allowed_origins)
    app.add_middleware(SecurityHeaders)  # outermost, so refusals carry the headers too
    return app, blocks


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: in the bot's process the bot owns SIGINT/SIGTERM and calls stop()."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        pass


class AdminServer:
    """The admin panel, served by uvicorn as a task on the running (bot's) event loop."""

    def __init__(self, engine: Engine, settings: AdminSettings, data_dir: Path,
                 guild_names: GuildNames = lambda: {}, *, discord_state: DiscordState = lambda: NO_DISCORD,
                 housekeeping_seconds: float = HOUSEKEEPING_SECONDS, gallery: GallerySettings | None = None,
                 discord_api_base: str = DISCORD_API) -> None:
        self.engine = engine
        self.settings = settings
        self.gallery = gallery  # the members' gallery's Discord application (None: off)
        self.discord_api_base = discord_api_base
        self.data_dir = Path(data_dir)
        self.guild_names = guild_names
        self.discord_state = discord_state
        self.stage = Stage(self.data_dir / CACHE_DIR_NAME)
        self.app: FastAPI | None = None
        self.blocks: gr.Blocks | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._gradio_temp: str | None = None
        self._housekeeping_seconds = housekeeping_seconds
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The local URL of the panel (with the real port once started)."""
        host = self.settings.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        return f"http://{host}:{self._port if self._port is not None else self.settings.port}/"

    async def start(self) -> None:
        """Check the bind rule, prepare the password, and start serving; returns once it listens.

        Raises AdminConfigError (bind without an explicit password) or AdminStartError (port busy...).
        """
        if self._task is not None:
            raise RuntimeError("the admin server is already running")
        check_bind(self.settings)
        password = await asyncio.to_thread(prepare_password, self.settings, self.data_dir)
        self.login_password = password  # for the service's log redaction; never logged or shown
        sessions = Sessions(self.settings.username, password)
        sock = await asyncio.to_thread(_bind, self.settings.host, self.settings.port)
        try:
            self._port = sock.getsockname()[1]
            await asyncio.to_thread(self._prepare_files)
            self.app, self.blocks = build_app(self.engine, sessions, self.stage, guild_names=self.guild_names,
                                              discord_state=self.discord_state,
                                              host=self.settings.host, port=self._port,
                                              allowed_origins=self.settings.allowed_origins,
                                              metrics_token=self.settings.metrics_token, gallery=self.gallery,
                                              discord_api_base=self.discord_api_base)
            # log_config=None: uvicorn's records go through the service's own (redacting) handlers
            config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on",
                                    timeout_graceful_shutdown=2, ws="none", log_config=None)
            self._server = _EmbeddedServer(config)
        except BaseException:
            sock.close()
            self._release_files()
            raise
        self._task = asyncio.create_task(self._serve(sock), name="admin-panel")
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the reason
                raise AdminStartError("the admin panel stopped while starting; see the log above")
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise AdminStartError(f"the admin panel did not start within {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.02)
        self._housekeeping = asyncio.create_task(self._keep_sessions_bounded(), name="admin-panel-housekeeping")
        log.info("admin panel listening on %s", self.url)

    def session_counts(self) -> dict[str, int]:
        """How many Gradio sessions the panel holds state and queue entries for (bounded; see gradio_sessions)."""
        gradio_app = _mounted_gradio_app(self.app)
        if gradio_app is None or self.blocks is None:
            return {"sessions": 0, "queued_event_ids": 0, "message_queues": 0}
        return session_counts(gradio_app, self.blocks)

    async def _keep_sessions_bounded(self) -> None:
        while True:
            await asyncio.sleep(self._housekeeping_seconds)
            gradio_app = _mounted_gradio_app(self.app)
            if gradio_app is not None and self.blocks is not None:
                try:
                    prune(gradio_app, self.blocks)
                except Exception:  # Gradio's internals moved: log it, keep serving
                    log.exception("pruning the panel's Gradio sessions failed")

    def _prepare_files(self) -> None:
        """Empty this panel's file folder, clean up older versions' folders, and make it Gradio's cache."""
        shared = Path(get_upload_folder())
        self.stage.reset()  # a killed process's copies (deleted images among them) go now
        if shared.resolve() != self.stage.folder:
            remove_legacy_stages(shared)
        # Gradio serves everything in its cache folder and reads the variable wherever it needs the folder
        # (building components, the app, checking event data), so it is set for this process while serving
        self._gradio_temp = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.stage.folder)

    def _release_files(self) -> None:
        if os.environ.get("GRADIO_TEMP_DIR") != str(self.stage.folder):
            return
        if self._gradio_temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = self._gradio_temp

    async def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit:
            # uvicorn calls sys.exit() when startup fails; never let that end the bot's event loop
            raise AdminStartError("the admin panel failed to start; see the uvicorn error above") from None
        finally:
            sock.close()

    async def stop(self) -> None:
        """Stop serving (open browser tabs are disconnected) and release the port."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            self._housekeeping = None
        # Gradio's heartbeat and queue streams stay open for as long as a tab is; end them first so
        # uvicorn's graceful shutdown does not have to time out and cancel them
        gradio_app = _mounted_gradio_app(self.app)
        if gradio_app is not None:
            gradio_app.stop_event.set()
        if self.blocks is not None:
            self.blocks._queue.close()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except Exception:
            log.exception("admin panel stopped with an error")
        if self.blocks is not None:
            self.blocks.close(verbose=False)
        self._release_files()
        await self.stage.clear()
        self._server = None
        self._task = None


def _mounted_gradio_app(app: FastAPI | None) -> Any:
    for route in getattr(app, "routes", []):
        if isinstance(route, Mount) and hasattr(route.app, "stop_event"):
            return route.app
    return None


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket; binding here gives a clear error instead of uvicorn's sys.exit()."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AdminStartError(f"ADMIN_HOST={host} cannot be resolved ({exc}); use an IP address such as "
                              f"127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise AdminStartError(f"the admin panel cannot listen on {host}:{port} ({exc.strerror}). Set ADMIN_PORT to "
                              f"a free port, or stop the program that uses it.") from None
    sock.set_inheritable(True)
    return sock


__all__ = ["PANEL_SESSIONS", "AdminConfigError", "AdminServer", "AdminStartError", "build_app"]
