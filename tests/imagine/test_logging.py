"""The service's log never shows the bot token, the admin password or interaction tokens."""

from __future__ import annotations

import logging

from imagine.logs import RedactingFormatter


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
