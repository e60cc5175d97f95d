"""``super-resolution``: an area-downsampled copy goes in, the full-size image is the target.

A super-resolution model has to beat nearest, bilinear and bicubic enlargement of the very
same small images.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from . import register_task
from .base import Task

log = logging.getLogger(__name__)

SCALES = (2, 3, 4, 8)
DEFAULT_SCALE = 2


@register_task
class SuperResolution(Task):
    name = "super-resolution"
    default_model = "sr"  # models/sr.py: a residual network with a pixel-shuffle tail
    apply_command = "upscale"
    train_hint = f"aekit train --task super-resolution --scale {DEFAULT_SCALE}"

    def __init__(self, scale: int):
        self.scale = scale

    @classmethod
    def from_options(cls, *, noise=None, scale=None) -> SuperResolution:
        if noise:
            raise ConfigError("--noise only applies to --task denoise")
        scale = scale or DEFAULT_SCALE
        if scale not in SCALES:
            raise ConfigError(f"--scale must be {', '.join(map(str, SCALES[:-1]))} or {SCALES[-1]}, got {scale}")
        return cls(scale)

    def options(self) -> dict[str, Any]:
        return {"noise": None, "scale": self.scale}

    def input_shape(self, target_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = target_shape
        if h % self.scale or w % self.scale:
            raise ConfigError(
                f"super-resolution by {self.scale} needs image sides divisible by {self.scale}, "
                f"got {h}x{w}; pass --image-size {h - h % self.scale}"
            )
        return (c, h // self.scale, w // self.scale)

    def model_options(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def corrupt(self, clean: Tensor, generator: torch.Generator | None) -> Tensor:
        from ..data.corrupt import downscale

        return downscale(clean, self.scale)

    def baselines(self, val_set, test_set, *, seed: int = 0, max_images: int | None = None,
                  max_tuning_images: int | None = None) -> dict[str, dict[str, Any]]:
        """"nearest", "bilinear", "bicubic" enlargements of the small inputs, with "n" images."""
        from ..eval.baselines import evaluate_upsamplers

        n = len(test_set) if max_images is None else min(len(test_set), max_images)
        clean_test = test_set.images[:n].cpu()
        results = evaluate_upsamplers(self.fixed_inputs(clean_test, seed=seed), clean_test, self.scale)
        for row in results.values():
            row["n"] = n
        return results

    def describe(self) -> str:
        return f"super-resolution x{self.scale}"
