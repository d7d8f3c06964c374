"""NATS connection helpers that need no server."""

from __future__ import annotations

from engine.remote.nats_link import safe_url


def test_safe_url_hides_credentials_of_every_server() -> None:
    """user:password@ never reaches a log line, for each server of a cluster list."""
    url = "nats://imagine:s3cret@a.example:4222, tls://token@b.example:4222,nats://c.example:4222"
    shown = safe_url(url)
    assert "s3cret" not in shown and "token@" not in shown
    assert shown == ("nats://[credentials]@a.example:4222,tls://[credentials]@b.example:4222,"
                     "nats://c.example:4222")
