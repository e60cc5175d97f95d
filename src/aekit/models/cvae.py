"""``cvae``: a conditional VAE (Sohn et al., "Learning Structured Output Representation using
Deep Conditional Generative Models", 2015; Kingma et al. 2014, "M2").

The one-hot class label goes to both halves: the encoder's q(z|x, y) and the decoder's
p(x|z, y).  Because the decoder is told the class, the latent is free to code everything
else (slant, thickness, style), and ``model.sample(n, label=7)`` draws sevens in the styles
the prior holds.  The loss is the conv VAE's negative ELBO, reconstruction + beta * KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import ConvDecoder, ConvEncoder, spatial_chain
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class CVAEConfig:
    in_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10  # set from the dataset by api.train
    channels: tuple[int, ...] = (32, 64)  # as conv-vae: two stride-2 convs, 28 -> 14 -> 7
    hidden: int = 256  # dense layer where the label joins the image features
    latent_dim: int = 16  # the label carries the class, so the code only needs the style
    beta: float = 1.0  # weight of the KL term; 1.0 is the plain ELBO, >1 a beta-VAE
    recon_loss: str = "bce"


@register("cvae", CVAEConfig)
class ConditionalVAE(Autoencoder):
    """Conv VAE with the one-hot label joined to the encoder's and the decoder's dense layers."""

    variational = True
    generative = True
    conditional = True

    def __init__(self, config: CVAEConfig):
        super().__init__(config)
        if isinstance(config.num_classes, bool) or not isinstance(config.num_classes, int) or config.num_classes < 2:
            raise ConfigError(f"cvae needs num_classes of at least 2, got {config.num_classes!r}; "
                              "train it on a labelled dataset")
        c, h, w = self.in_shape
        levels = len(config.channels)
        if min(h, w) < 2**levels:
            raise ConfigError(
                f"cvae with {levels} stride-2 stages needs images of at least {2**levels}x{2**levels}, got {h}x{w}"
            )
        sizes = list(zip(spatial_chain(h, levels), spatial_chain(w, levels)))
        self.feature_shape = (config.channels[-1], *sizes[-1])  # (64, 7, 7) for MNIST
        features = math.prod(self.feature_shape)
        k = config.num_classes
        self.encoder = nn.Sequential(ConvEncoder(c, config.channels, downsample="stride"), nn.Flatten())
        self.enc_hidden = nn.Sequential(nn.Linear(features + k, config.hidden), nn.ReLU(inplace=True))
        self.mean = nn.Linear(config.hidden, config.latent_dim)
        self.logvar = nn.Linear(config.hidden, config.latent_dim)
        self.from_latent = nn.Sequential(
            nn.Linear(config.latent_dim + k, config.hidden), nn.ReLU(inplace=True),
            nn.Linear(config.hidden, features), nn.ReLU(inplace=True),
        )
        decoder_channels = [*reversed(config.channels[:-1]), max(config.channels[0] // 2, 1)]
        self.decoder = ConvDecoder(config.channels[-1], decoder_channels, c, sizes, upsample="transpose")

    def _one_hot(self, y: Tensor | None, n: int, like: Tensor) -> Tensor:
        self.check_labels(y, n)
        return F.one_hot(y, self.num_classes).to(like.dtype)  # (B, K)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        h = self.encoder(x)  # (B, features)
        h = self.enc_hidden(torch.cat([h, self._one_hot(y, x.shape[0], h)], dim=1))  # (B, hidden)
        return Posterior(self.mean(h), self.logvar(h))  # (B, D) each

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.from_latent(torch.cat([z, self._one_hot(y, z.shape[0], z)], dim=1))
        return self.decoder(h.view(-1, *self.feature_shape))  # (B, C, H, W)
