"""Counting Discord's 429 answers: discord.py retries them itself and only says so in its log."""

from __future__ import annotations

import logging

from prometheus_client import Counter

# discord/http.py logs every 429 it receives with this message before it waits and retries
_RATE_LIMITED = "We are being rate limited."


class RateLimitCounter(logging.Handler):
    """A handler on the ``discord.http`` logger that counts rate-limit records into a Prometheus counter."""

    def __init__(self, counter: Counter) -> None:
        super().__init__(level=logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record when it reports a 429."""
        if isinstance(record.msg, str) and record.msg.startswith(_RATE_LIMITED):
            self.counter.inc()

    def attach(self) -> None:
        """Start counting."""
        logging.getLogger("discord.http").addHandler(self)

    def detach(self) -> None:
        """Stop counting."""
        logging.getLogger("discord.http").removeHandler(self)
