"""Where batches run, behind one small protocol with two implementations: in this process
(``engine.gpu.local_worker.LocalBackend``: a worker thread and the result saver) and on GPU workers over
NATS (``engine.remote.dispatch.RemoteDispatcher``). Both run the same worker runtime
(engine/gpu/batch_runner.py) and report through the same ledger; the Engine talks to this protocol only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.gpu.model import LoadedModel
    from engine.jobs.store import JobStore
    from engine.ops.status import WorkerInfo
    from engine.requests.prompt_length import PromptLength


class Backend(Protocol):
    """What the Engine needs from whatever runs its batches."""

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``failed`` (with GPU workers: ready while one of them is)."""

    @property
    def error(self) -> str | None:
        """Why the model failed to load (user-facing), else None."""

    @property
    def model(self) -> LoadedModel | None:
        """The model loaded in this process (None on a bot host whose GPUs are elsewhere)."""

    @property
    def fast_available(self) -> bool:
        """Whether fast mode can run (the LoRA is loaded here, or on a live worker)."""

    @property
    def prompt_length(self) -> PromptLength | None:
        """The model's token counter for prompt notes (None until its tokenizer is loaded)."""

    def recover(self, store: JobStore) -> None:
        """At start, before serving: what becomes of the jobs the store says were running (blocking)."""

    async def start(self) -> None:
        """Start serving the queue (the model loads, or GPU workers are reached, in the background)."""

    async def stop(self) -> bool:
        """Stop serving; False when something is still busy and the job store must stay open."""

    def cancel_running(self, job_id: int) -> None:
        """A running job was cancelled: stop it at its next step."""

    def fail_queued(self, message: str) -> None:
        """The model is not coming: fail every queued job with ``message`` (blocking)."""

    def workers(self) -> tuple[WorkerInfo, ...]:
        """The GPU workers serving this host (none in-process)."""

    def loaded_models(self) -> tuple[str, ...]:
        """The models loaded in this process (none on a bot host with GPU workers: their heartbeats say theirs)."""
