"""``cvae``: a conditional VAE (Sohn et al., "Learning Structured Output Representation using
Deep Conditional Generative Models", 2015; Kingma et al. 2014, "M2").

The one-hot class label goes to both halves: the encoder's q(z|x, y) and the decoder's
p(x|z, y).  Because the decoder is told the class, the latent is free to code everything
else (slant, thickness, style), and ``model.sample(n, label=7)`` draws sevens in the styles
the prior holds.  The loss is the conv VAE's negative ELBO, reconstruction + beta * KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..errors import ConfigError
from ..nn import ConvTrunk
from ..registry import register
from .base import Autoencoder, Posterior


@dataclass
class CVAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    num_classes: int = setting(10, minimum=2, maximum=100_000)  # set from the dataset at training
    channels: tuple[int, ...] = setting((32, 64), minimum=1, maximum=MAX_WIDTH)  # as conv-vae: two stride-2 convs, 28 -> 14 -> 7
    hidden: int = setting(256, minimum=1, maximum=MAX_WIDTH)  # dense layer where the label joins the image features
    latent_dim: int = setting(16, minimum=1, maximum=MAX_WIDTH)  # the label carries the class, so the code only needs the style
    beta: float = setting(1.0, minimum=0.0)  # weight of the KL term; 1.0 is the plain ELBO, >1 a beta-VAE
    recon_loss: str = setting("bce", choices=RECON_LOSSES)

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> CVAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # narrow stages and a 2-D style code (the label carries the class); three classes, so
        # label checks have one in the middle
        sizes = {"num_classes": 3, "channels": (8, 16), "hidden": 32, "latent_dim": 2}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


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
        trunk = ConvTrunk(self.in_shape, config.channels, owner=self.registry_name)
        self.feature_shape = trunk.feature_shape  # (64, 7, 7) for MNIST
        k = config.num_classes
        self.encoder = trunk.encoder()  # (B, features): the label joins after the convs
        self.enc_hidden = nn.Sequential(nn.Linear(trunk.features + k, config.hidden), nn.ReLU(inplace=True))
        self.mean = nn.Linear(config.hidden, config.latent_dim)
        self.logvar = nn.Linear(config.hidden, config.latent_dim)
        self.from_latent = trunk.from_latent(config.latent_dim + k, config.hidden)
        self.decoder = trunk.decoder()

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
