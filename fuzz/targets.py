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


def image_generate(rng: random.Random) -> dict:
    seeds = _image_seeds()
    kind = rng.random()
    if kind < 0.75:
        data, suffix = rng.choice(seeds)
        data = mutate(rng, data)
    elif kind < 0.9:
        data, suffix = crafted_png(rng), ".png"
    else:
        data, suffix = rng.choice(seeds)
        data = data[: rng.randrange(len(data) + 1)]
    if rng.random() < 0.1:
        suffix = rng.choice([".png", ".jpg", ".gif", ".bmp", ".tif"])  # the name lies about the content
    return {"data": data, "suffix": suffix, "channels": rng.choice([1, 3]),
            "size": rng.choice([None, None, (6, 5), (1, 1), (33, 17)])}


def image_run(case: dict) -> str:
    from aekit.data.images import load_image

    path = WORK.file("fuzz" + case["suffix"], case["data"])
    try:
        x = load_image(path, channels=case["channels"], size=case["size"], max_pixels=FUZZ_MAX_PIXELS)
    except Exception as err:  # noqa: BLE001
        return refused(err)
    expect(isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 3, f"got {x!r:.80}")
    expect(x.shape[0] == case["channels"], f"channels {x.shape[0]}, asked for {case['channels']}")
    if case["size"] is not None:
        expect(tuple(x.shape[1:]) == case["size"], f"size {tuple(x.shape[1:])}, asked for {case['size']}")
    else:
        expect(x.shape[1] * x.shape[2] <= FUZZ_MAX_PIXELS, "decoded above the pixel limit")
    expect(bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1, "values outside [0, 1]")
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
            out = model.reconstruct(torch.rand(2, *shape), y)
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


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("idx", idx_generate, idx_run, "IDX files, raw and gzipped (parse_idx, read_idx)"),
    Target("csv", csv_generate, csv_run, "the pixel CSV of mnist-5k (parse_pixel_csv), against a reference parser"),
    Target("image", image_generate, image_run, "image files (load_image): PNG, JPEG, BMP, GIF, TIFF, WebP, PNM"),
    Target("config", config_generate, config_run, "config.json of a run folder (aekit.load)"),
    Target("weights", weights_generate, weights_run, "model.safetensors of a run folder (aekit.load)"),
    Target("checkpoint", checkpoint_generate, checkpoint_run, "state.json and optimizers.pt (read_checkpoint)"),
    Target("cifar", cifar_generate, cifar_run, "CIFAR-10 pickled batches and tarballs (SafeUnpickler)"),
]}
