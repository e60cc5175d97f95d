"""Fuzz targets: every reader of outside files, fed mutated real files and well-formed wrong ones.

Each :class:`Target` turns a seed into one case (``generate(rng)``) and runs it (``run(case)``).
A run ends in one of two acceptable ways:

* a correct result, checked against an oracle (a slow reference parser, a round trip, the
  promised shape, dtype and range), or
* a refusal: an :class:`aekit.errors.AekitError` subclass, whose message is one line.

Anything else -- another exception type, a wrong result, a multi-line message -- is a bug and
raises (``tests/test_fuzz.py`` lets hypothesis choose the seeds; ``fuzz/run_fuzz.py`` runs many
more and counts outcomes).  Cases come from ``random.Random(seed)`` only, so a seed printed by
a failure reproduces it: ``python fuzz/run_fuzz.py --replay TARGET:SEED``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import pickle
import random
import re
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

# -- mutations ----------------------------------------------------------------------------------

INTERESTING_32 = [0, 1, 2, 3, 4, 7, 8, 28, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                  0xFFFFFFFE, 0xFFFFFFFF, 1 << 31, 1 << 30, 1 << 16, 65535 * 65535 & 0xFFFFFFFF]


def _position(rng: random.Random, n: int) -> int:
    """An index into n bytes, half the time among the first 64 (headers decide the most)."""
    if n == 0:
        return 0
    return rng.randrange(min(n, 64)) if rng.random() < 0.5 else rng.randrange(n)


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def mutate(rng: random.Random, data: bytes, *, tokens: list[bytes] = (), max_ops: int = 4) -> bytes:
    """Bit flips, byte and 32-bit overwrites, truncation, insertion, deletion, duplication."""
    b = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        op = rng.choice(["flip", "flip", "byte", "int32", "truncate", "insert", "delete", "duplicate",
                         "token" if tokens else "flip"])
        i = _position(rng, len(b))
        if op == "flip" and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == "byte" and b:
            b[min(i, len(b) - 1)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(8)])
        elif op == "int32" and len(b) >= 4:
            i = min(i, len(b) - 4)
            b[i:i + 4] = rng.choice(INTERESTING_32).to_bytes(4, rng.choice(["big", "little"]))
        elif op == "truncate" and b:
            del b[rng.randrange(len(b)):]
        elif op == "insert":
            b[i:i] = random_bytes(rng, rng.choice([1, 2, 4, 16, 100]))
        elif op == "delete" and b:
            del b[i:i + rng.randint(1, 16)]
        elif op == "duplicate" and b:
            b[i:i] = b[i:i + rng.randint(1, 64)]
        elif op == "token":
            b[i:i] = rng.choice(tokens)
    return bytes(b)


# -- outcomes -----------------------------------------------------------------------------------

class WrongResult(AssertionError):
    """The code returned, but not what the input holds."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongResult(message)


def refused(err: BaseException) -> str:
    """The outcome name of an accepted refusal; re-raises anything that is not one."""
    from aekit.errors import AekitError

    if not isinstance(err, AekitError):
        raise err
    message = str(err)
    if "\n" in message or not message.strip():
        raise WrongResult(f"{type(err).__name__} message is not one line: {message!r}")
    return f"refused: {type(err).__name__}"


@dataclass
class Target:
    name: str
    generate: Callable[[random.Random], Any]
    run: Callable[[Any], str]
    describe: str = ""

    def case(self, seed: int) -> Any:
        return self.generate(random.Random(f"{self.name}:{seed}"))

    def run_seed(self, seed: int) -> str:
        return self.run(self.case(seed))


@dataclass
class Workdir:
    """A scratch folder per process; cases write their files here and overwrite each other."""

    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aekit-fuzz-")))

    def file(self, name: str, data: bytes) -> Path:
        path = self.path / name
        path.write_bytes(data)
        return path

    def fresh(self, name: str) -> Path:
        path = self.path / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


WORK = Workdir()


# -- IDX (and gzip) -----------------------------------------------------------------------------

def _idx_seeds() -> list[tuple[bytes, int]]:
    from aekit.data.idx import encode_idx

    rng = np.random.default_rng(0)
    return [(encode_idx(rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)), 3),
            (encode_idx(rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)), 3),
            (encode_idx(rng.integers(0, 10, (7,), dtype=np.uint8)), 1),
            (encode_idx(np.zeros((0, 3, 3), dtype=np.uint8)), 3)]


def idx_generate(rng: random.Random) -> dict:
    seeds = _idx_seeds()
    data, ndim = rng.choice(seeds)
    ndim = ndim if rng.random() < 0.9 else rng.choice([1, 3])
    kind = rng.choice(["mutate", "mutate", "structured", "gzip"])
    if kind == "mutate":
        data = mutate(rng, data)
    elif kind == "structured":  # a well-formed header with dimensions chosen to break arithmetic
        n = rng.choice([ndim, ndim, rng.randint(0, 4)])
        dims = [rng.choice([*INTERESTING_32, rng.randint(0, 9), 1 << rng.randrange(32)]) for _ in range(n)]
        header = bytes([0, 0, rng.choice([8, 8, 8, 9, 0x0D]), n]) + b"".join(d.to_bytes(4, "big") for d in dims)
        expected = math.prod(dims) if dims else 0
        length = expected if expected < 4096 and rng.random() < 0.5 else rng.choice([0, 1, 4, 100, expected % 5000])
        data = header + random_bytes(rng, min(length, 4096))
    else:
        data = gzip.compress(data if rng.random() < 0.5 else mutate(rng, data), mtime=0)
        if rng.random() < 0.7:
            data = mutate(rng, data)
    return {"data": data, "ndim": ndim, "via_file": kind == "gzip" or rng.random() < 0.2}


def idx_run(case: dict) -> str:
    from aekit.data.idx import encode_idx, parse_idx, read_idx

    data, ndim = case["data"], case["ndim"]
    try:
        if case["via_file"]:
            array = read_idx(WORK.file("fuzz.idx.gz", data), ndim=ndim)
            try:
                raw = gzip.decompress(data) if data.startswith(b"\x1f\x8b") else data
            except (OSError, EOFError, zlib.error) as err:
                raise WrongResult(f"aekit read a gzip stream that gzip rejects ({err})") from None
        else:
            array = parse_idx(data, ndim=ndim, source="fuzz")
            raw = data
    except Exception as err:  # noqa: BLE001 - sorted into refusals and bugs by refused()
        return refused(err)
    expect(isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == ndim,
           f"got {type(array).__name__} {getattr(array, 'dtype', '')} {getattr(array, 'shape', '')}")
    expect(encode_idx(array) == raw, "the parsed array does not encode back to the input bytes")
    return "ok"


# -- the pixel CSV of mnist-5k ------------------------------------------------------------------

def _csv_seeds() -> list[tuple[bytes, int]]:
    from aekit.data.mnist import mnist5k_path

    with gzip.open(mnist5k_path(), "rb") as fh:
        real = b"".join(fh.readline() for _ in range(2))
    return [(real, 784), (b"0,255,17,3,9\n1,2,3,4,0\n", 4), (b"0,0,0,0,0", 4), (b"12,200,0,99,5\r\n", 4)]


CSV_TOKENS = [b",", b"\n", b"\r\n", b"\r", b"256", b"-1", b" ", b"1.5", b"0000", b"10", b"9", b"", b"\xff", b"1e2"]


def csv_generate(rng: random.Random) -> dict:
    seeds = _csv_seeds()
    if rng.random() < 0.6:
        text, n = rng.choice(seeds)
        text = mutate(rng, text, tokens=CSV_TOKENS)
    else:  # rows of almost the right shape
        n = rng.choice([1, 2, 4])
        rows = []
        for _ in range(rng.randint(0, 4)):
            fields = [rng.choice(["0", "7", "255", "256", "007", "999", "", "-0", "10", "9"])
                      for _ in range(n + 1 + rng.choice([0, 0, 0, -1, 1]))]
            rows.append(",".join(fields))
        text = (rng.choice(["\n", "\r\n"]).join(rows) + rng.choice(["", "\n", "\n\n"])).encode()
    return {"text": text, "n_pixels": n, "gzip_file": rng.random() < 0.15}


