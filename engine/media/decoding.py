"""Members' pictures are decoded apart from everything else: in a small pool of their own processes, each task
under a CPU-time and a memory limit, so a decoder bomb (a progressive JPEG whose scans repeat thousands of
times, a tiny WebP or PNG that declares a huge canvas) costs at most a few seconds of one process and never
holds the event loop, the store's threads or another member's interaction.

The pool's processes are started fresh (``spawn``): they import Pillow and the picture code only, so their
memory limit measures the decoding and not the bot. A task over its CPU time is killed by the kernel
(SIGXCPU); the pool is then started anew and the member told what happened.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import resource
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from engine.requests.params import ParamError
from engine.requests.sizes import Size

log = logging.getLogger(__name__)

DECODE_PROCESSES = 2
CPU_SECONDS = 4  # per picture; a 12 MP phone photo takes about 0.1 s, a 40 MP PNG about 1 s
MEMORY_BYTES = 1536 * 2**20  # address space of a decoding process
WALL_SECONDS = 20.0  # waiting for a free process included

TOO_SLOW = ("the picture could not be decoded within {seconds} s of CPU and its memory limit, so it was not used; "
            "send a smaller or simpler file (a photo straight from a camera or phone works)")
TOO_BIG = "the picture needs too much memory to decode; send one with fewer pixels"


def _limit_memory() -> None:
    """In each decoding process, before any task: its memory ceiling."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _decode(data: bytes, sizes: tuple[Size, ...], size: Size | None, cpu_seconds: int) -> tuple[bytes, Size]:
    """In a decoding process: ``prepare_upload`` under a CPU-time budget of its own (the process's CPU so far plus
    ``cpu_seconds``; past it the kernel ends the process)."""
    from engine.media.sources import prepare_upload

    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    budget = spent + cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (budget if hard == resource.RLIM_INFINITY else min(budget, hard), hard))
    try:
        return prepare_upload(data, sizes, size)
    except MemoryError:
        raise ParamError(TOO_BIG) from None


class PictureDecoder:
    """The bounded pool that prepares members' pictures (``engine.media.sources.prepare_upload``)."""

    def __init__(self, processes: int = DECODE_PROCESSES, cpu_seconds: int = CPU_SECONDS) -> None:
        self._processes = processes
        self.cpu_seconds = cpu_seconds
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_limit_memory)
            return self._pool

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, data: bytes, sizes: tuple[Size, ...], size: Size | None) -> tuple[bytes, Size]:
        """The picture as a PNG at ``size`` (else the allowed size nearest its shape); ParamError says what is wrong,
        also when it took too long or too much memory to decode."""
        pool = self._executor()
        try:
            future = pool.submit(_decode, data, sizes, size, self.cpu_seconds)
        except BrokenProcessPool:  # broken by another picture a moment ago
            self._restart(pool)
            pool = self._executor()
            future = pool.submit(_decode, data, sizes, size, self.cpu_seconds)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), WALL_SECONDS)
        except BrokenProcessPool:
            log.warning("a picture's decoding was stopped at its CPU or memory limit; restarting the decoders")
            self._restart(pool)
            raise ParamError(TOO_SLOW, seconds=self.cpu_seconds) from None
        except TimeoutError:
            raise ParamError(TOO_SLOW, seconds=self.cpu_seconds) from None
        except MemoryError:
            raise ParamError(TOO_BIG) from None

    def close(self) -> None:
        """Stop the decoding processes (at shutdown)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
