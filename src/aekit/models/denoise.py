"""``dn``: aekit's denoising model, a small U-Net on space-to-depth blocks.

The lesson denoises with its conv AE (``conv-ae``, still usable with ``--task denoise``); its
4x4x8 code has to describe the whole digit, so thin strokes come back blurred.  ``dn`` keeps
detail through skip connections, and runs its U-Net on 2x2 pixel blocks folded into channels
(space-to-depth, as FFDNet does: Zhang et al., "FFDNet", 2018): a 28x28 digit becomes 4 x
14 x 14, so every conv works on a quarter of the positions and the net affords 48-96 channels
and a receptive field that covers the whole digit, on a CPU.

Latent: the U-Net encoder's features at every level, flattened (the decoder's skip
connections need all of them).  It is large, 48 * 14 * 14 + 96 * 7 * 7 + 96 * 4 * 4 = 15,600
numbers for MNIST: this model is for cleaning images, not for latent-space plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..errors import ConfigError
from ..nn.unet import UNetDecoder, UNetEncoder, feature_shapes, pack, unpack
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class DenoiserConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    # U-Net widths per level, on the folded image: 14 -> 7 -> 4 for MNIST.  About 40M
    # multiply-adds per 28x28 image: two epochs of full MNIST fit in minutes on two CPU cores.
    channels: tuple[int, ...] = setting((48, 96, 96), minimum=1, maximum=MAX_WIDTH)
    # Side of the pixel blocks folded into channels; 1 runs the U-Net on the pixels themselves.
    block: int = setting(2, minimum=1, maximum=16)
    recon_loss: str = setting("bce", choices=RECON_LOSSES)

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> DenoiserConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # two narrow levels: still a U-Net with one skip connection
        sizes = {"channels": (16, 16)}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("dn", DenoiserConfig)
class Denoiser(Autoencoder):
    """U-Net denoiser on 2x2 space-to-depth blocks (aekit's default for --task denoise)."""

    def __init__(self, config: DenoiserConfig):
        super().__init__(config)
        c, h, w = self.in_shape
        b = config.block
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"dn.block must be a whole number of at least 1, got {b!r}")
        # Odd sides are padded up to whole blocks (replicating the border) and cropped after.
        self.padded = (math.ceil(h / b) * b, math.ceil(w / b) * b)
        folded = (c * b * b, self.padded[0] // b, self.padded[1] // b)
        self.code_shapes = feature_shapes(config.channels, folded[1], folded[2])
        self.encoder = UNetEncoder(folded[0], config.channels)
        self.decoder = UNetDecoder(config.channels)
        self.to_blocks = nn.Conv2d(config.channels[0], folded[0], 3, padding=1)

    @property
    def latent_dim(self) -> int:
        return sum(math.prod(shape) for shape in self.code_shapes)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        h, w = x.shape[-2:]
        ph, pw = self.padded
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        folded = F.pixel_unshuffle(x, self.config.block)  # (B, C * b * b, H / b, W / b)
        return Posterior(pack(self.encoder(folded)))  # (B, latent_dim)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        features = unpack(z, self.code_shapes)
        logits = F.pixel_shuffle(self.to_blocks(self.decoder(features)), self.config.block)
        _, h, w = self.out_shape
        return logits[..., :h, :w]  # (B, C, H, W)