def reference_csv(text: bytes, n_pixels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The slow, obvious parser: None where the file must be refused."""
    text = text.replace(b"\r\n", b"\n").rstrip(b"\n")
    if not text:
        return None
    pixels, labels = [], []
    for line in text.split(b"\n"):
        fields = line.split(b",")
        if len(fields) != n_pixels + 1 or not all(re.fullmatch(rb"[0-9]{1,3}", f) for f in fields):
            return None
        values = [int(f) for f in fields]
        if max(values[:-1], default=0) > 255 or values[-1] > 9:
            return None
        pixels.append(values[:-1])
        labels.append(values[-1])
    return np.array(pixels, dtype=np.uint8).reshape(-1, n_pixels), np.array(labels, dtype=np.int64)


def csv_run(case: dict) -> str:
    from aekit.data.mnist import parse_pixel_csv, read_pixel_csv

    text, n = case["text"], case["n_pixels"]
    expected = reference_csv(text, n)
    try:
        if case["gzip_file"]:
            got = read_pixel_csv(WORK.file("fuzz.csv.gz", gzip.compress(text, mtime=0)), n_pixels=n)
        else:
            got = parse_pixel_csv(text, source="fuzz.csv", n_pixels=n)
    except Exception as err:  # noqa: BLE001
        outcome = refused(err)
        expect(expected is None, f"refused a valid file: {err}")
        return outcome
    expect(expected is not None, "accepted a file the reference parser refuses")
    expect(got[0].dtype == np.uint8 and got[1].dtype == np.int64, "wrong dtypes")
    expect(np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]), "values differ")
    return "ok"


# -- image files --------------------------------------------------------------------------------

FUZZ_MAX_PIXELS = 1 << 16  # keeps a case small; the default limit has its own test


def _image_seeds() -> list[tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    grey = Image.fromarray(rng.integers(0, 256, (7, 5), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), "RGBA")
    wide = Image.fromarray(rng.integers(0, 65536, (5, 6), dtype=np.uint16))
    seeds = []
    for image, fmt, suffix, kwargs in [
        (grey, "PNG", ".png", {}), (rgb, "PNG", ".png", {}), (rgba, "PNG", ".png", {}), (wide, "PNG", ".png", {}),
        (rgb.convert("P"), "PNG", ".png", {}), (grey, "JPEG", ".jpg", {}), (rgb, "JPEG", ".jpg", {"progressive": True}),
        (rgb, "BMP", ".bmp", {}), (rgb.convert("P"), "GIF", ".gif", {}), (rgb, "TIFF", ".tif", {}),
        (grey, "TIFF", ".tiff", {"compression": "tiff_deflate"}), (rgb, "WEBP", ".webp", {}),
        (rgb, "PPM", ".ppm", {}), (grey, "PPM", ".pgm", {}),
    ]:
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt, **kwargs)
        except (OSError, KeyError, ValueError):  # a Pillow built without that codec
            continue
        seeds.append((buffer.getvalue(), suffix))
    return seeds


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def crafted_png(rng: random.Random) -> bytes:
    """A PNG whose chunks are all well formed (right CRCs) but whose header says something odd."""
    width = rng.choice([0, 1, 3, 255, 256, 65535, 100_000, 0x7FFFFFFF, rng.randint(1, 64)])
    height = rng.choice([0, 1, 3, 255, 65535, 100_000, 0x7FFFFFFF, rng.randint(1, 64)])
    depth = rng.choice([1, 2, 4, 8, 16, 3, 0])
    colour = rng.choice([0, 2, 3, 4, 6, 1, 7])
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, rng.choice([0, 0, 1]))
    raw = random_bytes(rng, rng.choice([0, 1, 10, 200])) if rng.random() < 0.5 else b"\0" * rng.choice([1, 50, 5000])
    chunks = [png_chunk(b"IHDR", ihdr)]
    if colour == 3 and rng.random() < 0.8:
        chunks.append(png_chunk(b"PLTE", random_bytes(rng, 3 * rng.choice([1, 2, 16]))))
    chunks.append(png_chunk(b"IDAT", zlib.compress(raw)))
    chunks.append(png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


_ODD_IMAGES: list[tuple[bytes, str, dict]] = []


def _png16_rgb(height: int, width: int, seed: int) -> bytes:
    """A valid 48-bit RGB PNG (colour type 2, depth 16), which Pillow can read but not write."""
    rows = np.random.default_rng(seed).integers(0, 65536, (height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def odd_images() -> list[tuple[bytes, str, dict]]:
    """Valid images of the kinds load_image promises to read (its module docstring), with what it
    must give: "must" ("ok" or "refuse"), the upright "hw" (height, width), and for some the exact
    grey values ("grey", before any resizing)."""
    if _ODD_IMAGES:
        return _ODD_IMAGES
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), "RGB")
    a16 = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    unit = rng.random((4, 6), dtype=np.float32)
    wide_float = (rng.random((4, 6)) * 400 - 50).astype(np.float32)
    ints = rng.integers(0, 70_000, (3, 5)).astype(np.int32)
    small_ints = rng.integers(0, 65_536, (3, 5)).astype(np.int32)
    nan_float = unit.copy()
    nan_float[1, 2] = np.nan
    line = rng.integers(0, 256, (1, 57), dtype=np.uint8)

    def minmax(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        return (a - a.min()) / (a.max() - a.min())

    frames = [Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    orientation = {}
    for value in (3, 6, 8, 0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = value
        orientation[value] = exif.tobytes()
    made = [
        (Image.fromarray(a16), "PNG", ".png", {"hw": (5, 7), "grey": a16 / 65535}, {}),
        (Image.fromarray(a16), "TIFF", ".tif", {"hw": (5, 7), "grey": a16 / 65535}, {}),
        (Image.fromarray(a16.astype(">u2")), "TIFF", ".tiff", {"hw": (5, 7), "grey": a16 / 65535}, {}),
        (Image.fromarray(a16), "PPM", ".pgm", {"hw": (5, 7), "grey": a16 / 65535}, {}),
        (Image.fromarray(unit), "TIFF", ".tif", {"hw": (4, 6), "grey": unit}, {}),
        (Image.fromarray(wide_float), "TIFF", ".tif", {"hw": (4, 6), "grey": minmax(wide_float)}, {}),
        (Image.fromarray(nan_float), "TIFF", ".tif", {"must": "refuse"}, {}),
        (Image.fromarray(ints), "TIFF", ".tif", {"hw": (3, 5), "grey": minmax(ints)}, {}),
        (Image.fromarray(small_ints), "TIFF", ".tif", {"hw": (3, 5), "grey": small_ints / 65535}, {}),
        (rgb.convert("P"), "PNG", ".png", {"hw": (6, 9)}, {"transparency": 0}),
        (rgb.convert("P"), "GIF", ".gif", {"hw": (6, 9)}, {"transparency": 3}),
        (rgb.convert("RGBA").convert("P"), "PNG", ".png", {"hw": (6, 9)}, {}),
        (rgb.convert("LA"), "PNG", ".png", {"hw": (6, 9)}, {}),
        (rgb.convert("1"), "PNG", ".png", {"hw": (6, 9)}, {}),
        (rgb.convert("1"), "PPM", ".pbm", {"hw": (6, 9)}, {}),
        (rgb.convert("CMYK"), "JPEG", ".jpg", {"hw": (6, 9)}, {}),
        (rgb.convert("CMYK"), "TIFF", ".tif", {"hw": (6, 9)}, {}),
        (frames[0], "GIF", ".gif", {"hw": (6, 9)}, {"save_all": True, "append_images": frames[1:], "loop": 0}),
        (rgb, "WEBP", ".webp", {"hw": (6, 9)}, {"save_all": True, "append_images": [rgb.rotate(90)], "lossless": True}),
        (rgb, "TIFF", ".tif", {"hw": (6, 9)}, {"save_all": True, "append_images": [rgb.resize((3, 3))]}),
        (rgb.convert("RGBA"), "WEBP", ".webp", {"hw": (6, 9)}, {"lossless": True}),
        (rgb, "JPEG", ".jpg", {"hw": (9, 6)}, {"exif": orientation[6]}),
        (rgb, "JPEG", ".jpg", {"hw": (9, 6)}, {"exif": orientation[8]}),
        (rgb, "JPEG", ".jpg", {"hw": (6, 9)}, {"exif": orientation[3]}),
        (rgb, "PNG", ".png", {"hw": (9, 6)}, {"exif": orientation[6]}),
        (rgb, "WEBP", ".webp", {"hw": (9, 6)}, {"exif": orientation[8]}),
        *[(rgb, "JPEG", ".jpg", {"hw": (6, 9)}, {"exif": orientation[v]}) for v in (0, 9, 65535)],  # out of range
        (Image.fromarray(line), "PNG", ".png", {"hw": (1, 57), "grey": line / 255}, {}),
        (Image.fromarray(line.T.copy()), "PNG", ".png", {"hw": (57, 1), "grey": line.T / 255}, {}),
        (Image.fromarray(line.T.copy()), "BMP", ".bmp", {"hw": (57, 1), "grey": line.T / 255}, {}),
        (Image.fromarray(a16[:1]), "PNG", ".png", {"hw": (1, 7), "grey": a16[:1] / 65535}, {}),
        (rgb.resize((1, 1)), "PNG", ".png", {"hw": (1, 1)}, {}),
        (rgb.resize((300, 1)), "JPEG", ".jpg", {"hw": (1, 300)}, {}),
        (rgb.resize((1, 300)), "GIF", ".gif", {"hw": (300, 1)}, {}),
        (rgb.resize((256, 256)), "PNG", ".png", {"hw": (256, 256)}, {}),  # exactly FUZZ_MAX_PIXELS
        (rgb.resize((16, 16)), "ICO", ".ico", {"hw": (16, 16)}, {"sizes": [(16, 16)]}),
        (rgb.resize((300, 300)), "PNG", ".png", {"must": "refuse"}, {}),  # a real image over the limit
    ]
    for image, fmt, suffix, expect_, kwargs in made:
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt, **kwargs)
        except (OSError, KeyError, ValueError):  # a Pillow built without that codec
            continue
        _ODD_IMAGES.append((buffer.getvalue(), suffix, {"must": "ok", **expect_}))
    _ODD_IMAGES.append((_png16_rgb(3, 4, 0), ".png", {"must": "ok", "hw": (3, 4)}))
    for side in (300, 100_000, 0x7FFFFFFF):  # declared huge, a few bytes of pixels: refused from the header
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + png_chunk(b"IEND", b""))
        _ODD_IMAGES.append((data, ".png", {"must": "refuse"}))
    return _ODD_IMAGES


def image_generate(rng: random.Random) -> dict:
    seeds = _image_seeds()
    odd = odd_images()
    kind = rng.random()
    expected = None
    if kind < 0.2:  # an odd but valid image, as it is: it must load, and come out as the file says
        data, suffix, expected = rng.choice(odd)
    elif kind < 0.75:
        data, suffix = rng.choice(seeds) if rng.random() < 0.6 else rng.choice(odd)[:2]
        data = mutate(rng, data)
    elif kind < 0.9:
        data, suffix = crafted_png(rng), ".png"
    else:
        data, suffix = rng.choice(seeds) if rng.random() < 0.6 else rng.choice(odd)[:2]
        data = data[: rng.randrange(len(data) + 1)]
    if expected is None and rng.random() < 0.1:
        suffix = rng.choice([".png", ".jpg", ".gif", ".bmp", ".tif"])  # the name lies about the content
    return {"data": data, "suffix": suffix, "channels": rng.choice([1, 3]),
            "size": rng.choice([None, None, (6, 5), (1, 1), (33, 17)]), "expected": expected}


def image_run(case: dict) -> str:
    from aekit.data.images import load_image

    expected = case.get("expected")
    path = WORK.file("fuzz" + case["suffix"], case["data"])
    try:
        x = load_image(path, channels=case["channels"], size=case["size"], max_pixels=FUZZ_MAX_PIXELS)
    except Exception as err:  # noqa: BLE001
        outcome = refused(err)
        expect(expected is None or expected["must"] == "refuse", f"refused a valid image: {err}")
        return outcome
    expect(expected is None or expected["must"] == "ok", "loaded an image that must be refused")
    expect(isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 3, f"got {x!r:.80}")
    expect(x.shape[0] == case["channels"], f"channels {x.shape[0]}, asked for {case['channels']}")
    if case["size"] is not None:
        expect(tuple(x.shape[1:]) == case["size"], f"size {tuple(x.shape[1:])}, asked for {case['size']}")
    else:
        expect(x.shape[1] * x.shape[2] <= FUZZ_MAX_PIXELS, "decoded above the pixel limit")
    expect(bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1, "values outside [0, 1]")
    if expected is not None and case["size"] is None:
        expect(tuple(x.shape[1:]) == expected["hw"], f"size {tuple(x.shape[1:])}, the file holds {expected['hw']}")
        if "grey" in expected:
            grey = torch.from_numpy(np.asarray(expected["grey"], dtype=np.float32))
            expect(all(torch.allclose(channel, grey, atol=1e-5) for channel in x), "pixel values differ from the file's")
    return "ok"


# -- run folders: config.json, model.safetensors --------------------------------------------------

TINY_LAYERS = {
    "aae": {"channels": (8, 16), "disc_hidden": (16,)},
    "cvae": {"channels": (8, 16)},
    "dn": {"channels": (8, 8)},
    "sr": {"channels": (8, 8), "tail": 4},
    "sr-lesson": {"up_channels": 8},
    "conv-ae": {"channels": (4, 4, 4)},
}
_BASE_RUNS: dict[str, Path] = {}


def base_run(name: str) -> Path:
    """A valid run folder of a tiny ``name`` model (built, not trained: the files are what matter)."""
    if name in _BASE_RUNS:
        return _BASE_RUNS[name]
    from aekit import __version__
    from aekit.config import RunConfig
    from aekit.registry import build_model, lookup
    from aekit.train.checkpoint import save_weights

    config_cls, _ = lookup(name)
    names = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {"in_shape": (1, 12, 12)}
    if "num_classes" in names:
        values["num_classes"] = 3
    if "hidden" in names:
        values["hidden"] = (16,) if isinstance(config_cls().hidden, tuple) else 16
    if "latent_dim" in names and name != "conv-ae":
        values["latent_dim"] = 3
    values.update(TINY_LAYERS.get(name, {}))
    if lookup(name)[1].data_kind != "image":  # melodies: the family's own small config, not 12x12 images
        values = {f.name: getattr(config_cls.tiny(), f.name) for f in dataclasses.fields(config_cls)}
    torch.manual_seed(0)
    model = build_model(name, config_cls(**values))
    run = WORK.path / "base" / name
    run.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig(model=name, model_config=dataclasses.asdict(model.config) if hasattr(model, "config")
                    else dataclasses.asdict(config_cls(**values)),
                    in_shape=tuple(model.in_shape), out_shape=tuple(model.out_shape),
                    classes=["a", "b", "c"] if "num_classes" in names else [], aekit_version=__version__)
    (run / "config.json").write_text(cfg.to_json())
    save_weights(model, run / "model.safetensors")
    _BASE_RUNS[name] = run
    return run


def model_names() -> list[str]:
    from aekit.registry import model_names as names

    return names()


JSON_ODDITIES: list[Any] = [None, True, False, 0, -1, 1, 2, 3, 1.5, -0.0, 1e308, float("nan"), float("inf"), 10**30,
                            2**63, "", "os.system", "__import__('os')", [], {}, [1, 2, 3], [0], [-1, 28, 28],
                            [1, 0, 28], [1, 28, 28], [3, 12, 12], [1, 12, 12], {"__class__": "os.system"},
                            [10**9], [100000, 100000], "dense-ae", "conv-vae", 4, 12, 16, 1000]


def _mutate_json(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """One random edit somewhere inside a JSON value: replace, delete, add or retype a member."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        out = dict(value)
        op = rng.random()
        if op < 0.2:
            del out[key]
        elif op < 0.3:
            out[rng.choice(["__class__", "_target_", "extra", "model", "in_shape", key + "_"])] = \
                rng.choice(JSON_ODDITIES)
        elif op < 0.6 and depth < 3:
            out[key] = _mutate_json(rng, value[key], depth + 1)
        else:
            out[key] = rng.choice(JSON_ODDITIES)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        out = list(value)
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.3:
            del out[i]
        elif op < 0.5:
            out.insert(i, rng.choice(JSON_ODDITIES))
        else:
            out[i] = rng.choice(JSON_ODDITIES)
        return out
    return rng.choice(JSON_ODDITIES)


def config_generate(rng: random.Random) -> dict:
    name = rng.choice(model_names())
    raw = json.loads((base_run(name) / "config.json").read_text())
    if rng.random() < 0.15:  # another model's config under this name
        other = json.loads((base_run(rng.choice(model_names())) / "config.json").read_text())
        raw["model_config"] = other["model_config"]
    for _ in range(rng.randint(1, 3)):
        raw = _mutate_json(rng, raw)
    text = json.dumps(raw)  # NaN and Infinity are written as JSON's common extension, which json.loads reads
    if rng.random() < 0.15:
        text = mutate(rng, text.encode(), tokens=[b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000"]).decode(
            "latin-1")
    return {"base": name, "text": text}


def _loaded(run: Path):
    import aekit

    return aekit.load(run, device="cpu")


def _check_model_matches_file(model, weights: Path) -> None:
    on_disk = load_file(str(weights))
    state = model.state_dict()
    expect(set(state) == set(on_disk), "loaded model's tensors differ from the file's names")
    for key, tensor in on_disk.items():
        expect(torch.equal(state[key].cpu(), tensor), f"tensor {key} differs from the file")
    expect(not model.training, "load() must return the model in eval mode")


def config_run(case: dict) -> str:
    run = WORK.fresh("config-run")
    shutil.copy(base_run(case["base"]) / "model.safetensors", run)
    (run / "config.json").write_text(case["text"], encoding="latin-1")
    try:
        model = _loaded(run)
    except Exception as err:  # noqa: BLE001
        return refused(err)
    _check_model_matches_file(model, run / "model.safetensors")
    # A model that loads must also run on inputs of the shape its config promises.
    shape = tuple(model.in_shape)
    if math.prod(shape) <= 200_000:
        y = torch.zeros(2, dtype=torch.long) if model.conditional else None
        with torch.inference_mode():
            out = model.reconstruct(model.example_input(2), y)  # pixels or melodies, as the model reads
        expect(tuple(out.shape) == (2, *model.out_shape), f"output {tuple(out.shape)}, promised {model.out_shape}")
    return "ok"


def _safetensors_header(rng: random.Random, state: dict[str, torch.Tensor]) -> bytes:
    """A hand-made safetensors file: 8-byte length, JSON header, data; entries bent at random."""
    header: dict[str, Any] = {}
    offset = 0
    for key, tensor in state.items():
        n = tensor.numel() * tensor.element_size()
        entry = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + n]}
        if rng.random() < 0.2:
            entry[rng.choice(["dtype", "shape", "data_offsets"])] = rng.choice(
                ["F64", "I64", "BOOL", "XX", "", [2**40], [-1], [0, 2**62], [10, 5], None, 7])
        header[key] = entry
        offset += n
    if rng.random() < 0.3:
        header["__metadata__"] = rng.choice([{"format": "pt"}, {"a": 1}, "x", None])
    blob = json.dumps(header).encode()
    length = len(blob) if rng.random() < 0.8 else rng.choice([0, 1, 2**63, len(blob) + 7, 100_000_001])
    data = b"".join(t.contiguous().numpy().tobytes() for t in state.values())
    return struct.pack("<Q", length % 2**64) + blob + data[: rng.choice([len(data), len(data) // 2, len(data)])]


def weights_generate(rng: random.Random) -> dict:
    name = rng.choice(model_names())
    path = base_run(name) / "model.safetensors"
    kind = rng.random()
    if kind < 0.5:
        return {"base": name, "bytes": mutate(rng, path.read_bytes())}
    state = load_file(str(path))
    if kind < 0.6:
        return {"base": name, "bytes": _safetensors_header(rng, state)}
    keys = sorted(state)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        op = rng.choice(["drop", "extra", "shape", "dtype", "nan", "rename", "scalar", "other-model"])
        if op == "drop":
            state.pop(key, None)
        elif op == "extra":
            state["__extra__." + key] = torch.zeros(2)
        elif op == "shape" and key in state:
            state[key] = state[key].reshape(-1).clone() if state[key].ndim != 1 else state[key].reshape(1, -1).clone()
        elif op == "dtype" and key in state:
            state[key] = state[key].to(rng.choice([torch.float64, torch.float16, torch.int32, torch.bool]))
        elif op == "nan" and key in state and state[key].is_floating_point() and state[key].numel():
            state[key] = state[key].clone()
            state[key].view(-1)[0] = rng.choice([float("nan"), float("inf")])
        elif op == "rename" and key in state:
            state[key + ".x"] = state.pop(key)
        elif op == "scalar":
            state[key] = torch.tensor(1.0)
        elif op == "other-model":
            state = load_file(str(base_run(rng.choice(model_names())) / "model.safetensors"))
            keys = sorted(state)
    buffer = WORK.path / "weights-build.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(buffer),
              metadata={"format": "pt"} if rng.random() < 0.8 else None)
    return {"base": name, "bytes": buffer.read_bytes()}


def weights_run(case: dict) -> str:
    run = WORK.fresh("weights-run")
    shutil.copy(base_run(case["base"]) / "config.json", run)
    (run / "model.safetensors").write_bytes(case["bytes"])
    try:
        model = _loaded(run)
    except Exception as err:  # noqa: BLE001
        return refused(err)
    _check_model_matches_file(model, run / "model.safetensors")
    expect(all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()),
           "loaded NaN or infinite weights")
    return "ok"


# -- resume points: state.json, optimizers.pt -------------------------------------------------------

_CHECKPOINT: dict[str, bytes] = {}


def _checkpoint_seed() -> dict[str, bytes]:
    if not _CHECKPOINT:
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        net(torch.rand(4, 3)).sum().backward()
        opt.step()
        buffer = io.BytesIO()
        torch.save({"optimizers": {"main": opt.state_dict()},
                    "extra": {"noise_generators": torch.Generator().get_state().unsqueeze(0)}}, buffer)
        _CHECKPOINT["optimizers.pt"] = buffer.getvalue()
        _CHECKPOINT["state.json"] = json.dumps({"epoch": 1, "step": 16, "batch_in_epoch": 0, "seed": 0,
                                                "world": 1}).encode()
    return _CHECKPOINT


def checkpoint_generate(rng: random.Random) -> dict:
    files = dict(_checkpoint_seed())
    which = rng.choice(["optimizers.pt", "optimizers.pt", "state.json", "both"])
    if which in ("optimizers.pt", "both"):
        files["optimizers.pt"] = mutate(rng, files["optimizers.pt"])
    if which in ("state.json", "both"):
        if rng.random() < 0.5:
            files["state.json"] = json.dumps(_mutate_json(rng, json.loads(files["state.json"]))).encode()
        else:
            files["state.json"] = mutate(rng, files["state.json"])
    if rng.random() < 0.05:
        files.pop(rng.choice(sorted(files)))
    return files


def checkpoint_run(files: dict) -> str:
    from aekit.train.checkpoint import read_checkpoint

    folder = WORK.fresh("ckpt-00001-000000016")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    try:
        state, optim = read_checkpoint(folder)
    except Exception as err:  # noqa: BLE001
        return refused(err)
    expect(isinstance(state, dict) and isinstance(optim, dict), "not dicts")
    for key in ("epoch", "step", "batch_in_epoch"):
        expect(isinstance(state.get(key), int) and state[key] >= 0, f"state.json {key} = {state.get(key)!r}")
    expect(isinstance(optim.get("optimizers"), dict) and isinstance(optim.get("extra"), dict), "optim structure")
    return "ok"


# -- CIFAR-10 batches (pickles) and tarballs --------------------------------------------------------

def _cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in rng.integers(0, 10, n)], b"batch_label": b"fuzz"}, protocol=4)


