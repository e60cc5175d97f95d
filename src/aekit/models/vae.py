"""Variational autoencoders: the lesson's fully connected VAE and its convolutional one.

The encoder gives the mean and the log-variance of q(z|x); training decodes a reparameterised
sample z = mean + exp(logvar / 2) * eps, and the loss is the negative ELBO in nats per image:
reconstruction (a Bernoulli log-likelihood summed over pixels) + beta * KL(q(z|x) || N(0, I)).
Kingma & Welling, "Auto-Encoding Variational Bayes" (2014), appendix B for the KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from ..errors import ConfigError
from ..nn import MLP, ConvDecoder, ConvEncoder, spatial_chain
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class VAEConfig:
    in_shape: tuple[int, int, int] = (1, 28, 28)
    hidden: tuple[int, ...] = (512,)  # the lesson's 784-512-latent encoder
    latent_dim: int = 2  # the lesson's: codes can be plotted directly
    beta: float = 1.0  # weight of the KL term; 1.0 is the plain ELBO, >1 a beta-VAE
    recon_loss: str = "bce"


class _GaussianHeads(nn.Module):
    """Two linear heads from features to the posterior's mean and log-variance."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, h: Tensor) -> Posterior:
        return Posterior(self.mean(h), self.logvar(h))  # (B, D) each


@register("vae", VAEConfig)
class VAE(Autoencoder):
    """The lesson's fully connected VAE: 784-512-latent, Gaussian posterior, Bernoulli decoder."""

    variational = True
    generative = True

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        n = math.prod(self.in_shape)
        self.encoder = nn.Sequential(MLP([n, *config.hidden]), nn.ReLU(inplace=True))
        self.heads = _GaussianHeads(config.hidden[-1], config.latent_dim)
        self.decoder = MLP([config.latent_dim, *reversed(config.hidden), n])

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return self.heads(self.encoder(x.flatten(1)))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z).view(-1, *self.out_shape)


@dataclass
class ConvVAEConfig:
    in_shape: tuple[int, int, int] = (1, 28, 28)
    channels: tuple[int, ...] = (32, 64)  # two stride-2 convs: 28 -> 14 -> 7
    hidden: int = 256  # dense layer between the conv features and the Gaussian heads
    latent_dim: int = 16  # sharp reconstructions on MNIST; use 2 for plots you can read directly
    beta: float = 1.0  # weight of the KL term; 1.0 is the plain ELBO
    recon_loss: str = "bce"


@register("conv-vae", ConvVAEConfig)
class ConvVAE(Autoencoder):
    """The lesson's assignment: conv encoder, dense mean/log-variance heads, conv decoder."""

    variational = True
    generative = True

    def __init__(self, config: ConvVAEConfig):
        super().__init__(config)
        c, h, w = self.in_shape
        levels = len(config.channels)
        if min(h, w) < 2**levels:
            raise ConfigError(
                f"conv-vae with {levels} stride-2 stages needs images of at least {2**levels}x{2**levels}, got {h}x{w}"
            )
        sizes = list(zip(spatial_chain(h, levels), spatial_chain(w, levels)))
        self.feature_shape = (config.channels[-1], *sizes[-1])  # (64, 7, 7) for MNIST
        features = math.prod(self.feature_shape)
        self.encoder = nn.Sequential(
            ConvEncoder(c, config.channels, downsample="stride"), nn.Flatten(),
            nn.Linear(features, config.hidden), nn.ReLU(inplace=True),
        )
        self.heads = _GaussianHeads(config.hidden, config.latent_dim)
        self.from_latent = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden), nn.ReLU(inplace=True),
            nn.Linear(config.hidden, features), nn.ReLU(inplace=True),
        )
        # Upsampling steps narrow as they grow (64 -> 32 -> 16 channels for the defaults), so
        # the full-resolution layers, where most of the arithmetic is, stay cheap.
        decoder_channels = [*reversed(config.channels[:-1]), max(config.channels[0] // 2, 1)]
        self.decoder = ConvDecoder(config.channels[-1], decoder_channels, c, sizes, upsample="transpose")

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return self.heads(self.encoder(x))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.feature_shape))
