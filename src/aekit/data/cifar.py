"""CIFAR-10 from its official python tarball, unpickled without running any code.

The tarball's batches are Python 2 pickles of ``{"data": uint8 (N, 3072), "labels": [...]}``
(https://www.cs.toronto.edu/~kriz/cifar.html).  A pickle can call any importable function
while it loads, so a tampered tarball could run code with ``pickle.load``.  The unpickler
here resolves only the three names a numpy array needs and refuses every other one.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError
from .fetch import locate_files

log = logging.getLogger(__name__)

TARBALL = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# Each real batch is about 31 MB; refusing far larger members stops a tarball that claims
# gigabytes from exhausting memory before anything is checked.
MAX_MEMBER_BYTES = 256 * 1024 * 1024


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only names a CIFAR pickle may load: how numpy rebuilds an array and its dtype.

    The batches were written by numpy 1.x (``numpy.core``); numpy 2 moved the module to
    ``numpy._core``.  Both spellings map to the one function this numpy has.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can build dicts, lists, strings, numbers and numpy arrays, nothing else.

    Every global a pickle names goes through :meth:`find_class` (including the extension
    registry), so refusing there means no callable outside the allowed table can ever be
    reached; persistent ids are refused by the base class.
    """

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        # latin1: the batches are Python 2 pickles, whose byte strings (the pixel data
        # included) must come back byte for byte, as numpy's docs advise.
        super().__init__(file, encoding="latin1")
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source}: the pickle asks for {module}.{name}, which a CIFAR batch never needs; "
                "refusing to load it (the file is not the official one: delete it and download it again)"
            ) from None


def safe_unpickle(data: bytes, *, source: str) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; any failure becomes a DataError naming ``source``."""
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as e:  # a malformed pickle can raise nearly anything (EOFError, ValueError, ...)
        reason = " ".join(str(e).split())[:200]  # one line: some of pickle's messages hold newlines
        raise DataError(
            f"{source}: not a readable pickle ({type(e).__name__}: {reason}); delete it and download it again"
        ) from e


def _text_keys(d: Any, source: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DataError(
            f"{source}: expected a pickled dict, found {type(d).__name__}; the tarball is not CIFAR-10"
        )
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def parse_batch(batch: Any, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR batch dict -> images (N, 3, 32, 32) uint8 and labels (N,) int64, validated."""
    batch = _text_keys(batch, source)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"{source}: 'data' must be a uint8 array (N, 3072), found {got}; the tarball is not CIFAR-10"
        )
    try:
        labels = np.asarray(labels)
    except Exception as e:  # anything numpy cannot convert is bad data
        raise DataError(f"{source}: 'labels' is not a list of integers ({e})") from e
    if (
        labels.shape != (len(data),)
        or labels.dtype.kind not in "iu"
        or (labels.size and not 0 <= labels.min() <= labels.max() <= 9)
    ):
        raise DataError(
            f"{source}: 'labels' must be {len(data)} integers in 0..9; the tarball is not CIFAR-10"
        )
    # Each row is the red plane, then green, then blue, each 32x32 row-major: exactly (3, 32, 32).
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def parse_meta(meta: Any, *, source: str) -> list[str]:
    names = _text_keys(meta, source).get("label_names")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{source}: 'label_names' must list 10 class names; the tarball is not CIFAR-10")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def read_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the regular files in the tarball whose base names are in ``wanted``.

    One pass in archive order: a gzipped tar cannot seek backwards cheaply, and nothing is
    written to disk, so member paths (absolute, ``..``) cannot escape anywhere.
    """
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if base not in wanted or base in found or not member.isfile():
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{path}: member {member.name} is {member.size} bytes, too large for CIFAR-10"
                    )
                f = tar.extractfile(member)
                if f is not None:  # always the case for regular files; the check keeps type checkers calm
                    found[base] = f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # zlib.error: a member's bytes are corrupt
        reason = " ".join(str(e).split())  # tarfile lists each method it tried on a line of its own
        raise DataError(f"{path}: truncated or corrupt tarball ({reason}); delete it and download it again") from e
    return found


def read_cifar10_tarball(path: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """{"train": (x, y), "test": (x, y)} and the class names from ``cifar-10-python.tar.gz``.

    x is (N, 3, 32, 32) uint8, y (N,) int64.  ``batches.meta`` is optional (its names are
    the standard ones); the five training batches and the test batch are required.
    """
    path = Path(path)
    members = read_members(path, {*TRAIN_BATCHES, TEST_BATCH, META})
    missing = [m for m in (*TRAIN_BATCHES, TEST_BATCH) if m not in members]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)}; this is not the CIFAR-10 python tarball ({TARBALL})"
        )

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        source = f"{path}:{name}"
        return parse_batch(safe_unpickle(members[name], source=source), source=source)

    train = [batch(name) for name in TRAIN_BATCHES]
    splits = {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": batch(TEST_BATCH),
    }
    if META in members:
        classes = parse_meta(safe_unpickle(members[META], source=f"{path}:{META}"), source=f"{path}:{META}")
    else:
        log.warning("%s has no %s; using the standard CIFAR-10 class names", path, META)
        classes = list(CIFAR10_CLASSES)
    return splits, classes


def load_cifar10(
    *, data_dir: str | Path | None, download: bool, verify: bool
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Locate (or download) the CIFAR-10 tarball and read it; see :func:`read_cifar10_tarball`."""
    paths = locate_files("cifar10", [TARBALL], data_dir=data_dir, download_missing=download, verify=verify)
    return read_cifar10_tarball(paths[TARBALL])