def _cifar_tarball(batches: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cifar_generate(rng: random.Random) -> dict:
    from aekit.data.cifar import META, TEST_BATCH, TRAIN_BATCHES

    if rng.random() < 0.7:
        return {"kind": "batch", "bytes": mutate(rng, _cifar_batch(2, 0), tokens=[b"c", b"R", b"\x80\x02", b".", b"\x93"])}
    batches = {name: _cifar_batch(1, i) for i, name in enumerate([*TRAIN_BATCHES, TEST_BATCH])}
    batches[META] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=4)
    if rng.random() < 0.5:
        name = rng.choice(sorted(batches))
        batches[name] = mutate(rng, batches[name])
        data = _cifar_tarball(batches)
    else:
        data = mutate(rng, _cifar_tarball(batches))
    return {"kind": "tarball", "bytes": data}


def cifar_run(case: dict) -> str:
    from aekit.data.cifar import parse_batch, read_cifar10_tarball, safe_unpickle

    try:
        if case["kind"] == "batch":
            x, y = parse_batch(safe_unpickle(case["bytes"], source="fuzz"), source="fuzz")
            expect(x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and y.shape == (len(x),), "batch shape")
        else:
            splits, classes = read_cifar10_tarball(WORK.file("cifar-10-python.tar.gz", case["bytes"]))
            expect(len(classes) == 10 and splits["train"][0].shape[1:] == (3, 32, 32), "tarball contents")
    except WrongResult:
        raise
    except Exception as err:  # noqa: BLE001
        return refused(err)
    return "ok"


