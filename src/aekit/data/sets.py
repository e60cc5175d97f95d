"""The containers every loader returns, and the seeded split that fills them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError


@dataclass
class ImageSet:
    """Images and (optionally) their labels, ready for a model.

    ``images`` is (N, C, H, W) float32 in [0, 1] and contiguous; ``labels`` is (N,) int64, or
    None for an unlabelled set (a folder of images without class subfolders).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    # True for a set whose images are probabilities to draw binary pixels from, afresh for every
    # batch (dynamically binarised MNIST): see :meth:`draw`.
    binarize: bool = False

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.dtype != torch.float32:
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"ImageSet.images must be a float32 tensor (N, C, H, W), got {got}")
        if y is not None and (
            not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.dtype != torch.int64
        ):
            got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise DataError(
                f"ImageSet.labels must be an int64 tensor of shape ({x.shape[0]},) or None, got {got}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def items(self) -> torch.Tensor:
        """What the trainer slices batches from, whatever the kind of data: here the images."""
        return self.images

    def draw(self, batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A training batch as the model should see it: 0/1 pixels drawn with ``generator`` for
        a binarised set, the images themselves otherwise.  (B, C, H, W)"""
        return torch.bernoulli(batch, generator=generator) if self.binarize else batch

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image; a streamed set has the same property."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))


@dataclass
class DatasetSplits:
    """A named dataset split three ways; ``classes[i]`` names label ``i`` (empty if unlabelled)."""

    name: str
    train: ImageSet  # or a StreamingImageSet (aekit.data.stream) for folders read from disk
    val: ImageSet
    test: ImageSet
    classes: list[str]

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return self.train.item_shape  # the train split may be streamed (no images tensor)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) for ``n`` items: rounded, but never 0 for a fraction above 0.

    A split the caller asked for stays non-empty, so a validation loss is always defined.
    """
    n_val = int(n * val_fraction + 0.5) if val_fraction > 0 else 0
    n_test = int(n * test_fraction + 0.5) if test_fraction > 0 else 0
    return max(n_val, 1 if val_fraction > 0 else 0), max(n_test, 1 if test_fraction > 0 else 0)


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of all indices in which every prefix holds the classes in proportion.

    Each item gets the key (rank within its class + 0.5) / class size, with ranks drawn at
    random; sorting by that key interleaves the classes evenly (systematic stratified
    sampling).  Cutting the order anywhere then gives stratified splits of exact total sizes,
    even when a class is too small for per-class rounding to give it a share.
    """
    n = len(labels)
    perm = rng.permutation(n)
    lab = labels[perm]
    counts = np.bincount(lab)
    by_class = np.argsort(lab, kind="stable")  # stable: keeps the random order within a class
    starts = np.cumsum(counts) - counts
    ranks = np.empty(n, dtype=np.float64)
    ranks[by_class] = np.arange(n) - np.repeat(starts, counts)
    key = (ranks + 0.5) / counts[lab]
    return perm[np.argsort(key, kind="stable")]


def split_indices(
    n: int,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, val, test) index arrays over ``range(n)``, stratified when labels are given.

    The same seed always gives the same split (numpy's PCG64 via ``default_rng``); each split
    comes back shuffled so that no consumer sees the classes in blocks.
    """
    rng = np.random.default_rng(seed)
    n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    if n_val + n_test >= n:
        raise DataError(
            f"{n} images are too few to hold out {n_val} for validation and {n_test} for testing "
            "and still train on some; add images or lower val_fraction"
        )
    order = stratified_order(labels, rng) if labels is not None else rng.permutation(n)
    test = order[:n_test]
    val = order[n_test : n_test + n_val]
    train = order[n_test + n_val :]
    return rng.permutation(train), rng.permutation(val), rng.permutation(test)
