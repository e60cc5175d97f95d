"""A folder of images read from disk while training, for folders too large to hold in memory.

:class:`StreamingImageSet` is a torch ``Dataset`` over a folder's file list: each item is
decoded when a DataLoader worker asks for it, with the same per-file decoder, size and
channels as the in-memory loader (:func:`aekit.data.folder.decode_file` under a shared
:class:`~aekit.data.folder.FolderPlan`), so streaming changes memory use, not the pixels.

Memory stays bounded by what is in flight (workers x prefetch x batch), not by the folder.
The file list is one numpy array of fixed-width strings rather than a list of ``Path``
objects: forked workers read it without touching Python reference counts, so its pages stay
shared with the parent instead of being copied into every worker (the well-known DataLoader
"memory leak" of Python lists).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from .folder import FolderPlan, decode_file
from .sets import ImageSet

log = logging.getLogger(__name__)

# Decoded size above which `folder:PATH` streams by default (--stream / --no-stream override).
STREAM_THRESHOLD_BYTES = 1 << 30  # 1 GiB: well inside a laptop's memory, yet past any quick experiment
# When streaming, the validation and test splits are still decoded into memory (the loop and
# the metrics slice tensors), but at most this much of each: a random subset of the split.
EVAL_SPLIT_MAX_BYTES = 256 << 20

UNLABELLED = -1  # the label a streamed item of an unlabelled folder carries (collate needs a number)


class StreamingImageSet(Dataset):
    """Images of ``plan`` at ``indices``, decoded on demand: ``(image (C, H, W) float32, label int)``.

    ``labels`` is an int64 tensor (N,) or None, as for :class:`~aekit.data.sets.ImageSet`;
    ``item_shape`` is (C, H, W).  There is no ``images`` tensor: that absence is what tells the
    trainer to read this set through a DataLoader.
    """

    def __init__(self, plan: FolderPlan, indices: np.ndarray):
        self.root = str(plan.root)
        # Paths relative to the root keep the fixed-width array small (UTF-32: 4 bytes a character).
        self._names = np.array([str(plan.files[i].relative_to(plan.root)) for i in indices])
        self.labels = None if plan.labels is None else torch.from_numpy(plan.labels[indices].astype(np.int64))
        self.channels = plan.channels
        self.size = tuple(plan.size)
        self.max_pixels = plan.max_pixels

    def __len__(self) -> int:
        return len(self._names)

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def path(self, i: int) -> str:
        return f"{self.root}/{self._names[i]}"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # A file that fails to decode here raises DataError naming it: unlike the in-memory
        # loader, a stream cannot drop an item once the epoch's order is fixed.
        x = decode_file(self.path(i), channels=self.channels, size=self.size, max_pixels=self.max_pixels)
        y = UNLABELLED if self.labels is None else int(self.labels[i])
        return torch.from_numpy(x), y

    def load(self, limit: int | None = None) -> ImageSet:
        """Decode the first ``limit`` items (all by default) into an in-memory ImageSet."""
        n = len(self) if limit is None else min(limit, len(self))
        images = torch.empty((n, *self.item_shape), dtype=torch.float32)
        for i in range(n):
            images[i] = self[i][0]
        return ImageSet(images, None if self.labels is None else self.labels[:n].clone())


def should_stream(stream: bool | None, plan: FolderPlan) -> bool:
    """``stream`` when given, else whether the decoded folder would exceed STREAM_THRESHOLD_BYTES."""
    if stream is not None:
        return stream
    if plan.decoded_bytes > STREAM_THRESHOLD_BYTES:
        log.info("%s decodes to %.1f GiB, above %.1f GiB: streaming it from disk", plan.root,
                 plan.decoded_bytes / 2**30, STREAM_THRESHOLD_BYTES / 2**30)
        return True
    return False


def streaming_splits(plan: FolderPlan, train: np.ndarray, val: np.ndarray, test: np.ndarray
                     ) -> tuple[StreamingImageSet, ImageSet, ImageSet]:
    """The train split streamed; val and test decoded now, each capped at EVAL_SPLIT_MAX_BYTES."""
    per_image = plan.decoded_bytes // max(len(plan.files), 1)
    cap = max(1, EVAL_SPLIT_MAX_BYTES // max(per_image, 1))
    held_out = []
    for name, idx in (("validation", val), ("test", test)):
        if len(idx) > cap:
            # The split order is already a seeded shuffle, so its first `cap` items are a random subset.
            log.warning("streaming: using %d of the %d %s images (%d MiB in memory)", cap, len(idx), name,
                        EVAL_SPLIT_MAX_BYTES >> 20)
        held_out.append(StreamingImageSet(plan, idx).load(cap))
    return StreamingImageSet(plan, train), held_out[0], held_out[1]