# -- metrics.jsonl --------------------------------------------------------------------------------

def metrics_records() -> list[dict]:
    """Epoch records as aekit.train.loop writes them; the last one from an epoch that diverged."""
    records = []
    for epoch in range(1, 5):
        loss = 0.5 / epoch
        records.append({"epoch": epoch, "step": 16 * epoch, "lr": 1e-3 * 0.5 ** epoch,
                        "train": {"total": loss, "recon": loss * 0.9, "kl": loss * 0.1},
                        "val": {"total": loss * 1.1, "recon": loss, "kl": loss * 0.1},
                        "seconds": 1.25, "images_per_second": 812.5})
    records.append({"epoch": 5, "step": 80, "lr": 1e-4, "train": {"total": math.nan, "recon": math.inf, "kl": 0.1},
                    "val": {}, "seconds": 0.5, "images_per_second": 10.0})
    return records


def _finite(value: Any) -> Any:
    """What read_metrics must make of a record aekit wrote: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def deep_json(rng: random.Random) -> str:
    """Nested lists or objects, from a couple of levels to far past the parser's recursion limit."""
    depth = rng.choice([2, 4, 10, 200, 900, 990, 3000, 100_000])
    if rng.random() < 0.5:
        return "[" * depth + "1" + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


# Raw JSON text for one value: what json.dumps never writes, or writes only for odd values.
JSON_LITERALS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "-0.0", "5e-324", "1e-400",
                 str(10**30), str(2**63), str(-(2**63) - 1), str(2**64), "9" * 4301, "-" + "9" * 6000,
                 "1" + "0" * 20_000, "1" + "0" * 400, "-" + "1" * 309, "1." + "5" * 5000, "true", "false", "null", '""', '"x"', '"' + "e" * 5000 + '"',
                 '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"a\\nb"', "[]", "{}", "[1, 2, 3]",
                 '{"recon": 1.5, "kl": [1, 2]}', '{"a": {"b": {"c": {"d": 1}}}}', '{"\\ud800": 1}', "1.0", "01", "+1"]
