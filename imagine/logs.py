"""The service's logging: plain stdlib logging through one handler that redacts secrets."""

from __future__ import annotations

import logging
import re


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
        """The formatted record with every secret and URL token replaced."""
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
