"""The whole service in one process and one event loop: engine, Discord bot and admin panel.

Without DISCORD_TOKEN it runs the engine and the admin panel only, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from wsgiref.simple_server import WSGIServer

import discord
from prometheus_client import start_http_server

from admin_ui.admin_settings import AdminSettings
from admin_ui.context import PANEL_ONLY
from admin_ui.server import AdminServer
from bot.client import ImagineBot, point_at_discord
from engine.engine_settings import (
    SettingsError,
)
from engine.ops.logs import setup_logging, user_key
from engine.service import Engine
from imagine.discord_link import DiscordLink
from imagine.doctor import report, run_checks
from imagine.settings import load_settings

log = logging.getLogger("imagine")


async def _wait_for_stop(link: DiscordLink | None) -> int:
    """Run until SIGINT/SIGTERM, or until Discord rejects the token; returns the exit code.

    An unreachable Discord does not end it: the link retries while the engine and panel serve.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows
            pass
    tasks = [asyncio.create_task(stop.wait(), name="stop")]
    if link is not None:
        tasks.append(asyncio.create_task(link.run(), name="discord"))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        exc = task.exception() if task.get_name() == "discord" else None
        if exc is not None:
            if isinstance(exc, discord.LoginFailure):
                log.error("Discord rejected DISCORD_TOKEN; copy the bot token again from the Developer Portal")
            else:
                log.error("the Discord connection stopped: %s", exc)
            code = 1
    return code


async def run(sync: bool = False) -> int:
    """Start everything and run until SIGINT/SIGTERM; returns the exit code."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = settings.bot.discord_token.get_secret_value() if settings.bot.discord_token else ""
    admin_password = settings.admin.password.get_secret_value() if settings.admin.password else ""
    remote = settings.engine.remote
    nats_secrets = [s.get_secret_value() for s in (remote.nats_password, remote.nats_token) if s is not None]
    gallery_secret = settings.gallery.client_secret.get_secret_value() if settings.gallery.client_secret else ""
    redactor = setup_logging([token, admin_password, gallery_secret, *nats_secrets],
                             fmt=settings.engine.log_format, level=settings.engine.log_level,
                             key=user_key(settings.engine.data_dir) if settings.engine.log_format == "json" else None)

    engine = Engine(settings.engine)
    try:
        await engine.start()
    except Exception as exc:  # StoreError and friends: the message says what to do
        log.error("cannot start: %s", exc)
        return 1
    link = None
    if token:
        point_at_discord(settings.bot)
        gallery_url = settings.gallery.url if settings.gallery.enabled else ""
        link = DiscordLink(lambda: ImagineBot(engine, settings.bot, force_sync=sync, gallery_url=gallery_url), token)
    else:
        log.warning("DISCORD_TOKEN is not set: running the admin panel only (no Discord bot)")
    # the panel learns about the bot only through these callables: bot and admin_ui never import each other
    panel = AdminServer(engine, settings.admin, settings.engine.data_dir,
                        guild_names=link.guild_names if link else dict,
                        discord_state=link.state if link else _panel_only,
                        gallery=settings.gallery, discord_api_base=settings.bot.discord_api_base)
    try:
        await panel.start()
    except Exception as exc:
        log.error("admin panel not started: %s", exc)
        await engine.stop()
        return 2
    redactor.add_secret(panel.login_password.get_secret_value())  # also a generated one
    if settings.admin.metrics_token is not None:
        redactor.add_secret(settings.admin.metrics_token.get_secret_value())
    log.info("admin panel on %s", panel.url)
    if settings.gallery.enabled:
        log.info("members' gallery on %s", settings.gallery.url or f"{panel.url}gallery/")
    metrics_server = _start_metrics(engine, settings.admin)

    code = await _wait_for_stop(link)
    if link is not None:
        await link.close()
    if metrics_server is not None:
        metrics_server.shutdown()
    await panel.stop()
    await engine.stop()
    return code


def _start_metrics(engine: Engine, admin: AdminSettings) -> WSGIServer | None:
    """Prometheus text on METRICS_PORT (its own thread, no login), when set."""
    if admin.metrics_port is None:
        return None
    try:
        server, _thread = start_http_server(admin.metrics_port, addr=admin.metrics_host,
                                            registry=engine.metrics.registry)
    except OSError as exc:  # the panel and the bot keep running without metrics
        log.error("metrics not served on %s:%s: %s; choose a free METRICS_PORT", admin.metrics_host,
                  admin.metrics_port, exc)
        return None
    log.info("metrics on http://%s:%s/metrics", admin.metrics_host, server.server_port)
    if not _is_loopback(admin.metrics_host):
        log.warning("METRICS_PORT serves /metrics without a login on %s, to anyone who can reach it; keep it behind "
                    "a firewall, or set METRICS_HOST=127.0.0.1 and scrape /metrics on the panel's port with "
                    "METRICS_TOKEN", admin.metrics_host)
    return server


def _is_loopback(host: str) -> bool:
    """Whether an address (or "localhost") is this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _panel_only() -> str:
    return PANEL_ONLY


def main(argv: list[str] | None = None, *, prog: str = "python -m imagine") -> int:
    """Entry point of ``python -m imagine`` and ``python -m bot``; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("command", nargs="?", choices=["doctor"],
                        help="doctor: check this machine and the settings, say what to fix, and exit")
    parser.add_argument("--sync", action="store_true", help="sync slash commands even if they did not change")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        text, code = report(run_checks())
        print(text)
        return code
    return asyncio.run(run(sync=args.sync))
