"""The bot host's signatures on what it hands to GPU workers.

Each dispatched job carries a token, an HMAC of (batch, job) under a key only the bot host holds (a file in
DATA_DIR, made on first use). A worker learns the token only by taking the batch, so results, progress and
cancels that name a job are believed only with its token: another client on the same NATS server cannot
forge a result, report on a batch it did not take, or cancel someone else's job.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "dispatch.key"


class Signer:
    """Signs and checks (batch, subject) pairs with the deployment's dispatch key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Signer:
        """The key stored in ``data_dir`` (created, readable by its owner only, on first use): tokens of batches
        sent before a restart still check after it."""
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return cls(path.read_bytes())

    def token(self, batch: str, subject: int | str) -> str:
        """The token of ``subject`` (a job id, or "taken") within ``batch``."""
        return hmac.new(self._key, f"{batch}/{subject}".encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, batch: str, subject: int | str, token: str) -> bool:
        """True when ``token`` is this key's token of ``subject`` in ``batch``."""
        return hmac.compare_digest(self.token(batch, subject), token)
