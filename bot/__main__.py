"""``python -m bot``: the whole service in one process (Discord bot + engine + admin panel).

Without DISCORD_TOKEN it runs the engine and the admin panel only, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys

log = logging.getLogger("bot")


class RedactingFormatter(logging.Formatter):
    """Formats a record, then removes secrets from the whole text, traceback included.

    Secrets are the configured ones (bot token, admin password) plus any interaction or webhook
    token that appears in a Discord URL.
    """

    _WEBHOOK_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]{20,}")

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self.secrets: list[str] = []

    def add_secret(self, secret: str) -> None:
        """Redact this value from now on (ignored when too short to be a real secret)."""
        if secret and len(secret) >= 6 and secret not in self.secrets:
            self.secrets.append(secret)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return self._WEBHOOK_TOKEN.sub(r"\1[token]", text)


def setup_logging(secrets: list[str]) -> RedactingFormatter:
    """Plain stdlib logging through one redacting handler; returns its formatter to add secrets later."""
    formatter = RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for secret in secrets:
        formatter.add_secret(secret)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return formatter


async def run(sync: bool = False) -> int:
    """Start everything and run until SIGINT/SIGTERM."""
    from pydantic import ValidationError

    from admin_ui.server import AdminServer
    from admin_ui.settings import AdminSettings
    from bot.settings import load_bot_settings
    from engine.service import Engine
    from engine.settings import SettingsError, format_validation_error, load_engine_settings

    try:
        engine_settings = load_engine_settings()
        bot_settings = load_bot_settings()
        admin_settings = AdminSettings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: {format_validation_error(exc, AdminSettings)}", file=sys.stderr)
        return 2
    token = bot_settings.discord_token.get_secret_value() if bot_settings.discord_token else ""
    admin_password = admin_settings.password.get_secret_value() if admin_settings.password else ""
    redactor = setup_logging([token, admin_password])

    engine = Engine(engine_settings)
    try:
        await engine.start()
    except Exception as exc:  # StoreError and friends: the message says what to do
        log.error("cannot start: %s", exc)
        return 1
    bot = None
    if token:
        from bot.client import ImagineBot, point_at_discord

        point_at_discord(bot_settings)
        bot = ImagineBot(engine, bot_settings, force_sync=sync)
    else:
        log.warning("DISCORD_TOKEN is not set: running the admin panel only (no Discord bot)")
    panel = AdminServer(engine, admin_settings, engine_settings.data_dir,
                        guild_names=bot.guild_names if bot else (lambda: {}))
    try:
        await panel.start()
    except Exception as exc:
        log.error("admin panel not started: %s", exc)
        await engine.stop()
        return 2
    redactor.add_secret(panel.login_password.get_secret_value())  # also a generated one
    log.info("admin panel on %s", panel.url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows
            pass
    tasks = [asyncio.create_task(stop.wait(), name="stop")]
    if bot is not None:
        tasks.append(asyncio.create_task(bot.start(token), name="discord"))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task.get_name() == "discord" and task.exception() is not None:
            exc = task.exception()
            import discord

            if isinstance(exc, discord.LoginFailure):
                log.error("Discord rejected DISCORD_TOKEN; copy the bot token again from the Developer Portal")
            else:
                log.error("the Discord connection stopped: %s", exc)
            code = 1
    if bot is not None:
        await bot.close()
    await panel.stop()
    await engine.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("--sync", action="store_true", help="sync slash commands even if they did not change")
    args = parser.parse_args(argv)
    return asyncio.run(run(sync=args.sync))


if __name__ == "__main__":
    sys.exit(main())
