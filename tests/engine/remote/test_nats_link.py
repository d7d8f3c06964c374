"""NATS connection helpers that need no server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.engine_settings import RemoteSettings
from engine.remote import wire
from engine.remote.flights import batch_seconds
from engine.remote.nats_link import safe_url, unencrypted_hosts


def test_safe_url_hides_credentials_of_every_server() -> None:
    """user:password@ never reaches a log line, for each server of a cluster list."""
    url = "nats://imagine:s3cret@a.example:4222, tls://token@b.example:4222,nats://c.example:4222"
    shown = safe_url(url)
    assert "s3cret" not in shown and "token@" not in shown
    assert shown == ("nats://[credentials]@a.example:4222,tls://[credentials]@b.example:4222,"
                     "nats://c.example:4222")


def test_plain_text_off_this_machine_is_named_for_a_warning() -> None:
    """nats:// to another host is reported (credentials hidden); loopback, tls:// or a CA are not."""
    settings = RemoteSettings(_env_file=None, nats_url="nats://u:pw@gpu.example:4222,nats://127.0.0.1:4222,"
                                                       "tls://b.example:4222")
    assert unencrypted_hosts(settings) == ["nats://[credentials]@gpu.example:4222"]
    with_ca = RemoteSettings(_env_file=None, nats_url="nats://gpu.example:4222", nats_tls_ca=Path("/ca.pem"))
    assert unencrypted_hosts(with_ca) == []


def test_a_nats_prefix_names_everything_of_the_deployment() -> None:
    """Streams, buckets and subjects all start with NATS_PREFIX, so deployments sharing a server stay apart."""
    names = wire.Names("beta-2")
    assert (names.jobs_stream, names.images_bucket, names.workers_bucket) == ("BETA_2_JOBS", "beta_2_images",
                                                                             "beta_2_workers")
    assert names.jobs_subject("m").startswith("beta-2.jobs.") and names.cancel_subject == "beta-2.cancel"


def test_a_nats_prefix_that_is_no_subject_token_is_refused() -> None:
    """NATS_PREFIX must be a lower-case subject token (a dot or a wildcard would reach other deployments)."""
    with pytest.raises(ValidationError):
        RemoteSettings(_env_file=None, nats_prefix="a.b")
    with pytest.raises(ValidationError):
        RemoteSettings(_env_file=None, nats_prefix="*")


def test_batch_deadlines_grow_with_steps_pixels_and_images() -> None:
    """A batch's time limit is the base plus seconds per step of each one-megapixel image (AI Horde's model)."""
    from engine.jobs.records import Job, Requester
    from engine.requests.params import GenerationParams

    def job(size: int, steps: int, count: int) -> Job:
        return Job(id=1, state="running", priority=0, requester=Requester("u"), created_at=0.0,
                   params=GenerationParams("p", "", size, size, steps, 5.0, seed=1, count=count))

    assert batch_seconds([job(1024, 25, 1)], base=120, per_step=0.5) == 120 + 25 * 0.5
    assert batch_seconds([job(1024, 25, 4), job(512, 20, 2)], base=120, per_step=0.5) == \
        120 + (25 * 4 + 20 * 2 / 4) * 0.5
