"""The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/, "file formats").

An IDX file is a 4-byte magic number -- two zero bytes, a type byte (0x08 = unsigned byte)
and the number of dimensions -- then each dimension as a big-endian uint32, then the
values in row-major order.  Images are 0x00000803 (N, rows, cols), labels 0x00000801 (N,).
The files are usually gzipped; both forms are read.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ._files import atomic_write_bytes

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def read_file_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when the file is gzip (by its content, not its name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        # EOFError: the stream stops early (an interrupted download); the others: bad bytes or CRC.
        raise DataError(f"{path}: truncated or corrupt gzip ({e}); delete it and download it again") from e


def parse_idx(data: bytes, *, ndim: int, source: str) -> np.ndarray:
    """Parse IDX bytes holding unsigned bytes in ``ndim`` dimensions; returns a read-only array."""
    expected_magic = 0x0800 | ndim
    kind = {1: "labels", 3: "images"}.get(ndim, f"{ndim}-D data")
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[3] != ndim:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else f"only {len(data)} bytes"
        raise DataError(
            f"{source}: not an IDX {kind} file (magic number {found}, expected 0x{expected_magic:08x}); "
            "check that the file is the right one of the four"
        )
    if data[2] != UBYTE:
        raise DataError(
            f"{source}: IDX type byte is 0x{data[2]:02x}, expected 0x08 (unsigned bytes); "
            "aekit reads only the uint8 IDX files of MNIST-like datasets"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: IDX header cut short ({len(data)} bytes); delete it and download it again"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim > 1 and min(dims[1:]) == 0:
        raise DataError(f"{source}: IDX dimensions {dims} include a zero-sized axis; the file is not usable")
    if dims[0] == 0:  # no items; and numpy could not even shape (0, 2**32-1, 2**32-1)
        raise DataError(f"{source}: IDX file holds no items (dimensions {dims}); delete it and download it again")
    expected = math.prod(dims)  # Python ints: numpy's int64 product wraps to 0 for (4, 2**31, 2**31)
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX payload is {payload} bytes but the header's dimensions {dims} need {expected} "
            f"(file {what}); delete it and download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def read_idx(path: str | Path, *, ndim: int) -> np.ndarray:
    """Read an IDX file (gzipped or raw) of unsigned bytes in ``ndim`` dimensions."""
    return parse_idx(read_file_bytes(path), ndim=ndim, source=str(path))


def read_idx_images(path: str | Path) -> np.ndarray:
    """(N, rows, cols) uint8 from an IDX images file."""
    return read_idx(path, ndim=3)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """(N,) uint8 from an IDX labels file."""
    return read_idx(path, ndim=1)


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) and labels (N,), checked to have the same N."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files come from different datasets or one is damaged: replace both"
        )
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (1 to 255 dimensions)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 255:
        raise DataError(
            f"IDX here holds uint8 arrays of 1 to 255 dimensions, got {array.dtype} {array.shape}"
        )
    header = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzipped when ``path`` ends in .gz; atomic."""
    data = encode_idx(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same array always gives the same bytes
    atomic_write_bytes(path, data)
