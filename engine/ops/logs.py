"""Logging for the service and the GPU workers: readable text or one JSON object per line, always redacted.

Secrets (the bot token, the admin and NATS passwords, interaction tokens in Discord URLs) are
removed from every line, traceback included. With LOG_FORMAT=json each line also carries the
fields a log pipeline filters on — job id, the requester as a keyed hash (never the raw id),
guild id, event and durations — from ``job_fields``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets as secrets_module
import time
from pathlib import Path
from typing import Any

from engine.jobs.records import Job
from engine.media.files import atomic_write

# record attributes copied into JSON lines when a log call passes them in ``extra``
FIELDS = ("job_id", "guild_id", "event", "state", "wait_seconds", "gen_seconds", "total_seconds", "worker",
          "attempt", "images", "route")
_USER = "_user_id"  # the raw requester id travels on the record only to be hashed by the JSON formatter


class RedactingFormatter(logging.Formatter):
    """Formats a record, then removes secrets from the whole text, traceback included."""

    _WEBHOOK_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]{20,}")

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.secrets: list[str] = []

    def add_secret(self, secret: str) -> None:
        """Redact this value from now on (ignored when too short to be a real secret)."""
        if secret and len(secret) >= 6 and secret not in self.secrets:
            self.secrets.append(secret)

    def redact(self, text: str) -> str:
        """``text`` with every secret and URL token replaced."""
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return self._WEBHOOK_TOKEN.sub(r"\1[token]", text)

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        return self.redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time, level, logger, message, the job fields, the exception."""

    def __init__(self, user_key: bytes) -> None:
        super().__init__()
        self._key = user_key

    def user_hash(self, user_id: str) -> str:
        """A stable pseudonym for a user id (keyed, so it cannot be reversed by trying Discord ids)."""
        return hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:16]

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, every string redacted."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": self.redact(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        user = getattr(record, _USER, None)
        if user:
            entry["user_hash"] = self.user_hash(str(user))
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def job_fields(job: Job, event: str, **values: Any) -> dict[str, Any]:
    """``extra=`` for a log call about a job: its id, requester (hashed in JSON), guild, event, durations."""
    fields: dict[str, Any] = {"job_id": job.id, "guild_id": job.requester.guild_id, "event": event,
                              _USER: job.requester.user_id, "state": job.state}
    if job.started_at is not None:
        fields["wait_seconds"] = round(job.started_at - job.created_at, 3)
    if job.finished_at is not None:
        fields["total_seconds"] = round(job.finished_at - job.created_at, 3)
    if job.gen_seconds is not None:
        fields["gen_seconds"] = round(job.gen_seconds, 3)
    fields.update(values)
    return fields


def user_key(data_dir: Path) -> bytes:
    """The key that pseudonymises user ids in JSON logs, made once per deployment (DATA_DIR/log-key, 0600)."""
    path = data_dir / "log-key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        key = secrets_module.token_bytes(32)
        atomic_write(path, key.hex().encode(), mode=0o600)
        return key


def setup_logging(secrets: list[str], *, fmt: str = "text", level: str = "INFO",
                  key: bytes | None = None) -> RedactingFormatter:
    """One redacting handler on the root logger, text or JSON; returns its formatter to add secrets later."""
    formatter: RedactingFormatter = JsonFormatter(key or secrets_module.token_bytes(32)) if fmt == "json" else \
        RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for secret in secrets:
        formatter.add_secret(secret)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return formatter
