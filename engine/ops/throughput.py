"""Throughput figures for status views and ETAs: seconds per image and jobs finished in the last hour."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

HOUR = 3600.0


class Stats:
    """Written by the worker (per batch) and the saver (per job), read by the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spi: float | None = None
        self._finished: deque[float] = deque()  # finish times within the last hour
        self.batch_listeners: list[Callable[[int], None]] = []  # told each pipeline call's image count

    def load(self, seconds_per_image: float | None, finished_times: Iterable[float]) -> None:
        """Start from what the store remembers (after a restart)."""
        with self._lock:
            self._spi = seconds_per_image or None
            self._finished.extend(sorted(finished_times))

    def record_batch(self, per_image: float, images: int = 0) -> None:
        """A pipeline call of ``images`` images took ``per_image`` seconds each (smoothed, recent weigh more)."""
        with self._lock:
            self._spi = per_image if self._spi is None else 0.7 * self._spi + 0.3 * per_image
        for listener in self.batch_listeners:
            if images:
                listener(images)

    def record_finished(self, when: float | None = None) -> None:
        """A job finished."""
        with self._lock:
            self._finished.append(time.time() if when is None else when)

    @property
    def seconds_per_image(self) -> float | None:
        """The smoothed generation time per image, None before the first image."""
        return self._spi

    def jobs_last_hour(self) -> int:
        """Jobs finished within the last hour."""
        hour_ago = time.time() - HOUR
        with self._lock:
            while self._finished and self._finished[0] < hour_ago:
                self._finished.popleft()
            return len(self._finished)