SENTINEL = "@@fuzz-literal@@"


def splice(value: Any, path: list[str], literal: str) -> bytes:
    """``value`` as JSON text with the member at ``path`` replaced by the raw text ``literal``."""
    target = value
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = SENTINEL
    return json.dumps(value).replace(json.dumps(SENTINEL), literal, 1).encode("utf-8", "surrogatepass")


def _odd_literal(rng: random.Random) -> str:
    return deep_json(rng) if rng.random() < 0.15 else rng.choice(JSON_LITERALS)


def _metrics_path(rng: random.Random, record: dict) -> list[str]:
    section = rng.choice(["", "", "train", "val", "epoch"])
    if section == "epoch":
        return ["epoch"]
    keys = sorted(record.get(section, {}) if section else record)
    key = rng.choice([*keys, "extra", "\u00e9t\u00e9", ""]) if keys else "extra"
    return [section, key] if section else [key]


METRICS_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 4400, b"\n", b"\r\n", b"{", b"}", b"[", b"]",
                  b'"', b",", b":", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\ud800", b"null", b"[" * 2000, b'"epoch": ',
                  b"\xef\xbb\xbf"]
MAX_LINE = 64 * 1024  # aekit.run.layout.MAX_METRICS_LINE, as a size for lines around the limit


def metrics_generate(rng: random.Random) -> dict:
    """metrics.jsonl bytes, and the records that were left whole (read_metrics must return those, in order)."""
    records = metrics_records()
    kind = rng.random()
    if kind < 0.03:
        return {"data": None, "expected": []}  # no file: no epochs
    if kind < 0.06:
        return {"data": random_bytes(rng, rng.choice([0, 1, 7, 300])), "expected": None}
    if kind < 0.35:  # the bytes of a real file, mutated anywhere
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records[: rng.randint(1, len(records))])
        return {"data": mutate(rng, data, tokens=METRICS_TOKENS, max_ops=6), "expected": None}
    lines: list[tuple[bytes, dict | None]] = []  # (line without its newline, the record it must give or None)
    chosen = [rng.choice(records) for _ in range(rng.randint(0, 6))]
    if rng.random() < 0.02:
        chosen = [{**records[0], "epoch": i} for i in range(1, 1001)]  # a long run
    for record in chosen:
        lines.append((json.dumps(record).encode(), _finite(record)))
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["literal", "literal", "literal", "non-object", "utf8", "overlong", "blank", "crlf",
                         "duplicate-key", "epoch"])
        i = rng.randint(0, len(lines))
        record = json.loads(json.dumps(rng.choice(records)))  # a fresh copy
        if op == "literal":
            lines.insert(i, (splice(record, _metrics_path(rng, record), _odd_literal(rng)), None))
        elif op == "epoch":
            lines.insert(i, (splice(record, ["epoch"], rng.choice(
                ["1.0", '"1"', "true", "null", "-1", "0", str(2**63), str(2**63 - 1), "9" * 5000, "[1]", "1e2"])), None))
        elif op == "non-object":
            lines.insert(i, (rng.choice([b"[1, 2]", b"3", b"null", b'"epoch"', b"true", b'[{"epoch": 1}]', b"NaN",
                                         b"Infinity", b"-", b"{", b"}", b"\x00", b'{"epoch": 1}{"epoch": 2}']), None))
        elif op == "utf8":
            bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"])
            text = splice(record, _metrics_path(rng, record), '"a' + SENTINEL + 'b"')
            lines.insert(i, (text.replace(SENTINEL.encode(), bad), None))
        elif op == "overlong":
            size = rng.choice([MAX_LINE - 40, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2, 3 * MAX_LINE,
                               2_000_000])
            head = json.dumps({"epoch": 99, "pad": ""}).encode()[:-2]  # {"epoch": 99, "pad": "
            if rng.random() < 0.5:
                lines.insert(i, (head + b"x" * max(0, size - len(head) - 2) + b'"}', None))
            else:
                lines.insert(i, (b" " * size + json.dumps(record).encode(), None))
        elif op == "blank":
            lines.insert(i, (rng.choice([b"", b" ", b"\t", b"\r"]), None))
        elif op == "crlf" and lines:
            j = min(i, len(lines) - 1)
            lines[j] = (lines[j][0] + b"\r", lines[j][1])
        elif op == "duplicate-key":
            lines.insert(i, (b'{"epoch": 3, "epoch": ' + rng.choice([b'"x"', b"4", b"null"]) + b"}", None))
    data = b"".join(text + b"\n" for text, _ in lines)
    end = rng.random()
    if end < 0.2 and lines:  # killed while writing the last line: it is cut short and ends the history
        cut = rng.randrange(len(lines[-1][0]) + 1)
        data = data[: len(data) - len(lines[-1][0]) - 1 + cut]
        lines[-1] = (lines[-1][0][:cut], None)
    elif end < 0.3:
        data = data.rstrip(b"\n")  # a whole last line with no newline is still a record
    if rng.random() < 0.03:
        data = b"\xef\xbb\xbf" + data  # a byte-order mark from a hand edit
        if lines:
            lines[0] = (lines[0][0], None)
    return {"data": data, "expected": [record for _, record in lines if record is not None]}


