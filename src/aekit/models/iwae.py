"""The importance-weighted autoencoder: the conv VAE trained on a tighter bound.

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (2016).  With K codes
z_k ~ q(z|x) per image, the loss is the negative of

    log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)

which equals the ELBO at K = 1 and approaches log p(x) as K grows.  The encoder is no longer
pushed to cover only where the ELBO is cheap, so the model reaches a better likelihood; the
price is K decodes per image in training.  Architecture, prior options and everything else
are the conv VAE's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import setting
from ..registry import register
from .base import Batch, Losses, Output, reconstruction_loss
from .vae import ConvVAE, ConvVAEConfig


@dataclass
class IWAEConfig(ConvVAEConfig):
    # K: 5 gains most of the bound's improvement for 5x the decoding work; the paper's best used 50
    samples: int = setting(5, minimum=1, maximum=5000)


@register("iwae", IWAEConfig)
class IWAE(ConvVAE):
    """The conv VAE trained on the importance-weighted bound with K samples per image."""

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> Output:
        posterior = self.encode(batch.x, batch.y)
        b, d = posterior.mean.shape
        k = self.config.samples
        eps = torch.randn((k, b, d), generator=generator, device=batch.x.device, dtype=posterior.mean.dtype)
        z = posterior.mean.unsqueeze(0) + posterior.std.unsqueeze(0) * eps  # (K, B, D), reparameterised
        log_weights = self.log_weights(batch.target, batch.y, posterior, z)  # (K, B)
        # the first code of each image stands for "the" sample where one is shown or scored
        return Output(logits=self.decode_logits(z[0], batch.y), posterior=posterior, z=z[0],
                      log_weights=log_weights)

    def loss(self, batch: Batch, out: Output) -> Losses:
        recon = reconstruction_loss(out.logits, batch.target, self.config.recon_loss).mean()
        kl = self.kl(out.posterior, out.z).mean()
        return Losses(total=-self.iwae_bound(out).mean(), parts={"recon": recon, "kl": kl})

    @staticmethod
    def iwae_bound(out: Output) -> Tensor:
        """The K-sample bound per image, in nats.  (B,)"""
        return torch.logsumexp(out.log_weights, dim=0) - math.log(out.log_weights.shape[0])
