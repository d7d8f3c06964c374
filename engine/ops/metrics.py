"""Prometheus metrics of the engine (and the counters the bot feeds): one registry per Engine.

Counters and histograms follow the job events on the event bus; gauges (queue depth, model state,
GPU memory, GPU workers) are read from the engine's status at scrape time, so they are never stale.
The text format is served on METRICS_PORT or, behind METRICS_TOKEN, on the panel (imagine/metrics_http.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.jobs.records import JobEvent
from engine.ops.status import EngineStatus

LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
IMAGE_BUCKETS = (0.05, 0.08, 0.1, 0.2, 0.3, 0.45, 0.7, 1, 1.5, 2, 5, 10, 30, 60)
MODEL_STATES = ("loading", "ready", "failed")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StatusCollector(Collector):
    """Gauges read from the engine's status when Prometheus scrapes."""

    def __init__(self, status: Callable[[], EngineStatus], gpu_bytes: Callable[[], tuple[int, int] | None]) -> None:
        self._status = status
        self._gpu_bytes = gpu_bytes

    def collect(self) -> Iterator[Metric]:
        st = self._status()
        queue = GaugeMetricFamily("imagine_queue_jobs", "Active jobs by state", labels=["state"])
        queue.add_metric(["queued"], st.queued)
        queue.add_metric(["running"], st.running)
        yield queue
        model = GaugeMetricFamily("imagine_model_state", "1 for the model's current state", labels=["state"])
        for state in MODEL_STATES:
            model.add_metric([state], 1.0 if st.model_state == state else 0.0)
        yield model
        yield GaugeMetricFamily("imagine_jobs_last_hour", "Jobs finished in the last hour", value=st.jobs_last_hour)
        yield GaugeMetricFamily("imagine_uptime_seconds", "Seconds since the engine started", value=st.uptime_seconds)
        gpu = self._gpu_bytes()
        if gpu is not None:
            yield GaugeMetricFamily("imagine_gpu_memory_allocated_bytes", "GPU memory allocated by torch",
                                    value=gpu[0])
            yield GaugeMetricFamily("imagine_gpu_memory_total_bytes", "GPU memory of the device", value=gpu[1])
        if st.remote:
            busy = GaugeMetricFamily("imagine_worker_busy_batches", "Batches a GPU worker is running",
                                     labels=["worker"])
            slots = GaugeMetricFamily("imagine_worker_slots", "Batches a GPU worker runs at once", labels=["worker"])
            ready = GaugeMetricFamily("imagine_worker_ready", "1 when a GPU worker is ready", labels=["worker"])
            spi = GaugeMetricFamily("imagine_worker_seconds_per_image", "A GPU worker's recent seconds per image",
                                    labels=["worker"])
            for w in st.workers:
                busy.add_metric([w.name], w.busy)
                slots.add_metric([w.name], w.slots)
                ready.add_metric([w.name], 1.0 if w.state == "ready" else 0.0)
                if w.seconds_per_image is not None:
                    spi.add_metric([w.name], w.seconds_per_image)
            yield from (busy, slots, ready, spi)


class Metrics:
    """The registry and every metric in it; ``observe`` listens to the event bus."""

    def __init__(self, status: Callable[[], EngineStatus],
                 gpu_bytes: Callable[[], tuple[int, int] | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("imagine_jobs", "Jobs that reached an outcome", ["outcome"], registry=r)
        self.queue_wait = Histogram("imagine_queue_wait_seconds", "From submit to the start of generation",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.time_to_image = Histogram("imagine_time_to_image_seconds", "From submit to the finished images",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.seconds_per_image = Histogram("imagine_seconds_per_image", "Generation time per image",
                                           buckets=IMAGE_BUCKETS, registry=r)
        self.batch_images = Histogram("imagine_batch_images", "Images per pipeline call",
                                      buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r)
        self.delivery_retries = Counter("imagine_delivery_retries", "Result uploads retried", registry=r)
        self.delivery_fallbacks = Counter("imagine_delivery_fallbacks",
                                          "Results sent outside the interaction", ["route"], registry=r)
        self.discord_rate_limits = Counter("imagine_discord_rate_limits", "HTTP 429 answers from Discord",
                                           registry=r)
        # image safety (SAFETY_MODEL_ID): the classifier's scores, to choose SAFETY_THRESHOLD from, and what the
        # NSFW policy did with each delivered image (posted, spoilered, withheld)
        self.safety_score = Histogram("imagine_safety_score", "NSFW score of each generated image",
                                      buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), registry=r)
        self.safety_images = Counter("imagine_safety_images", "Delivered images by what the NSFW policy did",
                                     ["action"], registry=r)
        # messages from GPU workers the bot host did not take, by reason: malformed, forged, oversized, bad_images,
        # stale, not_running (docs/operators.md, "Monitoring")
        self.remote_refused = Counter("imagine_remote_messages_refused", "Messages from GPU workers not taken in",
                                      ["reason"], registry=r)
        r.register(_StatusCollector(status, gpu_bytes))

    def observe(self, event: JobEvent) -> None:
        """Follow a job event (an event-bus listener; cheap)."""
        job = event.job
        if event.kind == "started":
            self.queue_wait.observe(max(0.0, time.time() - job.created_at))
        elif event.kind == "done":
            self.jobs.labels("done").inc()
            self.time_to_image.observe(max(0.0, (job.finished_at or time.time()) - job.created_at))
            if job.gen_seconds is not None and job.params.count:
                self.seconds_per_image.observe(job.gen_seconds / job.params.count)
            for score in job.safety:
                self.safety_score.observe(score)
        elif event.kind in ("failed", "cancelled"):
            self.jobs.labels(event.kind).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
