"""Corruptions for denoising, inpainting and super-resolution, as small pure functions.

All take and return (B, C, H, W) tensors in [0, 1] and draw randomness only from the
``torch.Generator`` passed in, so a run is reproducible from its seed and the same clean
batch gets fresh noise on every call.  Random numbers are drawn on the generator's device
and moved to the input's, so a CPU generator gives the same corruption for CPU and GPU data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def _rand(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma^2) per value, clipped to [0, 1]."""
    return (x + sigma * _randn(tuple(x.shape), generator, x)).clamp_(0.0, 1.0)


def lesson_noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The lesson's denoising corruption: x + N(0.5, 0.5^2), clipped to [0, 1].

    The mean of 0.5 is deliberate: it is the lesson's corruption, which brightens the image
    as well as perturbing it; keeping it lets results be compared with the lesson's.
    """
    return (x + 0.5 + 0.5 * _randn(tuple(x.shape), generator, x)).clamp_(0.0, 1.0)


def salt_pepper(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Each pixel, with probability p, becomes black or white (half each), in all its channels."""
    b, _, h, w = x.shape
    u = _rand((b, 1, h, w), generator, x)  # one draw per pixel, shared by its channels
    # u < p picks the pixel; within that, u < p/2 is pepper (0) and the rest salt (1).
    hit = u < p
    value = (u >= p / 2).to(x.dtype)
    return torch.where(hit, value, x)


def mask_pixels(x: torch.Tensor, p: float, generator: torch.Generator, patch: int = 1) -> torch.Tensor:
    """Zero a fraction p of pixels (all channels), or of ``patch`` x ``patch`` blocks on a grid."""
    if patch < 1:
        raise ConfigError(f"mask patch size must be at least 1, got {patch}")
    b, _, h, w = x.shape
    gh, gw = math.ceil(h / patch), math.ceil(w / patch)
    drop = _rand((b, 1, gh, gw), generator, x) < p  # (B, 1, gh, gw)
    if patch > 1:
        drop = drop.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[:, :, :h, :w]
    return x.masked_fill(drop, 0.0)


def downscale(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/factor, W/factor) by averaging factor x factor blocks.

    Block averaging is how a sensor with bigger pixels would see the scene, so a
    super-resolution model learns to undo exactly this and nothing else.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"downscale factor must be a whole number of at least 1, got {factor!r}")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ConfigError(
            f"cannot downscale {h}x{w} images by {factor}: both sides must be divisible by {factor}; "
            f"pass --image-size {max(factor, (h // factor) * factor)} or another multiple of {factor}"
        )
    return F.avg_pool2d(x, kernel_size=factor) if factor > 1 else x


NOISE_FORMS = (
    "gaussian:SIGMA (SIGMA > 0), lesson, salt-pepper:P (0 <= P <= 1), "
    "mask:P or mask:P:PATCH (0 <= P <= 1, PATCH >= 1)"
)


@dataclass(frozen=True)
class NoiseSpec:
    """A corruption named on the command line; ``str(spec)`` gives the spec back."""

    family: str  # "gaussian", "lesson", "salt-pepper" or "mask"
    value: float | None = None  # sigma for gaussian, p for salt-pepper and mask
    patch: int = 1  # mask only

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return _NOISES[self.family](x, self, generator)

    def __str__(self) -> str:
        if self.value is None:  # the lesson's noise has no parameter
            return self.family
        text = f"{self.family}:{self.value:g}"
        return f"{text}:{self.patch}" if self.patch != 1 else text


_NOISES = {
    "gaussian": lambda x, spec, gen: gaussian_noise(x, spec.value, gen),
    "lesson": lambda x, spec, gen: lesson_noise(x, gen),
    "salt-pepper": lambda x, spec, gen: salt_pepper(x, spec.value, gen),
    "mask": lambda x, spec, gen: mask_pixels(x, spec.value, gen, patch=spec.patch),
}


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``gaussian:0.5``, ``lesson``, ``salt-pepper:0.2``, ``mask:0.3`` or ``mask:0.3:4``."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"bad noise spec {spec!r} ({why}); valid forms: {NOISE_FORMS}")

    family, *args = spec.strip().lower().split(":")
    if family not in _NOISES:
        raise bad(f"unknown kind {family!r}")
    if family == "lesson":
        if args:
            raise bad("lesson takes no value")
        return NoiseSpec("lesson")
    probability = family != "gaussian"
    if not args or len(args) > (2 if family == "mask" else 1):
        raise bad(f"{family} takes {'a probability' if probability else 'a sigma'}")
    try:
        value = float(args[0])
    except ValueError:
        raise bad(f"{args[0]!r} is not a number") from None
    if not probability and not (value > 0 and math.isfinite(value)):
        raise bad("sigma must be a positive number")
    if probability and not 0 <= value <= 1:
        raise bad("the probability must be between 0 and 1")
    patch = 1
    if len(args) == 2:
        if not args[1].isdigit() or int(args[1]) < 1:
            raise bad(f"patch size {args[1]!r} is not a whole number of at least 1")
        patch = int(args[1])
    return NoiseSpec(family, value, patch)
