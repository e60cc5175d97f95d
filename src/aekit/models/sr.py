"""Super-resolution models: the small (area-downsampled) image in, the full-size image out.

``in_shape`` is the small input's shape and ``scale`` the enlargement, so ``out_shape`` is
(C, H * scale, W * scale).  ``api.train`` fills in both from ``--task super-resolution
--scale S``.  These models are deterministic: their posterior is a point mass whose mean is
everything the decoder needs (documented per model), so ``decode(encode(x).mode())`` is the
model's output and save/load/evaluate work as for any autoencoder.

- ``sr-lesson``: the lesson's layers (two convs on the small image, nearest upsampling, a conv
  to the image; by default one more full-size conv, see ``up_channels``), kept for comparison
  with the lesson.  The lesson reports about 16.5 dB at 2x on MNIST after three epochs, worse
  than bicubic; trained by aekit (BCE on logits, AdamW, cosine schedule) the same layers reach
  27.8 dB in three epochs (28.7 dB with the extra conv) against bicubic's 20.6 dB, so the
  lesson's figure is not reproduced here.
- ``sr``: aekit's default.  A U-Net on the small image predicts a correction to its bicubic
  enlargement (residual learning, as in Kim et al., "VDSR", 2016): most of the answer is
  already in the bicubic image, so the network starts from bicubic quality and only learns
  what interpolation gets wrong (sharp stroke edges, the shape of a digit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..errors import ConfigError
from ..nn.blocks import OutputConv2d
from ..nn.unet import UNetDecoder, UNetEncoder, conv_relu, feature_shapes, pack, unpack
from ..registry import register
from .base import Autoencoder, Posterior

# Bicubic pixels are clamped to [eps, 1 - eps] before the logit, so pure black or white stays
# finite (logit 0.01 = -4.6) and a small residual can still move a pixel either way.  The clamp
# costs the untrained model under 0.1 dB against bicubic; training removes it.
BICUBIC_EPS = 0.01


def _check_scale(name: str, scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"{name}.scale must be a whole number of at least 1, got {scale!r}; pass --scale 2 or 4")
    return scale


class _Upscaler(Autoencoder):
    """Shapes shared by the super-resolution models: the output is ``scale`` times the input."""

    def __init__(self, config):
        super().__init__(config)
        self.scale = _check_scale(self.registry_name, config.scale)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (c, h * self.scale, w * self.scale)


@dataclass
class SRLessonConfig:
    in_shape: tuple[int, int, int] = setting((1, 14, 14), minimum=1, maximum=MAX_SIDE)  # the small input: MNIST at 2x
    scale: int = setting(2, minimum=2, maximum=8)  # set by --scale
    channels: tuple[int, ...] = setting((64, 32), minimum=1, maximum=MAX_WIDTH)  # the lesson's two convs on the small image
    # One conv + ReLU at full size after the upsampling; 0 leaves it out (the bare lesson
    # layers).  Without it the output pixels of an upsampled block are linear in the same few
    # features, and fine detail is learnt slowly (it cannot fit one batch of noise in the
    # 300 steps of tests/test_models.py).
    up_channels: int = setting(32, minimum=0, maximum=MAX_WIDTH)
    recon_loss: str = setting("bce", choices=RECON_LOSSES)  # the lesson trains with binary cross-entropy

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> SRLessonConfig:
        """A small config for fast CPU tests; ``in_shape`` is the small input.

        ``overrides`` replace any other field.
        """
        # the lesson's convs, with a wider full-size conv: the bare layers fit one batch of noise
        # too slowly for tests/test_models.py's 300 steps (upsampled blocks share their features)
        sizes = {"up_channels": 64}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("sr-lesson", SRLessonConfig)
class SRLesson(_Upscaler):
    """The lesson's super-resolution layers: convs, nearest upsampling, convs to the image.

    Latent: the last conv's features on the small image, (channels[-1], h, w) flattened; the
    decoder is the upsampling and the convs after it.
    """

    def __init__(self, config: SRLessonConfig):
        super().__init__(config)
        c, h, w = self.in_shape
        layers: list[nn.Module] = []
        prev = c
        for ch in config.channels:
            layers.append(conv_relu(prev, ch))
            prev = ch
        self.encoder = nn.Sequential(*layers)
        self.code_shape = (prev, h, w)
        up: list[nn.Module] = [nn.Upsample(scale_factor=self.scale, mode="nearest")]
        if config.up_channels:
            up.append(conv_relu(prev, config.up_channels))
            prev = config.up_channels
        self.decoder = nn.Sequential(*up, OutputConv2d(prev, c, 3, padding=1))

    @property
    def latent_dim(self) -> int:
        return math.prod(self.code_shape)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return Posterior(self.encoder(x).flatten(1))  # (B, channels[-1] * h * w)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z.reshape(-1, *self.code_shape))  # (B, C, h * scale, w * scale)


@dataclass
class SRConfig:
    in_shape: tuple[int, int, int] = setting((1, 14, 14), minimum=1, maximum=MAX_SIDE)  # the small input: MNIST at 2x
    scale: int = setting(2, minimum=2, maximum=8)  # set by --scale
    # U-Net widths on the small image: 14 -> 7 -> 4 at 2x on MNIST.  The work happens at the
    # small size, where it is cheap; three levels see the whole digit.
    channels: tuple[int, ...] = setting((64, 64, 64), minimum=1, maximum=MAX_WIDTH)
    # Channels per output pixel after the sub-pixel (pixel-shuffle) upsampling; the two
    # full-resolution convs that refine the bicubic image work at this width.
    tail: int = setting(16, minimum=1, maximum=MAX_WIDTH)
    recon_loss: str = setting("bce", choices=RECON_LOSSES)  # logits in, so the residual lives in logit space

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> SRConfig:
        """A small config for fast CPU tests; ``in_shape`` is the small input.

        ``overrides`` replace any other field.
        """
        # two narrow U-Net levels and a narrow full-size tail
        sizes = {"channels": (16, 16), "tail": 8}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("sr", SRConfig)
class SuperResolution(_Upscaler):
    """aekit's super-resolution net: a U-Net correction to the bicubic enlargement.

    Output logits = logit(bicubic(x)) + residual, where the residual comes from U-Net features
    of the small image, moved to full resolution by sub-pixel convolution (Shi et al.,
    "ESPCN", 2016) and refined together with the bicubic image by two 3x3 convs.  The last
    conv starts at zero, so an untrained model outputs bicubic interpolation.

    Latent: the small image itself followed by the U-Net encoder's features at every level,
    flattened (the decoder needs all of them: the image for the bicubic path, the levels for
    the skip connections).  It is large, (1 + 64) * 14 * 14 + ... for MNIST at 2x: this
    model is for enlarging images, not for latent-space plots.
    """

    def __init__(self, config: SRConfig):
        super().__init__(config)
        c, h, w = self.in_shape
        s = self.scale
        self.encoder = UNetEncoder(c, config.channels)
        self.decoder = UNetDecoder(config.channels)
        self.code_shapes = [(c, h, w), *feature_shapes(config.channels, h, w)]
        self.to_subpixels = nn.Conv2d(config.channels[0], config.tail * s * s, 3, padding=1)
        self.refine = nn.Sequential(conv_relu(config.tail + c, config.tail), OutputConv2d(config.tail, c, 3, padding=1))
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    @property
    def latent_dim(self) -> int:
        return sum(math.prod(shape) for shape in self.code_shapes)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return Posterior(pack([x, *self.encoder(x)]))  # (B, latent_dim)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        x, *features = unpack(z, self.code_shapes)
        bicubic = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        bicubic = bicubic.clamp(BICUBIC_EPS, 1.0 - BICUBIC_EPS)  # (B, C, H, W)
        sub = F.relu(F.pixel_shuffle(self.to_subpixels(self.decoder(features)), self.scale))  # (B, tail, H, W)
        return torch.logit(bicubic) + self.refine(torch.cat([sub, bicubic], dim=1))
