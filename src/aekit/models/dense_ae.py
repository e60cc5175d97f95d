"""A fully connected autoencoder: flatten, MLP down to the code, MLP back up."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..nn import MLP
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class DenseAEConfig:
    in_shape: tuple[int, int, int] = (1, 28, 28)
    hidden: tuple[int, ...] = (512, 256)  # two layers: enough to beat PCA clearly on MNIST
    latent_dim: int = 32  # 30-ish is the classic comparison with PCA (Hinton & Salakhutdinov 2006)
    recon_loss: str = "bce"  # per-pixel Bernoulli likelihood suits [0, 1] images such as MNIST


@register("dense-ae", DenseAEConfig)
class DenseAE(Autoencoder):
    """MLP autoencoder with any latent size."""

    def __init__(self, config: DenseAEConfig):
        super().__init__(config)
        n = math.prod(self.in_shape)
        self.encoder = MLP([n, *config.hidden, config.latent_dim])
        self.decoder = MLP([config.latent_dim, *reversed(config.hidden), n])

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return Posterior(self.encoder(x.flatten(1)))  # point mass at the code, (B, D)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z).view(-1, *self.out_shape)
