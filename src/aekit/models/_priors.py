"""Priors other than N(0, I) that the VAE families can take: ``prior="vamp"`` in their config.

The VampPrior (Tomczak & Welling, "VAE with a VampPrior", 2018) is the mixture of the
encoder's own posteriors at K learned pseudo-inputs u_k:

    p(z) = (1/K) sum_k q(z | u_k)

It is learned with the rest of the model, so the prior moves to where the codes are.  The KL
term has no closed form any more: the loss uses the one-sample estimate log q(z|x) - log p(z)
at the drawn z, whose expectation is the KL.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import LOG_2PI, Posterior

PRIORS = ("normal", "vamp")


class PseudoInputs(nn.Module):
    """K learned images in [0, 1], kept as logits (a sigmoid keeps them valid inputs)."""

    def __init__(self, count: int, in_shape: tuple[int, int, int]):
        super().__init__()
        # small random logits: grey images near 0.5, different enough to split early
        self.logits = nn.Parameter(torch.randn(count, *in_shape) * 0.1)

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logits)  # (K, C, H, W)


class PriorChoice:
    """Mixed into a VAE family whose config has ``prior`` and ``pseudo_inputs``.

    Call :meth:`build_prior` at the end of ``__init__``; the N(0, I) prior then keeps the base
    class's exact behaviour (and its state dict), the VampPrior overrides the prior's density,
    the KL and the prior's samples.
    """

    def build_prior(self) -> None:
        self.pseudo_inputs = (PseudoInputs(self.config.pseudo_inputs, self.in_shape)
                              if self.config.prior == "vamp" else None)

    def _mixture(self) -> Posterior:
        return self.encode(self.pseudo_inputs())  # K components: (K, D) each

    def describe_prior(self) -> str:
        if self.pseudo_inputs is None:
            return super().describe_prior()
        return f"VampPrior ({self.config.pseudo_inputs} pseudo-inputs)"

    def log_prior(self, z: Tensor) -> Tensor:
        if self.pseudo_inputs is None:
            return super().log_prior(z)
        mix = self._mixture()
        diff = z.unsqueeze(1) - mix.mean.unsqueeze(0)  # (B, K, D)
        log_q = -0.5 * (LOG_2PI + mix.logvar.unsqueeze(0) + diff.pow(2) / mix.logvar.exp().unsqueeze(0)).sum(-1)
        return torch.logsumexp(log_q, dim=1) - math.log(mix.mean.shape[0])  # (B,)

    def kl(self, posterior: Posterior, z: Tensor) -> Tensor:
        if self.pseudo_inputs is None:
            return super().kl(posterior, z)
        return posterior.log_prob(z) - self.log_prior(z)

    def prior_sample(self, n: int, *, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Tensor:
        if self.pseudo_inputs is None:
            return super().prior_sample(n, temperature=temperature, generator=generator)
        with torch.no_grad():
            mix = self._mixture()
            pick = torch.randint(0, mix.mean.shape[0], (n,), generator=generator)
            eps = torch.randn((n, mix.mean.shape[1]), generator=generator) * temperature
            return mix.mean.cpu()[pick] + mix.std.cpu()[pick] * eps  # (n, D)
