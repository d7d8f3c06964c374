"""Logs: never a secret (bot token, passwords, interaction tokens); JSON lines with job fields."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from engine.jobs.records import Job, Requester
from engine.ops.logs import JsonFormatter, RedactingFormatter, job_fields, user_key
from tests.engine.helpers import params, wait_final


def _format(formatter: RedactingFormatter, message: str, *args: object, exc: BaseException | None = None) -> str:
    record = logging.LogRecord("test", logging.ERROR, __file__, 1, message, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    return formatter.format(record)


def test_configured_secrets_are_redacted_in_messages():
    """A secret in the message or its arguments is replaced."""
    formatter = RedactingFormatter("%(message)s")
    formatter.add_secret("MTA.bot-token-value")
    assert _format(formatter, "login with %s failed", "MTA.bot-token-value") == "login with [redacted] failed"


def test_secrets_in_tracebacks_are_redacted():
    """Exception text and tracebacks go through the same redaction."""
    formatter = RedactingFormatter("%(message)s")
    formatter.add_secret("hunter2-admin")
    try:
        raise RuntimeError("password hunter2-admin rejected")
    except RuntimeError as exc:
        text = _format(formatter, "boom", exc=exc)
    assert "hunter2-admin" not in text and "[redacted]" in text


def test_interaction_tokens_in_urls_are_redacted():
    """Webhook and interaction URLs keep their ids but lose their tokens."""
    formatter = RedactingFormatter("%(message)s")
    text = _format(formatter, "PATCH /api/v10/webhooks/123/aW50ZXJhY3Rpb246MTIzOmFiY2RlZmdoaWprbG1u/messages/@original")
    assert "aW50ZXJhY3Rpb24" not in text and "/webhooks/123/[token]" in text


def test_short_values_are_not_treated_as_secrets():
    """An accidental one-letter "secret" would garble every line, so it is ignored."""
    formatter = RedactingFormatter("%(message)s")
    formatter.add_secret("a")
    assert _format(formatter, "a cat") == "a cat"


def _json_line(formatter: JsonFormatter, record: logging.LogRecord) -> dict[str, object]:
    line = formatter.format(record)
    assert "\n" not in line
    return json.loads(line)


def test_json_lines_carry_job_fields_and_hash_the_user() -> None:
    """A job log line in JSON: id, guild, event, durations, and the requester only as a keyed hash."""
    formatter = JsonFormatter(b"k" * 32)
    job = Job(id=7, state="done", priority=0, requester=Requester(user_id="123456789012345678", guild_id="42"),
              params=params(), created_at=100.0, started_at=101.5, finished_at=104.0, gen_seconds=2.25)
    record = logging.makeLogRecord({"name": "engine.jobs.events", "levelname": "INFO", "levelno": logging.INFO,
                                    "msg": "job %s %s", "args": (7, "done"), **job_fields(job, "done")})
    entry = _json_line(formatter, record)
    assert entry["message"] == "job 7 done" and entry["job_id"] == 7 and entry["guild_id"] == "42"
    assert (entry["event"], entry["wait_seconds"], entry["total_seconds"], entry["gen_seconds"]) == \
        ("done", 1.5, 4.0, 2.25)
    assert entry["user_hash"] == formatter.user_hash("123456789012345678")
    assert "123456789012345678" not in json.dumps(entry)


def test_json_lines_are_redacted_too() -> None:
    """Secrets never reach a JSON line, in the message or the exception."""
    formatter = JsonFormatter(b"k" * 32)
    formatter.add_secret("hunter2-admin")
    try:
        raise RuntimeError("password hunter2-admin rejected")
    except RuntimeError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login %s", ("hunter2-admin",),
                                   (type(exc), exc, exc.__traceback__))
    entry = _json_line(formatter, record)
    assert "hunter2-admin" not in json.dumps(entry) and "[redacted]" in entry["exception"]


def test_user_key_is_made_once_and_private(tmp_path: Path) -> None:
    """The hashing key is created on first use (0600) and the same afterwards, so hashes stay stable."""
    first = user_key(tmp_path)
    assert user_key(tmp_path) == first and len(first) == 32
    assert (tmp_path / "log-key").stat().st_mode & 0o777 == 0o600


async def test_every_state_change_is_logged_once_with_its_fields(engine, caplog) -> None:
    """queued → started → done each log one line with the job's fields (progress is not logged)."""
    caplog.set_level(logging.INFO, logger="engine.jobs.events")
    sub = await engine.submit(params("a logged fox"), Requester(user_id="u9", guild_id="g9"))
    await wait_final(engine, sub.job.id)
    await asyncio.sleep(0.1)
    events = [(r.event, r.job_id) for r in caplog.records if getattr(r, "job_id", None) == sub.job.id]
    assert events == [("queued", sub.job.id), ("started", sub.job.id), ("done", sub.job.id)]
