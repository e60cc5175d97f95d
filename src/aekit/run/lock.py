"""One trainer per run folder: an exclusive lock held for as long as a run is being trained.

Two ``aekit train --resume RUN`` at once would both append epochs to ``metrics.jsonl`` and
overwrite each other's checkpoints.  The trainer takes ``RUN/.lock`` with ``flock`` (POSIX): the
kernel drops the lock when the process ends, however it ends, so a run killed with SIGKILL never
leaves a stale lock behind.  The file holds the owner's process id, for the refusal message.
Where ``fcntl`` does not exist (Windows) training goes on unlocked.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunLock:
    """``RunLock(run_dir).acquire()`` or a CheckpointError naming the process that trains the run;
    ``release()`` when done (the kernel releases it anyway when the process ends)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"{self.path}: cannot create the run's lock file ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode("ascii", errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(f"{self.path.parent} is being trained by process {owner}; wait for it to end "
                                  "(or stop it) before training this run") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing drops the flock; the file stays, unlocked, for the next trainer
