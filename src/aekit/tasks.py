"""What a model learns to map from and to.

``reconstruct``: the input is the target (the plain autoencoder).  ``denoise``: a corrupted
copy goes in, the clean image is the target; the noise is drawn fresh for every batch.
``super-resolution``: an area-downsampled copy goes in, the full-size image is the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError
from .models.base import Batch

TASKS = ("reconstruct", "denoise", "super-resolution")


@dataclass
class Task:
    kind: str = "reconstruct"
    noise: Any = None  # a NoiseSpec for denoise
    scale: int | None = None  # for super-resolution

    def input_shape(self, target_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = target_shape
        if self.kind == "super-resolution":
            if h % self.scale or w % self.scale:
                raise ConfigError(
                    f"super-resolution by {self.scale} needs image sides divisible by {self.scale}, "
                    f"got {h}x{w}; pass --image-size {h - h % self.scale}"
                )
            return (c, h // self.scale, w // self.scale)
        return target_shape

    def corrupt(self, clean: Tensor, generator: torch.Generator | None) -> Tensor:
        """The model's input for clean images (B, C, H, W)."""
        if self.kind == "denoise":
            return self.noise.apply(clean, generator)
        if self.kind == "super-resolution":
            from .data.corrupt import downscale

            return downscale(clean, self.scale)
        return clean

    def make_batch(self, clean: Tensor, labels: Tensor | None, generator: torch.Generator | None) -> Batch:
        return Batch(x=self.corrupt(clean, generator), target=clean, y=labels)

    def describe(self) -> str:
        if self.kind == "denoise":
            return f"denoise ({self.noise})"
        if self.kind == "super-resolution":
            return f"super-resolution x{self.scale}"
        return "reconstruct"


def make_task(kind: str = "reconstruct", noise: str | None = None, scale: int | None = None) -> Task:
    if kind not in TASKS:
        raise ConfigError(f"unknown task {kind!r}; choose one of: {', '.join(TASKS)}")
    if kind == "denoise":
        from .data.corrupt import parse_noise

        return Task(kind, noise=parse_noise(noise or "gaussian:0.5"))
    if noise:
        raise ConfigError("--noise only applies to --task denoise")
    if kind == "super-resolution":
        scale = scale or 2
        if scale not in (2, 3, 4, 8):
            raise ConfigError(f"--scale must be 2, 3, 4 or 8, got {scale}")
        return Task(kind, scale=scale)
    if scale:
        raise ConfigError("--scale only applies to --task super-resolution")
    return Task(kind)
