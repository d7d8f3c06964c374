"""The lock that keeps DATA_DIR to one running service."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from engine.jobs.store import StoreError
from engine.media.privacy import PRIVATE_FILE, private_dirs, secure_tree


class DataDirLock:
    """An exclusive lock on DATA_DIR: two services on one job store would run jobs twice.

    It is an OS file lock (``filelock``) on ``DATA_DIR/service.lock``, taken without waiting: a
    second instance is refused at once. The kernel drops the lock when its process dies, so a
    SIGKILL leaves nothing stale behind. Any thread may release it (the engine takes it in a worker
    thread and drops it on the event loop).

    Once it holds the lock (nothing else uses DATA_DIR then), it makes DATA_DIR private again if
    it was loosened: folders 0700, files 0600 (``engine.media.privacy.secure_tree``, logged).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "service.lock"
        self._lock = FileLock(self.path, mode=PRIVATE_FILE, thread_local=False)
        try:
            private_dirs(self.path.parent)
            self._lock.acquire(timeout=0)
        except Timeout:
            raise StoreError(f"DATA_DIR {data_dir} is in use by another running instance of the service; stop "
                             f"it first, or give this one its own DATA_DIR") from None
        except OSError as exc:
            raise StoreError(f"cannot use DATA_DIR {data_dir}: {exc}. Check the path and its permissions.") from exc
        try:
            secure_tree(Path(data_dir))
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"cannot make DATA_DIR {data_dir} private to this user: {exc}. Check who owns it "
                             f"(chown -R the service's user).") from exc

    def release(self) -> None:
        """Drop the lock (again is harmless)."""
        self._lock.release()
