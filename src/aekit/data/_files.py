"""Writing files so that a reader never sees half of one.

Every file aekit writes into a cache or an output folder goes through :func:`atomic_path`:
the bytes land in a temporary file beside the target, which is renamed over it only once
complete.  An interrupted download or save then leaves the old file (or none), never a
truncated one that a later run would trust.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is a rename on one file system (atomic on POSIX and Windows);
    # the suffix is kept because Pillow and gzip look at it.
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=f".part{dest.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _ordinary_mode())  # mkstemp's 0600 would make downloads private to this user
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def _ordinary_mode() -> int:
    """0o666 less the umask: the mode an ordinary new file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
