"""Engine faults: model load failures, CUDA out-of-memory, a full disk, fast mode without its LoRA."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
import torch

from engine.jobs.records import Refused
from tests.engine.helpers import WAIT, GatedLoader, params, wait_final, wait_idle, who


def oom() -> torch.OutOfMemoryError:
    """What torch raises when CUDA runs out of memory (the class is named OutOfMemoryError)."""
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


# --- model loading -------------------------------------------------------------------------------


async def test_bad_model_id_fails_queued_jobs_with_reason(make_engine, tmp_path: Path) -> None:
    """When the model cannot load, jobs queued meanwhile fail with a message naming the model and the fix."""
    missing = tmp_path / "no-such-model"
    loader = GatedLoader()
    eng = await make_engine(loader=loader, model_id=str(missing))
    sub = await eng.submit(params(), who())
    loader.open()
    assert not await eng.wait_ready(WAIT)
    job = await wait_final(eng, sub.job.id)
    assert job.state == "failed"
    assert job.error.startswith("Image generation is unavailable: ")
    assert str(missing) in job.error and "does not exist" in job.error and "model_index.json" in job.error


async def test_service_stays_up_after_model_failure(make_engine, tmp_path: Path) -> None:
    """After a failed load the engine still answers: status, history, and a clear refusal of new jobs."""
    eng = await make_engine(model_id=str(tmp_path / "no-such-model"))
    assert not await eng.wait_ready(WAIT)
    status = eng.status()
    assert status.model_state == "failed" and "does not exist" in status.model_error
    with pytest.raises(Refused) as info:
        await eng.submit(params(), who())
    assert info.value.reason == "model_failed" and "does not exist" in info.value.message
    assert await eng.history() == [] and await eng.cancel(1) == "not_found"


async def test_failed_fast_lora_only_disables_fast_mode(make_engine, tmp_path: Path) -> None:
    """A fast-mode LoRA that cannot load leaves the model ready, fast mode off, quality jobs working."""
    eng = await make_engine(fast_lora_id=str(tmp_path / "no-such-lora"))
    assert await eng.wait_ready(WAIT)
    assert not eng.status().fast_available
    job = await wait_final(eng, (await eng.submit(params(), who())).job.id)
    assert job.state == "done"


async def test_fast_job_refused_without_lora(make_engine) -> None:
    """With no fast-mode LoRA configured, a fast request is refused with reason 'fast_unavailable'."""
    eng = await make_engine(fast_lora_id="")
    assert await eng.wait_ready(WAIT)
    with pytest.raises(Refused) as info:
        await eng.submit(params(fast=True, steps=2, guidance=1.0), who())
    assert info.value.reason == "fast_unavailable" and "without --fast" in info.value.message


async def test_fast_job_queued_during_load_fails_clearly_without_lora(make_engine, tmp_path: Path) -> None:
    """A fast job accepted while loading, whose LoRA then fails to load, fails saying fast mode is unavailable."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader, fast_lora_id=str(tmp_path / "no-such-lora"))
    fast = await eng.submit(params(fast=True, guidance=1.0), who("u1"))
    quality = await eng.submit(params(size=(96, 64)), who("u2"))
    loader.open()
    failed = await wait_final(eng, fast.job.id)
    assert failed.state == "failed" and "Fast mode is not available" in failed.error
    assert (await wait_final(eng, quality.job.id)).state == "done"


async def test_fast_job_runs_with_lora(engine) -> None:
    """With the LoRA loaded, a fast job completes."""
    job = await wait_final(engine, (await engine.submit(params(fast=True, steps=2, guidance=1.0), who())).job.id)
    assert job.state == "done" and job.params.fast


# --- out of memory -------------------------------------------------------------------------------


async def test_oom_on_a_batch_retries_jobs_one_by_one(make_engine) -> None:
    """A CUDA OOM on a batched call reruns each job of the batch alone, and all of them finish."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    calls: list[list[int]] = []

    def fail_batches(jobs) -> None:
        calls.append([j.id for j in jobs])
        if len(jobs) > 1:
            raise oom()

    eng.before_batch = fail_batches
    a = await eng.submit(params(seed=1), who("u1"))
    b = await eng.submit(params(seed=2), who("u2"))
    loader.open()
    jobs = [await wait_final(eng, a.job.id), await wait_final(eng, b.job.id)]
    assert calls == [[a.job.id, b.job.id], [a.job.id], [b.job.id]]
    assert [j.state for j in jobs] == ["done", "done"]


async def test_oom_on_a_lone_job_fails_it_clearly(make_engine) -> None:
    """A job that runs out of memory alone fails with a message about size and image count."""
    eng = await make_engine()

    def always_oom(jobs) -> None:
        raise oom()

    eng.before_batch = always_oom
    job = await wait_final(eng, (await eng.submit(params(count=2), who())).job.id)
    assert job.state == "failed"
    assert job.error == ("The GPU ran out of memory for 64x64 with 2 image(s). Try a smaller size or fewer images.")


async def test_job_after_an_oom_failure_works(make_engine) -> None:
    """After a job failed from OOM, the next job runs normally."""
    eng = await make_engine()
    doomed: set[int] = set()

    def oom_for_doomed(jobs) -> None:
        if any(j.id in doomed for j in jobs):
            raise oom()

    eng.before_batch = oom_for_doomed
    eng_job = await eng.submit(params(), who("u1"))
    doomed.add(eng_job.job.id)
    assert (await wait_final(eng, eng_job.job.id)).state == "failed"
    await wait_idle(eng)
    nxt = await wait_final(eng, (await eng.submit(params(), who("u2"))).job.id)
    assert nxt.state == "done" and nxt.error is None


async def test_other_exception_fails_job_without_internals(make_engine) -> None:
    """An unexpected error fails the job with a generic message, not the exception text."""
    eng = await make_engine()

    def explode(jobs) -> None:
        raise ValueError("secret internal detail")

    eng.before_batch = explode
    job = await wait_final(eng, (await eng.submit(params(), who())).job.id)
    assert job.state == "failed" and "internal error" in job.error and "secret" not in job.error


# --- disk full -----------------------------------------------------------------------------------


async def test_disk_full_while_saving_fails_job_clearly(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing the result fails the job with a disk-full message and leaves no 'done' row."""

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    job = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    assert job.state == "failed" and "disk is full" in job.error
    con = sqlite3.connect(engine.settings.db_path)
    try:
        assert con.execute("SELECT COUNT(*) FROM jobs WHERE state='done'").fetchone() == (0,)
    finally:
        con.close()
    assert not [p for p in engine.settings.data_dir.rglob("*") if p.is_file() and p.suffix in (".png", ".webp")]


async def test_other_storage_error_fails_job_clearly(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another OS error while saving fails the job with a storage-error message."""

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    job = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    assert job.state == "failed" and "storage error" in job.error
