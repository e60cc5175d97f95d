"""Writing files so that a reader sees the old version or the new one, never half of one.

And so that nothing the user had is lost: :func:`check_outputs` refuses, before any work is
done, an output that is one of the command's inputs (always) or an existing file (unless the
user said ``--overwrite``); the writers below, told ``overwrite=False``, also refuse a file that
appeared in the meantime, without ever replacing it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError


def _readable_mode() -> int:
    """The mode an ordinary new file gets (0o666 less the umask); mkstemp's own is 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file to ``path``: a rename, or, when ``path`` must not be
    replaced, a hard link (which fails if ``path`` exists, so nothing is ever lost) and an unlink."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "appeared while aekit was writing it; pass --overwrite to replace it",
                              str(path)) from None
    except OSError:
        # A file system without hard links (FAT, some network mounts): check, then rename.
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "already exists; pass --overwrite to replace it", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write to a temporary file in the same folder, flush it to disk, rename it over ``path``.

    ``overwrite=False``: never replace an existing ``path`` (FileExistsError instead).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _readable_mode())
        _publish(tmp, path, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_with(path: str | Path, write, *, overwrite: bool = True, suffix: str = ".tmp") -> None:
    """Like :func:`atomic_write_bytes` for writers that want a file name (``write(tmp_path)``).

    ``suffix`` ends the temporary name, for writers that look at it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _readable_mode())
        _publish(tmp, path, overwrite)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# -- outputs that must not clobber anything ----------------------------------------------------------

class FileSet:
    """Input files, recognised however another path names them: the same resolved path, or
    the same file (a hard link, or another spelling on a case-insensitive file system)."""

    def __init__(self, paths: Iterable[str | Path]):
        self._by_path: dict[Path, Path] = {}
        self._by_id: dict[tuple[int, int], Path] = {}
        for p in paths:
            p = Path(p)
            self._by_path.setdefault(p.resolve(), p)
            try:
                st = p.stat()
            except OSError:
                continue
            self._by_id.setdefault((st.st_dev, st.st_ino), p)

    def find(self, path: str | Path) -> Path | None:
        """The input that ``path`` would write over, or None."""
        path = Path(path)
        hit = self._by_path.get(path.resolve())
        if hit is not None:
            return hit
        try:
            st = path.stat()
        except OSError:
            return None
        return self._by_id.get((st.st_dev, st.st_ino))


def check_outputs(outputs: Iterable[tuple[str | Path, str]], *, inputs: FileSet | Iterable[str | Path] = (),
                  overwrite: bool = False) -> None:
    """Refuse, before anything is written, every output that would destroy something.

    ``outputs``: (path, a note on what it is, e.g. ``"the result for in/a.png"``, or "").  An
    output may never be an input (whatever ``overwrite`` says) or a folder, nor an existing file
    unless ``overwrite``.  The first problem raises ConfigError naming the file and the fix, so
    call this with all of a command's outputs before writing any.
    """
    inputs = inputs if isinstance(inputs, FileSet) else FileSet(inputs)
    for path, note in outputs:
        path = Path(path)
        name = f"{path} ({note})" if note else str(path)
        source = inputs.find(path)
        if source is not None:
            raise ConfigError(f"{name}: the output would overwrite the input {source}; write the output elsewhere")
        if path.is_dir():
            raise ConfigError(f"{name}: a folder of that name is in the way; choose another output name")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise ConfigError(f"{name}: already exists; pass --overwrite to replace it, or write the output elsewhere")
