"""When is a lone job's result deliverable? The result saver against the old sequential save.

The saver (engine/media/saving.py) encodes each image's delivery copy and PNG original in parallel and
marks the job done as soon as the copies are written (the PNGs follow). The old code encoded the PNG,
then the copy, image after image, and marked the job done after the last one. This measures, for one
job of ``--count`` images at ``--size``^2, the seconds from handing the images over to:

* ``done``: the job is done (the "done" event, the moment the bot can post the result);
* ``png``: the PNG originals are written and recorded.

And the delivery copy's encode alone: WebP at method 4 (before), the engine's (WebP method 0) and JPEG, with size
and PSNR.

Two kinds of image: ``photo`` (smooth colour fields plus a little noise, close to real outputs) and
``noise`` (uniform random pixels, the worst case for both encoders). Real store, real files; the
event bus is replaced by a stub that records the time of the "done" event.

usage: python benchmarks/bench_saving_cpu.py [--size 1024] [--count 1] [--repeat 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def make_image(kind: str, size: int, seed: int) -> Image.Image:
    """A ``photo``-like or ``noise`` RGB image."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + seed) * 0.5 + 0.5, np.cos(4 * y) * 0.5 + 0.5, x * y], -1) * 200
    return Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))


class Events:
    """Records when "done" was published."""

    def __init__(self) -> None:
        self.done_at: float | None = None

    def publish_threadsafe(self, event: Any) -> None:
        """Note the time of the "done" event."""
        if event.kind == "done":
            self.done_at = time.perf_counter()


class NoStats:
    """The engine's statistics, not needed here."""

    def record_finished(self) -> None:
        """Nothing to count."""


def run_saver(store: Any, settings: Any, images: list[Any], count: int) -> tuple[float, float]:
    """(seconds to done, seconds to PNGs recorded) through the ResultSaver."""
    from engine.jobs.ledger import JobLedger
    from engine.jobs.records import Requester
    from engine.media.saving import ResultSaver
    from engine.requests.params import GenerationParams

    events = Events()
    saver = ResultSaver(settings, JobLedger(lambda: store, events, NoStats()))  # type: ignore[arg-type]
    params = GenerationParams(prompt="a fox", negative_prompt="", width=images[0].width, height=images[0].height,
                              steps=25, guidance=9.0, seed=1, count=count)
    job = store.insert_job(Requester(user_id="bench"), params)
    store.set_running([job.id])
    started = time.perf_counter()
    saver.submit(job, images, 1.0)
    while not all(p.endswith(".png") for p in (store.get(job.id).results or ["x"])):
        time.sleep(0.001)
    png = time.perf_counter() - started
    saver.shutdown()
    assert events.done_at is not None
    return events.done_at - started, png


def run_sequential(store: Any, settings: Any, images: list[Any], count: int) -> float:
    """Seconds to done the old way: PNG then copy, image after image, then done."""
    from engine.jobs.records import Requester
    from engine.media.images import write_delivery_copy, write_png
    from engine.requests.params import GenerationParams

    params = GenerationParams(prompt="a fox", negative_prompt="", width=images[0].width, height=images[0].height,
                              steps=25, guidance=9.0, seed=1, count=count)
    job = store.insert_job(Requester(user_id="bench"), params)
    store.set_running([job.id])
    started = time.perf_counter()
    pngs, copies = [], []
    for i, img in enumerate(images):
        pngs.append(str(write_png(img, settings.results_dir, job.id, i, params, 1 + i)))
        copies.append(str(write_delivery_copy(img, settings.results_dir, job.id, i, settings.delivery_format,
                                              settings.delivery_quality)))
    store.set_done(job.id, pngs, 1.0, deliveries=copies)
    return time.perf_counter() - started


def encoders(image: Any, repeat: int) -> dict[str, Any]:
    """The delivery copy's encode: WebP at method 4 (before), the engine's own encode (WebP method 0) and JPEG,
    each with its median ms, size and PSNR against the image."""
    import io

    from engine.media.images import encode

    def psnr(data: bytes) -> float:
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
        mse = float(np.mean((np.asarray(image, dtype=np.float64) - decoded) ** 2))
        return round(10 * np.log10(255**2 / mse), 2) if mse else float("inf")

    def webp_method_4(img: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, "WEBP", quality=90, method=4)
        return buf.getvalue()

    out: dict[str, Any] = {}
    for label, call in (("webp_method4_before", webp_method_4), ("webp_engine", lambda img: encode(img, "webp", 90)),
                        ("jpeg_engine", lambda img: encode(img, "jpeg", 90))):
        times, data = [], b""
        for _ in range(repeat):
            started = time.perf_counter()
            data = call(image)
            times.append(time.perf_counter() - started)
        out[label] = {"ms": round(1000 * statistics.median(times), 1), "kb": len(data) // 1024, "psnr_db": psnr(data)}
    out["webp_engine_speedup"] = round(out["webp_method4_before"]["ms"] / out["webp_engine"]["ms"], 2)
    return out


def main(argv: list[str] | None = None) -> None:
    """Measure and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", default="webp", choices=("webp", "jpeg"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from engine.engine_settings import EngineSettings
    from engine.jobs.store import JobStore
    from engine.media.saving import SAVER_THREADS

    res: dict[str, Any] = {"benchmark": "bench_saving_cpu", "date": time.strftime("%Y-%m-%d"),
                           "cpus": os.cpu_count(), "saver_threads": SAVER_THREADS, "size": args.size,
                           "count": args.count, "delivery_format": args.format, "repeat": args.repeat,
                           "load_avg": os.getloadavg(), "kinds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        settings = EngineSettings(_env_file=None, data_dir=Path(tmp), delivery_format=args.format)
        settings.results_dir.mkdir(parents=True)
        store = JobStore(settings.db_path)
        for kind in ("photo", "noise"):
            images = [make_image(kind, args.size, i) for i in range(args.count)]
            old, done, png = [], [], []
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                old.append(run_sequential(store, settings, images, args.count))
                d, p = run_saver(store, settings, images, args.count)
                done.append(d)
                png.append(p)
            med = {"old_done_s": statistics.median(old), "done_s": statistics.median(done),
                   "png_s": statistics.median(png)}
            res["kinds"][kind] = {k: round(v, 3) for k, v in med.items()} | {
                "done_vs_old": round(med["done_s"] / med["old_done_s"], 3),
                "delivery_copy_encode": encoders(images[0], args.repeat)}
            print(kind, json.dumps(res["kinds"][kind]), file=sys.stderr, flush=True)
        store.close()
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