def check_clean(value: Any, where: str, depth: int = 0) -> None:
    """A value read back from a run's metrics: plain JSON, finite, nested at most MAX_NESTING objects deep."""
    from aekit.run.layout import MAX_NESTING

    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        expect(abs(value) < 2**63, f"{where}: integer {value:.3e} beyond 64 bits")
    elif isinstance(value, float):
        expect(math.isfinite(value), f"{where}: non-finite number {value}")
    elif isinstance(value, dict):
        expect(depth < MAX_NESTING, f"{where}: objects nested deeper than {MAX_NESTING}")
        for key, item in value.items():
            expect(isinstance(key, str), f"{where}: key {key!r} is not a string")
            check_clean(item, f"{where}.{key[:20]}", depth + 1)
    else:
        raise WrongResult(f"{where}: a {type(value).__name__} among the values")


def check_json_answer(value: Any, where: str, *, allow_nan: bool = False) -> None:
    """What the web explorer answers must be strict JSON and UTF-8 (JSONResponse: allow_nan=False, utf-8)."""
    try:
        json.dumps(value, allow_nan=allow_nan, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise WrongResult(f"{where}: a string that is not UTF-8 ({err.reason})") from None
    except (ValueError, TypeError, RecursionError) as err:
        raise WrongResult(f"{where}: not strict JSON ({type(err).__name__}: {err})") from None


def check_metrics_rows(rows: Any, expected: list[dict] | None) -> None:
    from aekit.viz.plots import loss_series

    expect(isinstance(rows, list), f"read_metrics returned {type(rows).__name__}")
    for n, row in enumerate(rows):
        expect(isinstance(row, dict), f"row {n} is a {type(row).__name__}")
        epoch = row.get("epoch")
        expect(isinstance(epoch, int) and not isinstance(epoch, bool), f"row {n} has epoch {epoch!r}")
        check_clean(row, f"row {n}")
    check_json_answer(rows, "metrics")
    if expected is not None:  # the whole records come back, in order, whatever surrounds them
        rest = iter(rows)
        missing = [e for e in expected if not any(row == e for row in rest)]
        expect(not missing, f"a whole record was lost: epoch {missing[0]['epoch'] if missing else ''}")
    epochs, parts = loss_series(rows)
    expect(epochs == [row["epoch"] for row in rows], "loss_series epochs differ from the rows'")
    for name, series in parts.items():
        expect(set(series) == {"train", "val"}, f"loss_series part {name!r} has {sorted(series)}")
        for values in series.values():
            expect(len(values) == len(rows) and all(isinstance(v, float) for v in values),
                   f"loss_series part {name!r} is not one float per epoch")


def metrics_run(case: dict) -> str:
    from aekit.errors import AekitError
    from aekit.run.layout import read_metrics

    run = WORK.fresh("metrics-run")
    if case["data"] is not None:
        (run / "metrics.jsonl").write_bytes(case["data"])
    try:
        rows = read_metrics(run)
    except AekitError as err:  # an epoch log is read leniently: no file is refused as a whole
        raise WrongResult(f"read_metrics refused the file: {err}") from None
    check_metrics_rows(rows, case["expected"])
    return "ok"


# -- the safetensors header of model.safetensors --------------------------------------------------

def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


SAFETENSORS_DTYPES: list[Any] = ["F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
                                 "F8_E4M3", "F8_E5M2", "C64", "f32", "F32 ", "", "XX", 7, None, ["F32"]]
HEADER_TOKENS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"-1", b"18446744073709551615", b"1e3", b'"F32"', b"null",
                 b"\\u0000", b"\\ud800", b'"data_offsets"', b'"shape"', b"\xff"]


def _nbytes(entry: dict) -> int | None:
    offsets = entry.get("data_offsets")
    if isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets):
        return offsets[1] - offsets[0]
    return None


