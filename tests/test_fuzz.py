"""Bad input on purpose: every reader of outside files ends in a correct result or aekit's own error.

The targets live in fuzz/targets.py (one generator and one oracle each, shared with the longer
fuzz/run_fuzz.py); here hypothesis picks a bounded number of seeds per target.  A failure
prints the seed; ``python fuzz/run_fuzz.py --replay TARGET:SEED`` reruns that exact case.
Below them: hypothesis-built config.json objects, and the regressions the fuzzing found, kept
as fixed examples.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import pickle
import struct
import sys
import tarfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aekit.config import RunConfig
from aekit.errors import CheckpointError, DataError

REPO = Path(__file__).resolve().parents[1]


def _load_targets():
    spec = importlib.util.spec_from_file_location("aekit_fuzz_targets", REPO / "fuzz" / "targets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


targets = _load_targets()

# Cases per target in CI: about 20 s for the first seven on one core, and a few seconds for each
# of the run-folder targets (metrics, header, run).  fuzz/run_fuzz.py runs thousands.
CI_EXAMPLES = {"idx": 400, "csv": 400, "image": 300, "config": 250, "weights": 150, "checkpoint": 200, "cifar": 300,
               "metrics": 300, "header": 250, "run": 200}
# Targets whose reader refuses nothing by design: read_metrics skips what it cannot read.
NEVER_REFUSE = {"metrics"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The fuzzed models are tiny: one thread runs them faster than two busy ones (as run_fuzz.py does)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fuzz_settings(n: int):
    """n cases; the rest (fixed cases in CI, random ones locally) from tests/_hypothesis_profiles.py."""
    return settings(max_examples=n, suppress_health_check=[HealthCheck.too_slow])


def _fuzz_test(name: str):
    @fuzz_settings(CI_EXAMPLES[name])
    @given(seed=st.integers(0, 2**32 - 1))
    def test(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about every corrupt EXIF block it meets
            outcome = targets.TARGETS[name].run_seed(seed)
        assert outcome == "ok" or outcome.startswith("refused: "), outcome

    test.__name__ = f"test_fuzz_{name}"
    test.__doc__ = f"{targets.TARGETS[name].describe}: a correct result or an AekitError, never anything else."
    return test


for _name in CI_EXAMPLES:
    globals()[f"test_fuzz_{_name}"] = _fuzz_test(_name)


def test_every_target_both_accepts_and_refuses_something():
    """A fuzz target whose cases all fail (or all pass) tests only half of the parser."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, target in targets.TARGETS.items():
            outcomes = {target.run_seed(seed).split(":")[0] for seed in range(120)}
            assert outcomes == ({"ok"} if name in NEVER_REFUSE else {"ok", "refused"}), (name, outcomes)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_odd_but_valid_image_loads_as_the_file_says(channels):
    """16-bit, float and integer TIFFs, palettes with transparency, CMYK, animations, EXIF-rotated
    photos, 1xN strips: each loads upright at its own size (with its exact grey values where the
    file fixes them), and the few that must be refused (NaN floats, over the pixel limit) are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data, suffix, expected in targets.odd_images():
            for size in (None, (6, 5)):
                case = {"data": data, "suffix": suffix, "channels": channels, "size": size, "expected": expected}
                outcome = targets.image_run(case)
                assert outcome == ("ok" if expected["must"] == "ok" else "refused: DataError"), (suffix, expected)
    assert len(targets.odd_images()) >= 30  # most kinds were written (a Pillow without a codec drops some)


# -- config.json built by hypothesis -----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
VALID = {"model": "dense-ae", "model_config": {"in_shape": [1, 28, 28], "hidden": [16], "latent_dim": 2},
         "data": {"dataset": "mnist-5k"}, "train": {"epochs": 1}, "in_shape": [1, 28, 28],
         "out_shape": [1, 28, 28], "classes": [], "format_version": 1}


@example(replace={"train": None, "train.lr": None}, drop=set())  # a field set inside a section that is not an object
@example(replace={"train.lr": None, "train": None}, drop=set())
@fuzz_settings(300)
@given(replace=st.dictionaries(st.sampled_from([*VALID, "data.image_size", "train.lr", "extra"]), json_values,
                               max_size=3),
       drop=st.sets(st.sampled_from(list(VALID)), max_size=2))
def test_run_config_from_any_json_is_a_config_or_a_checkpoint_error(replace, drop):
    raw = json.loads(json.dumps(VALID))
    for key, value in replace.items():
        if "." in key:
            section, field = key.split(".")
            if isinstance(raw[section], dict):
                raw[section] = {**raw[section], field: value}
            # else the whole section is already a non-object (replaced above), which must be refused as it is
        else:
            raw[key] = value
    for key in drop:
        raw.pop(key, None)
    try:
        cfg = RunConfig.from_dict(raw, source="run/config.json")
    except CheckpointError as err:
        assert "\n" not in str(err) and "run/config.json" in str(err), str(err)
        return
    assert isinstance(cfg.model, str) and isinstance(cfg.model_config, dict)
    # (C, H, W) for images, (steps,) for melodies
    assert len(cfg.in_shape) in (1, 3) and all(isinstance(v, int) and v > 0 for v in cfg.in_shape)
    assert json.loads(cfg.to_json())["model"] == cfg.model  # what loads can be written back


@pytest.mark.parametrize("raw", [{"data": {"\n": None}}, {"train": {"a\nb": 1}}, {"\n": 1}])
def test_an_unknown_key_with_a_newline_is_refused_in_one_line(raw):
    """Found by the test above drawing random keys (about one case in 500)."""
    with pytest.raises(CheckpointError) as raised:
        RunConfig.from_dict({**VALID, **raw})
    assert "\n" not in str(raised.value), str(raised.value)


# -- regressions the fuzzing found, as fixed examples ----------------------------------------------

@pytest.mark.parametrize("dims", [(4, 2**31, 2**31), (2**16, 2**31, 2**31), (2**31, 2**31, 2**2)])
def test_idx_dimensions_whose_product_overflows_int64_are_refused(dims):
    """numpy's int64 product of these dimensions wraps to 0, which matched an empty payload."""
    from aekit.data.idx import parse_idx

    assert int(np.prod(dims, dtype=np.int64)) == 0 and math.prod(dims) > 0
    with pytest.raises(DataError, match="IDX payload is 0 bytes"):
        parse_idx(bytes([0, 0, 8, 3]) + struct.pack(">3I", *dims), ndim=3, source="x")


