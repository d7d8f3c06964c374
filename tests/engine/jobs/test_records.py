"""Job records: which file each result is delivered from, decided by the record alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.jobs.records import Job, Requester
from tests.engine.helpers import params

REPO = Path(__file__).resolve().parents[3]


def done_job(results: tuple[str, ...], deliveries: tuple[str, ...] = ()) -> Job:
    """A finished job with these stored paths (none of them exist on disk)."""
    return Job(id=5, state="done", priority=0, requester=Requester("u"), params=params(count=len(results)),
               created_at=0.0, results=results, deliveries=deliveries)


def test_delivery_paths_are_the_recorded_copies() -> None:
    """A job with recorded copies delivers them, in order, without looking for them on disk."""
    job = done_job(("/gone/a.png", "/gone/b.png"), ("/gone/a.webp", "/gone/b.webp"))
    assert job.delivery_paths == ("/gone/a.webp", "/gone/b.webp")


def test_delivery_paths_fall_back_to_the_pngs() -> None:
    """A job saved before copies were recorded delivers its PNGs."""
    assert done_job(("/gone/a.png",)).delivery_paths == ("/gone/a.png",)


def test_job_records_do_not_load_the_image_code() -> None:
    """Importing engine.jobs.records and reading delivery_paths loads neither engine.media.images nor Pillow."""
    code = ("import json, sys\n"
            "from engine.jobs.records import Job, Requester\n"
            "job = Job(id=1, state='done', priority=0, requester=Requester('u'), params=None, created_at=0.0,\n"
            "          results=('/a.png',))\n"
            "assert job.delivery_paths == ('/a.png',)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "engine.media.images" not in modules and "PIL" not in modules