def header_generate(rng: random.Random) -> dict:
    """A real model.safetensors with its header edited: shapes, dtypes, offsets, names, the length field."""
    name = rng.choice(model_names())
    header, payload = split_safetensors((base_run(name) / "model.safetensors").read_bytes())
    length_lie = None
    text_ops: list[str] = []
    ops = []
    for _ in range(rng.randint(1, 3)):
        tensors = sorted(k for k in header if k != "__metadata__" and isinstance(header[k], dict))
        if not tensors:
            break
        key = rng.choice(tensors)
        entry = header[key]
        op = rng.choice(["shape", "shape", "dtype", "offsets", "offsets", "swap", "shift", "rename", "drop", "extra",
                         "metadata", "length", "text", "pad", "payload", "huge", "duplicate", "literal", "relayout",
                         "relayout", "relayout"])
        ops.append(op)
        shape = entry.get("shape") if isinstance(entry.get("shape"), list) else [1]
        offsets = entry.get("data_offsets") if isinstance(entry.get("data_offsets"), list) else [0, 0]
        a, b = (offsets + [0, 0])[:2] if all(isinstance(v, int) for v in offsets) else (0, 0)
        if op == "shape":
            numel = math.prod(v for v in shape if isinstance(v, int))
            entry["shape"] = rng.choice([[], [0], shape[::-1], [*shape, 1], [1, *shape], shape[:-1], [numel], [2**40],
                                         [2**31, 2**31], [2**32, 2**32], [2**62, 4], [2**64 - 1], [2**64], [-1],
                                         [1.5], ["2"], None, 3, [numel * 2], [numel, 0], [0, 2**63]])
        elif op == "dtype":
            entry["dtype"] = rng.choice(SAFETENSORS_DTYPES)
        elif op == "offsets":
            entry["data_offsets"] = rng.choice([[b, a], [a, b + 1], [a, b - 1], [a + 1, b + 1], [-1, b], [a, 2**64 - 1],
                                                [a, 2**64], [0, 0], [a, b, b], [a], [], [str(a), b], [a + 0.5, b],
                                                None, [a, 2**63], [a - 4, b - 4], [0, len(payload)]])
        elif op == "swap":  # two tensors trade places in the data: the file stays whole
            same = [k for k in tensors if k != key and _nbytes(entry) is not None
                    and _nbytes(header[k]) == _nbytes(entry)]
            other = rng.choice(same or tensors)
            entry["data_offsets"], header[other]["data_offsets"] = header[other].get("data_offsets"), \
                entry.get("data_offsets")
        elif op == "shift":
            k = rng.choice([1, 4, -4, 8, len(payload)])
            for other in tensors:
                o = header[other].get("data_offsets")
                if isinstance(o, list) and all(isinstance(v, int) for v in o):
                    header[other]["data_offsets"] = [v + k for v in o]
        elif op == "rename":
            new = rng.choice([key + ".x", key.upper(), "", " " + key, key + "\u0000", "\u00e9" + key, "x" * 100_000,
                              "__metadata__", key.replace(".", "/"), key[:-1]])
            header[new] = header.pop(key)
        elif op == "drop":
            header.pop(key)
        elif op == "extra":  # one tensor more, laid out after the others: a whole file the model does not match
            n = rng.choice([0, 4, 8])
            header[key + "_extra"] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [len(payload), len(payload) + n]}
            payload += b"\0" * n
        elif op == "metadata":
            if rng.random() < 0.3:
                header.pop("__metadata__", None)
            else:
                header["__metadata__"] = rng.choice([{"format": "pt"}, {"format": 1}, {"a": {"b": 1}}, [], "x", None,
                                                     {"format": "np"}, {"": ""}, {"k" * 1000: "v" * 100_000}])
        elif op == "length":
            length_lie = rng.choice([0, 1, 2, 7, 8, -1, 1, 8, 2**63, 2**64 - 1, 100_000_001, 100_000_000, 2**32,
                                     "+len(payload)", "+len(payload)+1", 2**31])
        elif op in ("text", "pad", "duplicate", "literal"):
            text_ops.append(op)
        elif op == "payload":
            payload = rng.choice([payload[:-1], payload[: len(payload) // 2], payload + b"\0" * rng.choice([1, 4, 64]),
                                  b""])
        elif op == "relayout":  # the same tensors in another order in the data: a valid file of the same model
            spans = {k: header[k].get("data_offsets") for k in tensors}
            if all(isinstance(o, list) and len(o) == 2 and all(type(v) is int for v in o) and 0 <= o[0] <= o[1]
                   <= len(payload) for o in spans.values()):
                order = sorted(tensors, key=lambda _: rng.random())
                chunks = []
                at = 0
                for k in order:
                    chunk = payload[spans[k][0]:spans[k][1]]
                    header[k]["data_offsets"] = [at, at + len(chunk)]
                    chunks.append(chunk)
                    at += len(chunk)
                payload = b"".join(chunks)
        elif op == "huge":  # offsets agree with a huge shape; the file does not hold it
            entry["shape"] = [2**20, 2**20]
            entry["data_offsets"] = [a, a + 4 * 2**40]
    blob = json.dumps(header).encode()
    for op in text_ops:
        if op == "text":
            blob = mutate(rng, blob, tokens=HEADER_TOKENS)
        elif op == "pad":  # the format allows trailing spaces; NULs or a huge header are another matter
            blob += rng.choice([b" ", b" ", b"\0"]) * rng.choice([1, 7, 4096, 2_000_000])
        elif op == "duplicate":  # a name twice: JSON parsers differ on which one wins
            tensors = [k for k in header if k != "__metadata__"]
            if tensors:
                k = rng.choice(tensors)
                twin = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
                blob = blob[:-1] + b", " + json.dumps(k).encode() + b": " + json.dumps(twin).encode() + b"}"
        elif op == "literal":  # an odd JSON value somewhere in one entry
            try:
                edited = json.loads(blob)
            except (ValueError, RecursionError):  # an earlier edit of the text already broke it
                continue
            tensors = [k for k in edited if k != "__metadata__" and isinstance(edited[k], dict)]
            if tensors:
                blob = splice(edited, [rng.choice(tensors), rng.choice(["shape", "dtype", "data_offsets"])],
                              _odd_literal(rng))
    if length_lie is None:
        length = len(blob)
    elif isinstance(length_lie, str):
        length = len(blob) + len(payload) + (1 if length_lie.endswith("+1") else 0)
    else:
        length = length_lie % 2**64
    return {"base": name, "bytes": struct.pack("<Q", length) + blob + payload, "ops": ops}


def _one_line_refusal(err: BaseException, folder: Path) -> str:
    """refused(err), and its message names a file of the run folder."""
    outcome = refused(err)
    expect(str(folder) in str(err), f"{type(err).__name__} does not name the run's file: {str(err)[:120]}")
    return outcome


def _check_outputs_finite(model, max_elements: int = 200_000) -> None:
    shape = tuple(model.in_shape)
    if math.prod(shape) > max_elements:
        return
    torch.manual_seed(0)
    y = torch.zeros(2, dtype=torch.long) if model.conditional else None
    with torch.inference_mode():
        out = model.reconstruct(model.example_input(2), y)  # pixels or melodies, as the model reads
    expect(tuple(out.shape) == (2, *model.out_shape), f"output {tuple(out.shape)}, promised {model.out_shape}")
    expect(bool(torch.isfinite(out).all()), "the loaded model's output is not finite for a finite input")


def header_run(case: dict) -> str:
    from aekit.run import Run

    run = WORK.fresh("header-run")
    shutil.copy(base_run(case["base"]) / "config.json", run)
    (run / "model.safetensors").write_bytes(case["bytes"])
    try:
        model = Run.open(run).load_model()
    except Exception as err:  # noqa: BLE001
        return _one_line_refusal(err, run)
    _check_model_matches_file(model, run / "model.safetensors")
    _check_outputs_finite(model)
    return "ok"


# -- whole run folders ----------------------------------------------------------------------------

TEST_METRICS = {"total": 0.031, "recon": 0.029, "kl": 0.002, "psnr": 21.5, "ssim": 0.81,
                "baselines": {"bicubic": {"psnr": 19.2, "ssim": 0.74}, "pca": {"psnr": 17.0, "ssim": 0.6}}}
# Values a config field can take that are wrong in type, range or size.
CONFIG_ODDITIES: dict[str, list[Any]] = {
    "hidden": [[60000, 60000], [65536], [65537], [0], [-1], [10**9], "16", [16.5], [[16]], [True], [], 60000,
               [16] * 200, [2**63]],
    "latent_dim": [0, -1, 65536, 65537, 10**9, "3", None, 2.0, True, 2**64],
    "channels": [[60000, 60000], [0], [-8], [8] * 50, [], "8", [8.0], 65536],
    "in_shape": [[1, 4096, 4096], [3, 12, 12], [1, 12], [1, 0, 12], [1, 12, 12, 1], "1,12,12", [1.0, 12, 12],
                 [True, 12, 12], [1, 2**31, 2**31], [1, 10**20, 1], [1, 4097, 4097], [-1, 12, 12], [1, 13, 13],
                 [1, 24, 24], [2**31, 1, 1]],
    "num_classes": [0, -1, 1, 10**6, 10**12, "3", None],
    "image_size": [0, -1, 4096, 4097, 10**9, "28", 28.5, None],
    "task": ["denoise", "super-resolution", "reconstruct", "", "x", None, 3],
    "noise": ["gaussian:0.5", "gaussian:-1", "gaussian:nan", "gaussian:1e999", "salt:2", "x", "", None, 0.5],
    "scale": [2, 3, 4, 8, 0, -2, 5, 10**9, "2", None, 2.5],
    "epochs": [0, -1, 10**7, 1.5, "1", None, 10**400], "lr": [0, -1, 1e999, 11, "0.1", None, 10**400, -(10**400)],
    "seed": [-1, 2**32, 2**64], "beta": [0, -1, 1e308, 10**400, "1", None], "weight_decay": [-1, 10**400],
    "format_version": [2, 0, "1", 1.0, True, None], "model": ["", "../dense-ae", "DENSE-AE", "x" * 10_000, 1, None],
    "classes": [["a"] * 100_000, [1, 2, 3], "abc", [["a"]], ["a", "b"], ["a\nb", "c", "d"]],
}


def _config_fields(raw: dict) -> list[list[str]]:
    paths = [[k] for k in raw]
    for section in ("model_config", "data", "train"):
        if isinstance(raw.get(section), dict):
            paths += [[section, k] for k in raw[section]]
    return paths


def run_config_text(rng: random.Random, name: str) -> bytes:
    """The config.json of a run of ``name``, edited in ways that know its structure (or not)."""
    raw = json.loads((base_run(name) / "config.json").read_text())
    for _ in range(rng.randint(0, 3)):
        if not isinstance(raw, dict):
            break  # the whole config was replaced by another value: nothing left to edit inside
        kind = rng.random()
        if kind < 0.4:  # a known field, set to a wrong type, range or size
            paths = [p for p in _config_fields(raw) if p[-1] in CONFIG_ODDITIES]
            paths += [["model_config", k] for k in ("hidden", "latent_dim", "channels", "num_classes")
                      if isinstance(raw.get("model_config"), dict)]
            paths += [["data", k] for k in ("task", "noise", "scale", "image_size") if isinstance(raw.get("data"), dict)]
            if not paths:
                continue
            path = rng.choice(paths)
            target = raw
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = rng.choice(CONFIG_ODDITIES[path[-1]])
        elif kind < 0.6:
            raw = _mutate_json(rng, raw)
        elif kind < 0.7:  # a key nobody knows, at the top or in a section
            section = rng.choice([None, "model_config", "data", "train"])
            target = raw if section is None or not isinstance(raw.get(section), dict) else raw[section]
            target[rng.choice(["extra", "__class__", "hidden ", "a\nb", "\u00e9", "x" * 1000])] = rng.choice(JSON_ODDITIES)
        elif kind < 0.8:
            raw["model_config"] = json.loads((base_run(rng.choice(model_names())) / "config.json").read_text())[
                "model_config"]
    text = json.dumps(raw).encode()
    kind = rng.random()
    if kind < 0.15 and isinstance(raw, dict) and raw:  # raw JSON text no encoder writes: deep nesting, ...
        path = rng.choice(_config_fields(raw))
        text = splice(json.loads(text), path, _odd_literal(rng))
    elif kind < 0.25:
        text = mutate(rng, text, tokens=[b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"\xff", b"9" * 4400,
                                         b"NaN", b"[" * 3000])
    elif kind < 0.27:
        text = rng.choice([b"", b"[]", b"null", b"\xef\xbb\xbf" + text, text.decode().encode("utf-16"), b"{" * 100_000])
    return text


def run_generate(rng: random.Random) -> dict:
    """A whole run folder: config.json, the weights, metrics.jsonl and test_metrics.json, mutated together."""
    name = rng.choice(model_names())
    files: dict[str, Any] = {"config.json": run_config_text(rng, name) if rng.random() < 0.8 else
                             (base_run(name) / "config.json").read_bytes()}
    weights = rng.choice(["base", "base", "base", "base", "other", "missing", "checkpoint", "checkpoint", "header",
                          "folder"])
    if weights in ("base", "checkpoint"):
        files["weights"] = (base_run(name) / "model.safetensors").read_bytes()
    elif weights == "other":
        files["weights"] = (base_run(rng.choice(model_names())) / "model.safetensors").read_bytes()
    elif weights == "header":
        files["weights"] = header_generate(rng)["bytes"]
    files["weights_at"] = weights
    metrics = metrics_generate(rng)
    files["metrics.jsonl"], files["expected_metrics"] = metrics["data"], metrics["expected"]
    kind = rng.random()
    test = json.loads(json.dumps(TEST_METRICS))
    if kind < 0.2:
        files["test_metrics.json"] = None
    elif kind < 0.35:
        files["test_metrics.json"] = json.dumps(test, indent=2).encode()
    elif kind < 0.55:
        files["test_metrics.json"] = json.dumps(_mutate_json(rng, test)).encode()
    elif kind < 0.75:
        path = rng.choice([["psnr"], ["baselines", "bicubic"], ["baselines", "pca", "psnr"], ["extra"]])
        files["test_metrics.json"] = splice(test, path, _odd_literal(rng))
    elif kind < 0.9:
        files["test_metrics.json"] = mutate(rng, json.dumps(test).encode(), tokens=METRICS_TOKENS)
    else:
        files["test_metrics.json"] = rng.choice([b"", b"[]", b"3", b"\xff\xfe", b" " * (MAX_LINE + 1) + b"{}",
                                                 b'{"a": "' + b"x" * MAX_LINE + b'"}', json.dumps(test).encode("utf-16"),
                                                 b'{"psnr": 1}' * 2, b"{}", b'{"\\ud800": 1}'])
    return files


def _peak_rss_mib() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


RUN_MEMORY_MIB = 512  # what one case may add to the process's peak memory


def run_run(case: dict) -> str:
    from aekit.config import to_plain
    from aekit.errors import AekitError
    from aekit.run import Run

    before = _peak_rss_mib()
    run = WORK.fresh("run-run")
    (run / "config.json").write_bytes(case["config.json"])
    weights_at = case["weights_at"]
    if weights_at == "checkpoint":  # killed between the checkpoint and the run's own copy of the weights
        (run / "checkpoints" / "ckpt-00001-000000016").mkdir(parents=True)
        (run / "checkpoints" / "ckpt-00001-000000016" / "model.safetensors").write_bytes(case["weights"])
    elif weights_at == "folder":
        (run / "model.safetensors").mkdir()
    elif weights_at != "missing":
        (run / "model.safetensors").write_bytes(case["weights"])
    for name in ("metrics.jsonl", "test_metrics.json"):
        if case[name] is not None:
            (run / name).write_bytes(case[name])
    outcomes = []
    try:
        opened = Run.open(run)
    except Exception as err:  # noqa: BLE001
        return _one_line_refusal(err, run)
    try:
        opened.check()
    except Exception as err:  # noqa: BLE001
        outcomes.append(_one_line_refusal(err, run))
    else:  # the weights fit the config: the model loads (or its values are refused) and computes
        # The config as the web explorer answers it once the model has loaded (GET /api/run; NaN made null).
        check_json_answer(to_plain(opened.config), "config", allow_nan=True)
        try:
            model = opened.load_model()
        except Exception as err:  # noqa: BLE001
            outcomes.append(_one_line_refusal(err, run))
        else:
            _check_outputs_finite(model, max_elements=4096)  # small inputs only: the header target runs more
    try:
        rows = opened.history()
    except AekitError as err:
        raise WrongResult(f"history() refused the run: {err}") from None
    check_metrics_rows(rows, case["expected_metrics"])
    try:
        metrics = opened.test_metrics()
    except Exception as err:  # noqa: BLE001
        outcomes.append(_one_line_refusal(err, run))
    else:
        expect(metrics is None or isinstance(metrics, dict), f"test_metrics() returned {type(metrics).__name__}")
        check_clean(metrics, "test_metrics")
        check_json_answer(metrics, "test_metrics")
        if case["test_metrics.json"] == json.dumps(TEST_METRICS, indent=2).encode():
            expect(metrics == TEST_METRICS, "test_metrics.json as aekit writes it did not read back")
    try:
        opened.task.describe()
    except Exception as err:  # noqa: BLE001
        outcomes.append(refused(err))
    grown = _peak_rss_mib() - before
    expect(grown < RUN_MEMORY_MIB, f"memory: the case raised the peak by {grown:.0f} MiB")
    return outcomes[0] if outcomes else "ok"


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("idx", idx_generate, idx_run, "IDX files, raw and gzipped (parse_idx, read_idx)"),
    Target("csv", csv_generate, csv_run, "the pixel CSV of mnist-5k (parse_pixel_csv), against a reference parser"),
    Target("image", image_generate, image_run, "image files (load_image): PNG, JPEG, BMP, GIF, TIFF, WebP, PNM, ICO; "
           "odd valid ones (16-bit, float, CMYK, palettes, animations, EXIF-rotated, 1xN) and corrupt ones"),
    Target("config", config_generate, config_run, "config.json of a run folder (aekit.load)"),
    Target("weights", weights_generate, weights_run, "model.safetensors of a run folder (aekit.load)"),
    Target("checkpoint", checkpoint_generate, checkpoint_run, "state.json and optimizers.pt (read_checkpoint)"),
    Target("cifar", cifar_generate, cifar_run, "CIFAR-10 pickled batches and tarballs (SafeUnpickler)"),
    Target("metrics", metrics_generate, metrics_run, "metrics.jsonl of a run folder (read_metrics, loss_series)"),
    Target("header", header_generate, header_run,
           "the safetensors header of model.safetensors (Run.open(...).load_model())"),
    Target("run", run_generate, run_run,
           "whole run folders: config.json, weights, metrics.jsonl, test_metrics.json (Run.open, check, history, "
           "test_metrics, task)"),
]}