@pytest.mark.parametrize("header", [b"P5\n7\x00255\n", b"P6\n" + b"9" * 40 + b"\n", b"P5\n25\xd4 3\n255\n"])
def test_a_pnm_header_pillow_cannot_parse_is_a_data_error(header, tmp_path):
    """Pillow's PPM reader raises ValueError (not an OSError) for a header that is not numbers."""
    from aekit.data.images import load_image

    path = tmp_path / "x.pgm"
    path.write_bytes(header + b"\0" * 64)
    with pytest.raises(DataError, match="not an image Pillow can read") as raised:
        load_image(path, channels=1)
    assert "\n" not in str(raised.value)


def test_a_corrupt_tarball_and_a_strange_pickle_give_one_line(tmp_path):
    from aekit.data.cifar import read_members, safe_unpickle

    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 200)  # tarfile lists each method it tried, one per line
    with pytest.raises(DataError) as raised:
        read_members(path, {"data_batch_1"})
    assert "\n" not in str(raised.value)
    with pytest.raises(DataError) as raised:
        safe_unpickle(b"\x80\x04P0\n.", source="batch")  # a persistent id: pickle's message has a newline
    assert "\n" not in str(raised.value)


def test_a_tarball_corrupt_inside_a_member_is_a_data_error(tmp_path):
    """Damage past the tar headers surfaces as zlib.error while a member is read: flip each byte in turn."""
    from aekit.data.cifar import read_members

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = np.random.default_rng(0).integers(0, 4, 50_000, dtype=np.uint8).tobytes()
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    good = buffer.getvalue()
    path = tmp_path / "cifar-10-python.tar.gz"
    zlib_errors = 0
    for i in range(10, len(good), max(1, len(good) // 400)):
        path.write_bytes(good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:])
        try:
            read_members(path, {"data_batch_1"})
        except DataError as err:
            assert "\n" not in str(err)
            zlib_errors += "Error -3" in str(err)
    assert zlib_errors, "no flip reached the deflate stream: the test proves nothing"


def _png_bomb(path: Path, width: int, height: int) -> None:
    """A valid grey PNG of width x height zeros, compressed as it is written (a few hundred kB)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    from aekit.data import images

    path = tmp_path / "bomb.png"
    _png_bomb(path, 10_000, 6_000)  # 60 megapixels of zeros in a file of a few hundred kB
    assert path.stat().st_size < 1_000_000

    def never(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(images, "decode_image", never)
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"10000x6000 = 60,000,000 pixels, above the limit of 50,000,000"):
        images.load_image(path, channels=1)
    assert time.perf_counter() - started < 5
    # A header claiming far more than Pillow's own limit is refused the same way.
    (tmp_path / "huge.png").write_bytes(_header_only_png(100_000))
    with pytest.raises(DataError, match="pixels|too large"):
        images.load_image(tmp_path / "huge.png", channels=1)


def _header_only_png(side: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + targets.png_chunk(b"IHDR", ihdr) + targets.png_chunk(b"IDAT", zlib.compress(b"\0"))
            + targets.png_chunk(b"IEND", b""))


def test_a_config_asking_for_a_huge_model_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    """hidden: [30000, 30000] is 3.7 GB of float32: refused from the meta-device shapes, never built."""
    import shutil

    import aekit
    import aekit.run.weights

    def build_from_config(*args, **kwargs):
        raise AssertionError("the model was built before its size was checked")

    monkeypatch.setattr(aekit.run.weights, "build_from_config", build_from_config)

    run = tmp_path / "run"
    shutil.copytree(targets.base_run("dense-ae"), run)
    raw = json.loads((run / "config.json").read_text())
    raw["model_config"]["hidden"] = [30_000, 30_000]
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"describes a model with [0-9,]{13,} bytes of weights, above aekit's limit"):
        aekit.load(run)


@example(b"\x80\x04\x95")
@fuzz_settings(200)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_cifar_batch(data):
    from aekit.data.cifar import parse_batch, safe_unpickle

    try:
        parse_batch(safe_unpickle(data, source="b"), source="b")
    except DataError as err:
        assert "\n" not in str(err)


def test_pickle_payloads_are_live_in_plain_pickle(tmp_path):
    """The fuzzed pickles can reach code in plain pickle: the safe unpickler is what stops them."""
    from aekit.data.cifar import safe_unpickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.mkdir, (marker,))

    data = pickle.dumps(Payload(), protocol=4)
    with pytest.raises(DataError, match=r"asks for pathlib\.Path\.mkdir|asks for pathlib"):
        safe_unpickle(data, source="b")
    assert not marker.exists()
    pickle.loads(data)  # what the safe unpickler prevents
    assert marker.exists()


# -- found by the run-folder targets (metrics, run): bugs of aekit, not of the fuzzer ------------

def _run_folder(tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(targets.base_run("dense-ae"), run)
    return run


def test_a_number_with_more_digits_than_python_parses_is_skipped_or_refused(tmp_path):
    """json.loads raises a plain ValueError (not JSONDecodeError) for an integer of over 4,300
    digits (Python's int_max_str_digits): run metrics:19, run:10000005."""
    from aekit.run import Run

    run = _run_folder(tmp_path)
    huge = "9" * 5000
    (run / "metrics.jsonl").write_text(f'{{"epoch": 1}}\n{{"epoch": 2, "lr": {huge}}}\n{{"epoch": 3}}\n')
    assert [row["epoch"] for row in Run.open(run).history()] == [1, 3]  # the line is skipped, as any unreadable one
    (run / "test_metrics.json").write_text(f'{{"psnr": {huge}}}')
    with pytest.raises(CheckpointError, match="test_metrics.json") as raised:
        Run.open(run).test_metrics()
    assert "\n" not in str(raised.value)
    (run / "config.json").write_text((run / "config.json").read_text().replace('"epochs": 15', f'"epochs": {huge}'))
    with pytest.raises(CheckpointError, match="config.json"):
        Run.open(run)


def test_an_integer_beyond_floats_for_a_float_field_is_refused(tmp_path):
    """math.isfinite(10**400) raises OverflowError in config.check_value: run:30000563."""
    from aekit.run import Run

    run = _run_folder(tmp_path)
    raw = json.loads((run / "config.json").read_text())
    raw["train"]["lr"] = 10**400
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"config\.json: train: lr"):
        Run.open(run)


@pytest.mark.parametrize("where", ["metrics.jsonl", "test_metrics.json"])
def test_a_lone_surrogate_in_metrics_comes_back_as_utf_8(tmp_path, where):
    r"""json.loads turns "\ud800" into a lone surrogate, which the explorer's JSON answers cannot
    encode (GET /api/run answers 500 UnicodeEncodeError): metrics:20, run:10000016."""
    from aekit.run import Run

    run = _run_folder(tmp_path)
    text = '{"epoch": 1, "train": {"\\ud800": 1.0}, "note": "a\\udfffb"}'
    (run / where).write_text(text + "\n")
    opened = Run.open(run)
    value = opened.history() if where == "metrics.jsonl" else opened.test_metrics()
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # as starlette's JSONResponse renders it


def test_an_unknown_model_name_in_config_json_is_refused_naming_the_file(tmp_path):
    """Run.check() raised registry.lookup's ConfigError, which names no file: run:10000340."""
    from aekit.errors import AekitError
    from aekit.run import Run

    run = _run_folder(tmp_path)
    raw = json.loads((run / "config.json").read_text())
    raw["model"] = "no-such-model"
    (run / "config.json").write_text(json.dumps(raw))
    try:
        opened = Run.open(run)
    except AekitError as err:  # refusing it on opening is as good
        assert "config.json" in str(err)
        return
    with pytest.raises(AekitError, match="config.json"):
        opened.check()


def test_a_lone_surrogate_in_config_json_is_refused_or_comes_back_as_utf_8(tmp_path):
    r"""data.dataset "\ud800" is opened and the model loads; then GET /api/runs (the run's summary)
    and /api/run answer 500 UnicodeEncodeError: run:10000786."""
    from aekit.config import to_plain
    from aekit.errors import AekitError
    from aekit.run import Run

    run = _run_folder(tmp_path)
    (run / "config.json").write_text((run / "config.json").read_text().replace('"mnist-5k"', '"\\ud800"'))
    try:
        opened = Run.open(run)
    except AekitError as err:
        assert "config.json" in str(err) and "\n" not in str(err)
        return
    json.dumps(to_plain(opened.config), ensure_ascii=False).encode("utf-8")
