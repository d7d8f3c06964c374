"""Result intake on the bot host: how many 1024² images per second the NATS dispatcher stores. Prints JSON.

A GPU worker sends each image as its PNG original and, since "one worker runtime", its delivery copy too;
the bot host fetches both from the Object Store, writes them and records the job (engine/remote/dispatch.py),
several results at once. Before that, the worker sent PNGs only and the bot host took results one at a time,
decoding each PNG to make its WebP copy. Both ways run here in one process, through a real nats-server and
the real dispatcher, on the same jobs and images:

* ``before``: results without copies (the bot host makes them, as it does for an older worker) and one result
  at a time (INTAKE_PARALLEL=1);
* ``after``: results with copies, INTAKE_PARALLEL as shipped.

A stand-in worker (this script) uploads the files and publishes the result messages; the clock runs from the
first result message to the last job recorded done. The images are 1024² and photo-like (smooth shapes with
fine noise, so PNG and WebP sizes are those of real results: about 2 MB and 0.25 MB).

Usage: ``python benchmarks/bench_intake.py [--images 96] [--size 1024] [--out FILE]`` (about a minute on 2
cores). Goal: at least 12 images/s on 2 cores after (one H200 in fast mode makes about 12 images/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.bench_engine_cpu import cpu_model, emit, wait_all_done  # noqa: E402
from engine.engine_settings import AccelerationSettings, EngineSettings, RemoteSettings  # noqa: E402
from engine.jobs.records import Requester  # noqa: E402
from engine.jobs.store import JobStore  # noqa: E402
from engine.media.images import encode, png_metadata  # noqa: E402
from engine.remote import intake as result_intake  # noqa: E402
from engine.remote import wire  # noqa: E402
from engine.remote.nats_link import connect, publish  # noqa: E402
from engine.remote.signing import Signer  # noqa: E402
from engine.requests.params import GenerationParams  # noqa: E402
from engine.service import Engine  # noqa: E402
from tests.support.nats_server import NatsServer  # noqa: E402


def photo_like(size: int) -> Any:
    """A 1024² RGB image that compresses like a photograph: smooth colour fields with fine grain."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    coarse = rng.random((size // 64, size // 64, 3)) * 255
    smooth = np.asarray(Image.fromarray(coarse.astype("uint8")).resize((size, size), Image.Resampling.BICUBIC),
                        dtype=np.float32)
    grain = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype("uint8"))


def settings_for(work: Path, url: str, size: int) -> EngineSettings:
    """A bot host with NATS_URL; no worker is needed, the script sends the results itself."""
    return EngineSettings(_env_file=None, model_id="bench/intake-model", device="cpu", sizes=f"{size}x{size}",
                          default_size=f"{size}x{size}", data_dir=work / "data", fast_lora_id="", max_batch=1,
                          accel=AccelerationSettings(_env_file=None),
                          remote=RemoteSettings(_env_file=None, nats_url=url, worker_heartbeat=0.5))


async def intake(work: Path, images: int, size: int, with_copies: bool, parallel: int) -> dict[str, float]:
    """Seconds and images/s for ``images`` one-image results taken in by a fresh bot host."""
    server = NatsServer(work / "nats")
    server.start()
    settings = settings_for(work, server.url, size)
    store = JobStore(settings.db_path)
    params = GenerationParams("a red fox in the snow", "", size, size, 25, 9.0, seed=1)
    ids = []
    for i in range(images):
        job = store.insert_job(Requester(user_id=f"user{i % 25}"), params)
        store.set_running([job.id])  # dispatched before the bot host restarted: its results are awaited
        ids.append(job.id)
    store.close()
    image = photo_like(size)
    png = encode(image, "png", pnginfo=png_metadata(params, 1, 1))
    copy = encode(image, settings.delivery_format, settings.delivery_quality)
    result_intake.INTAKE_PARALLEL = parallel
    engine = Engine(settings)
    await engine.start()
    link = await connect(settings.remote, "bench worker", [settings.model_id], declare=True)
    signer = Signer.for_data_dir(settings.data_dir)  # a real worker learns each token from its batch
    try:
        messages = []
        for job_id in ids:  # what a worker does before it publishes: the files in the Object Store
            name = wire.result_object("bench", job_id, 1, 0)
            await link.images.put(name, png)
            copies = []
            if with_copies:
                copies.append(wire.copy_object("bench", job_id, 1, 0, settings.delivery_format))
                await link.images.put(copies[0], copy)
            messages.append(wire.ResultMessage(job_id=job_id, batch="bench", worker="bench", attempt=1, state="done",
                                               images=[name], copies=copies, gen_seconds=1.0,
                                               token=signer.token("bench", job_id)))
        with engine.subscribe() as stream:
            started = time.perf_counter()
            for message in messages:
                await publish(link.js, f"{link.names.results_subject}.{message.job_id}",
                              message.model_dump_json().encode(),
                              msg_id=f"result-{wire.result_id('bench', message.job_id, 1)}")
            await wait_all_done(stream, images, 300)
            seconds = time.perf_counter() - started
    finally:
        await link.close()
        await engine.stop()
        server.stop()
    return {"seconds": round(seconds, 3), "images_per_s": round(images / seconds, 2),
            "png_bytes": len(png), "copy_bytes": len(copy)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    shipped = result_intake.INTAKE_PARALLEL
    result: dict[str, Any] = {"benchmark": "bench_intake", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                              "cpu_count": os.cpu_count(), "images": args.images, "size": args.size}
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        result["before"] = await intake(Path(tmp) / "before", args.images, args.size, with_copies=False, parallel=1)
        result["after"] = await intake(Path(tmp) / "after", args.images, args.size, with_copies=True,
                                       parallel=shipped)
    result["intake_parallel"] = shipped
    result["speedup"] = round(result["after"]["images_per_s"] / result["before"]["images_per_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
