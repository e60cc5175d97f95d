"""Variational autoencoders: the lesson's fully connected VAE and its convolutional one.

The encoder gives the mean and the log-variance of q(z|x); training decodes a reparameterised
sample z = mean + exp(logvar / 2) * eps, and the loss is the negative ELBO in nats per image:
reconstruction (a Bernoulli log-likelihood summed over pixels) + beta * KL(q(z|x) || N(0, I)).
Kingma & Welling, "Auto-Encoding Variational Bayes" (2014), appendix B for the KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..nn import MLP, ConvTrunk
from ..registry import register
from ._priors import PRIORS, PriorChoice
from .base import Autoencoder, Posterior


@dataclass
class VAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    hidden: tuple[int, ...] = setting((512,), minimum=1, maximum=MAX_WIDTH)  # the lesson's 784-512-latent encoder
    latent_dim: int = setting(2, minimum=1, maximum=MAX_WIDTH)  # the lesson's: codes can be plotted directly
    beta: float = setting(1.0, minimum=0.0)  # weight of the KL term; 1.0 is the plain ELBO, >1 a beta-VAE
    recon_loss: str = setting("bce", choices=RECON_LOSSES)
    prior: str = setting("normal", choices=PRIORS)  # "vamp": a learned mixture of posteriors (models/_priors.py)
    pseudo_inputs: int = setting(500, minimum=1, maximum=10_000)  # the VampPrior's components (Tomczak & Welling)

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> VAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # one 64-wide layer and a 2-D code, as in the lesson
        sizes = {"hidden": (64,), "latent_dim": 2}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


class _GaussianHeads(nn.Module):
    """Two linear heads from features to the posterior's mean and log-variance."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.mean = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, h: Tensor) -> Posterior:
        return Posterior(self.mean(h), self.logvar(h))  # (B, D) each


@register("vae", VAEConfig)
class VAE(PriorChoice, Autoencoder):
    """The lesson's fully connected VAE: 784-512-latent, Gaussian posterior, Bernoulli decoder."""

    variational = True
    generative = True

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        n = math.prod(self.in_shape)
        self.encoder = nn.Sequential(MLP([n, *config.hidden]), nn.ReLU(inplace=True))
        self.heads = _GaussianHeads(config.hidden[-1], config.latent_dim)
        self.decoder = MLP([config.latent_dim, *reversed(config.hidden), n])
        self.build_prior()

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return self.heads(self.encoder(x.flatten(1)))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z).view(-1, *self.out_shape)


@dataclass
class ConvVAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    channels: tuple[int, ...] = setting((32, 64), minimum=1, maximum=MAX_WIDTH)  # two stride-2 convs: 28 -> 14 -> 7
    hidden: int = setting(256, minimum=1, maximum=MAX_WIDTH)  # dense layer between the conv features and the Gaussian heads
    latent_dim: int = setting(16, minimum=1, maximum=MAX_WIDTH)  # sharp reconstructions on MNIST; use 2 for plots you can read directly
    beta: float = setting(1.0, minimum=0.0)  # weight of the KL term; 1.0 is the plain ELBO
    recon_loss: str = setting("bce", choices=RECON_LOSSES)
    prior: str = setting("normal", choices=PRIORS)  # "vamp": a learned mixture of posteriors (models/_priors.py)
    pseudo_inputs: int = setting(500, minimum=1, maximum=10_000)  # the VampPrior's components (Tomczak & Welling)

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> ConvVAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # two narrow stride-2 stages and a 4-D code
        sizes = {"channels": (8, 16), "hidden": 32, "latent_dim": 4}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("conv-vae", ConvVAEConfig)
class ConvVAE(PriorChoice, Autoencoder):
    """The lesson's assignment: conv encoder, dense mean/log-variance heads, conv decoder."""

    variational = True
    generative = True
    # Measured (README, "Time to quality"): the default `aekit train` (mnist-5k, 15 epochs of
    # batch 64, about 1,000 steps) ends at test ELBO -117.7 with a peak rate of 2e-3 against
    # -124.3 with 1e-3, in the same time; 5e-3 is worse again (-120.6). On full MNIST, 2e-3 is
    # also ahead after 2 epochs (-107.1 against -108.4).
    train_defaults = MappingProxyType({"lr": 2e-3})

    def __init__(self, config: ConvVAEConfig):
        super().__init__(config)
        trunk = ConvTrunk(self.in_shape, config.channels, owner=self.registry_name)
        self.feature_shape = trunk.feature_shape  # (64, 7, 7) for MNIST
        self.encoder = trunk.encoder([config.hidden])  # (B, hidden)
        self.heads = _GaussianHeads(config.hidden, config.latent_dim)
        self.from_latent = trunk.from_latent(config.latent_dim, config.hidden)
        self.decoder = trunk.decoder()
        self.build_prior()

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return self.heads(self.encoder(x))

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.feature_shape))
