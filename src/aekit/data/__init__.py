"""aekit's data layer: datasets by name, file formats, and corruptions.

``load_dataset(name)`` returns seeded train / val / test :class:`ImageSet` s of float32
(N, C, H, W) images in [0, 1] (for melodies, :class:`~aekit.data.melodies.MelodySet` s of
(N, T) class indices); :data:`DATASETS` lists the names.  Corruptions in
:mod:`aekit.data.corrupt` are pure functions on such tensors.
"""

from .corrupt import (
    NoiseSpec,
    downscale,
    gaussian_noise,
    lesson_noise,
    mask_pixels,
    parse_noise,
    salt_pepper,
)
from .datasets import DATASETS, load_dataset
from .fetch import cache_dir, cache_root
from .idx import read_idx_images, read_idx_labels, read_idx_pair, write_idx
from .images import MAX_PIXELS, load_image, save_image
from .sets import DatasetSplits, ImageSet

__all__ = [
    "DATASETS",
    "MAX_PIXELS",
    "DatasetSplits",
    "ImageSet",
    "NoiseSpec",
    "cache_dir",
    "cache_root",
    "downscale",
    "gaussian_noise",
    "lesson_noise",
    "load_dataset",
    "load_image",
    "mask_pixels",
    "parse_noise",
    "read_idx_images",
    "read_idx_labels",
    "read_idx_pair",
    "salt_pepper",
    "save_image",
    "write_idx",
]
