"""Prometheus metrics of the engine: gauges from the status, counters and histograms from job events."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from engine.jobs.records import Job, Requester
from engine.service import Engine
from tests.engine.helpers import params, wait_final


def samples(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    text = engine.metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_finished_job_is_counted_with_its_latencies(engine: Engine) -> None:
    """After one done job: the outcome counter, queue wait, time to image and seconds per image have one each."""
    job = (await engine.submit(params(count=2), Requester("u1", guild_id="g1"))).job
    assert (await wait_final(engine, job.id)).state == "done"
    got = samples(engine)
    assert got[("imagine_jobs_total", (("outcome", "done"),))] == 1
    for name in ("imagine_queue_wait_seconds_count", "imagine_time_to_image_seconds_count",
                 "imagine_seconds_per_image_count"):
        assert got[(name, ())] == 1
    assert got[("imagine_batch_images_sum", ())] == 2


async def test_gauges_read_the_status_at_scrape_time(engine: Engine) -> None:
    """Queue depth and model state are the engine's at the moment of the scrape."""
    got = samples(engine)
    assert got[("imagine_model_state", (("state", "ready"),))] == 1
    assert got[("imagine_model_state", (("state", "loading"),))] == 0
    assert got[("imagine_queue_jobs", (("state", "queued"),))] == 0


async def test_failed_jobs_are_counted_by_outcome(engine: Engine) -> None:
    """A failed job counts under outcome="failed"."""

    def explode(jobs: list[Job]) -> None:
        raise RuntimeError("boom")

    engine.before_batch = explode
    job = (await engine.submit(params(), Requester("u1"))).job
    await wait_final(engine, job.id)
    assert samples(engine)[("imagine_jobs_total", (("outcome", "failed"),))] == 1
