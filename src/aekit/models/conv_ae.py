"""The lesson's convolutional autoencoder.

Encoder: three 3x3 conv + ReLU + 2x2 max-pool stages with 16, 8 and 8 channels, taking a
28x28 digit to a 4x4x8 code (128 numbers).  Decoder: the mirror, conv + ReLU + upsampling
with 8, 8 and 16 channels, then a 3x3 conv to the image and a sigmoid.

One difference from the lesson's Keras layers: the lesson upsamples 4 -> 8 -> 16 and uses an
unpadded conv to get from 16 to 14.  Here each upsampling step returns to the size its
encoder stage started from (4 -> 7 -> 14 -> 28), which has the same layers and parameter
count and works for any image size, not only 28.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..nn import ConvDecoder, ConvEncoder, halving_sizes
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class ConvAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    channels: tuple[int, ...] = setting((16, 8, 8), minimum=1, maximum=MAX_WIDTH)  # the lesson's encoder; the decoder mirrors it
    # 0 keeps the lesson's 4x4x8 conv code; any other value adds a dense bottleneck of that
    # size (the lesson's Task 1 uses 2, so codes can be plotted directly).
    latent_dim: int = setting(0, minimum=0, maximum=MAX_WIDTH)
    recon_loss: str = setting("bce", choices=RECON_LOSSES)  # the lesson trains with binary cross-entropy

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> ConvAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # three 8-channel stages and a dense 8-D code; latent_dim=0 keeps the lesson's conv code
        sizes = {"channels": (8, 8, 8), "latent_dim": 8}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("conv-ae", ConvAEConfig)
class ConvAE(Autoencoder):
    """The lesson's conv autoencoder (16-8-8 to a 4x4x8 code), optionally with a dense bottleneck."""

    # Measured on full MNIST (README, "Time to quality"): at batch 64, a peak rate of 3e-3
    # reaches the lesson's 30-epoch BCE (0.104 per pixel) in 4 epochs, and 0.0953 in 10, where
    # 1e-3 needs more than 10; these few thousand weights take the larger steps without diverging.
    train_defaults = MappingProxyType({"lr": 3e-3})

    def __init__(self, config: ConvAEConfig):
        super().__init__(config)
        c, h, w = self.in_shape
        self.sizes = halving_sizes(h, w, len(config.channels), owner=self.registry_name, stage="pooling")
        self.code_shape = (config.channels[-1], *self.sizes[-1])  # (8, 4, 4) for MNIST
        self.encoder = ConvEncoder(c, config.channels, downsample="pool")
        # The lesson's decoder convs have 8, 8, 16 channels for encoder channels 16, 8, 8.
        decoder_channels = list(reversed(config.channels))
        self.decoder = ConvDecoder(config.channels[-1], decoder_channels, c, self.sizes, upsample="nearest")
        code_size = math.prod(self.code_shape)
        if config.latent_dim:
            self.to_latent = nn.Linear(code_size, config.latent_dim)
            self.from_latent = nn.Sequential(nn.Linear(config.latent_dim, code_size), nn.ReLU(inplace=True))
        else:
            self.to_latent = self.from_latent = None

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim or math.prod(self.code_shape)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        h = self.encoder(x).flatten(1)  # (B, 128) for MNIST
        if self.to_latent is not None:
            h = self.to_latent(h)  # (B, latent_dim)
        return Posterior(h)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.from_latent is not None:
            z = self.from_latent(z)
        return self.decoder(z.reshape(-1, *self.code_shape))
