"""``python -m engine backup DIR`` while the service runs: a consistent job store and the keys, private."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from engine.jobs.records import Requester
from engine.service import Engine
from tests.engine.helpers import params, wait_final

ROOT = Path(__file__).resolve().parents[3]


async def test_a_backup_taken_while_the_engine_runs_holds_its_jobs_and_keys(engine: Engine, tmp_path: Path) -> None:
    """Jobs done, an admin password and a dispatch key under DATA_DIR: the backup's store opens and lists every
    job, the keys are copied, and everything is readable by its owner only."""
    data_dir = engine.settings.data_dir
    ids = [(await engine.submit(params(f"fox {i}", seed=i), Requester(f"u{i}"))).job.id for i in range(3)]
    for job_id in ids:
        assert (await wait_final(engine, job_id)).state == "done"
    (data_dir / "admin-password").write_text("s3cret\n")
    (data_dir / "dispatch.key").write_bytes(os.urandom(32))
    target = tmp_path / "backup"
    env = dict(os.environ, DATA_DIR=str(data_dir), MODEL_ID=engine.settings.model_id, SIZES="64x64",
               DEFAULT_SIZE="64x64")
    done = subprocess.run([sys.executable, "-m", "engine", "backup", str(target)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    copy = sqlite3.connect(target / engine.settings.db_path.name)
    try:
        assert sorted(r[0] for r in copy.execute("SELECT id FROM jobs")) == sorted(ids)
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        copy.close()
    assert (target / "admin-password").read_text() == "s3cret\n"
    assert (target / "dispatch.key").read_bytes() == (data_dir / "dispatch.key").read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) & 0o077 == 0 for f in target.iterdir() if f.name != "BACKUP_INFO")
    assert f"rsync -a {engine.settings.results_dir}/" in done.stdout


def test_a_backup_of_a_folder_without_a_store_says_so(tmp_path: Path) -> None:
    """DATA_DIR pointing at the wrong folder: exit 1 and a message naming it, nothing half-written."""
    env = dict(os.environ, DATA_DIR=str(tmp_path / "empty"))
    done = subprocess.run([sys.executable, "-m", "engine", "backup", str(tmp_path / "b")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no job store at" in done.stderr and not (tmp_path / "b").exists()
