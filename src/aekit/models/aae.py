"""``aae``: the adversarial autoencoder (Makhzani et al., "Adversarial Autoencoders", 2016).

A deterministic conv autoencoder whose codes are pushed towards a prior N(0, I) by a
discriminator instead of a KL term.  Each training step has the paper's phases, each with
its own optimiser:

  1. reconstruction: encoder and decoder minimise the reconstruction loss ("autoencoder");
  2. regularisation, discriminator: it learns to tell prior draws (label 1) from the
     encoder's codes (label 0, detached so the encoder is not updated here) ("discriminator");
  3. regularisation, generator: the encoder learns to make the discriminator call its codes
     prior draws ("generator").

Departure from the lesson: its notebook builds a discriminator optimiser but steps the
decoder's in phase 2, so the discriminator never trains and phase 3 chases a fixed random
function.  Here phase 2 steps the discriminator, and tests/test_cvae_aae.py checks that its
weights change and its accuracy leaves chance.

Once the codes match the prior, decoding prior draws gives new images (``generative``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import MAX_SIDE, MAX_WIDTH, RECON_LOSSES, setting
from ..nn import MLP, ConvTrunk
from ..registry import register
from .base import Autoencoder, Batch, Losses, Output, Posterior, StepContext, make_adam


@dataclass
class AAEConfig:
    in_shape: tuple[int, int, int] = setting((1, 28, 28), minimum=1, maximum=MAX_SIDE)
    channels: tuple[int, ...] = setting((32, 64), minimum=1, maximum=MAX_WIDTH)  # as conv-vae: two stride-2 convs, 28 -> 14 -> 7
    hidden: int = setting(256, minimum=1, maximum=MAX_WIDTH)  # dense layer between the conv features and the code
    latent_dim: int = setting(8, minimum=1, maximum=MAX_WIDTH)  # small enough for the discriminator to judge the code's shape well
    disc_hidden: tuple[int, ...] = setting((256, 256), minimum=1, maximum=MAX_WIDTH)  # the paper's MNIST discriminator: two layers
    adv_weight: float = setting(1.0, minimum=0.0)  # weight of the generator (fool-the-discriminator) loss in phase 3
    recon_loss: str = setting("bce", choices=RECON_LOSSES)

    @classmethod
    def tiny(cls, in_shape: tuple[int, int, int] = (1, 16, 16), **overrides) -> AAEConfig:
        """A small config for fast CPU tests; ``overrides`` replace any other field."""
        # narrow stages and discriminator, and a 2-D code that it learns to judge within a few steps
        sizes = {"channels": (8, 16), "hidden": 32, "latent_dim": 2, "disc_hidden": (32, 32)}
        return cls(in_shape=tuple(in_shape), **{**sizes, **overrides})


@register("aae", AAEConfig)
class AdversarialAE(Autoencoder):
    """Conv autoencoder with a discriminator that pushes its codes towards N(0, I)."""

    generative = True
    # Phase 1 leaves the discriminator out and phase 2 the encoder and decoder.
    has_unused_parameters = True

    def __init__(self, config: AAEConfig):
        super().__init__(config)
        trunk = ConvTrunk(self.in_shape, config.channels, owner=self.registry_name)
        self.feature_shape = trunk.feature_shape
        self.encoder = trunk.encoder([config.hidden, config.latent_dim], final_relu=False)  # (B, D): the code
        self.from_latent = trunk.from_latent(config.latent_dim, config.hidden)
        self.decoder = trunk.decoder()
        self.discriminator = MLP([config.latent_dim, *config.disc_hidden, 1])  # logit of "a prior draw"

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        self.check_input(x)
        return Posterior(self.encoder(x))  # point mass at the code (B, D)

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(self.from_latent(z).view(-1, *self.feature_shape))

    def forward(self, batch: Batch, generator: torch.Generator | None = None, *, phase: str = "reconstruction",
                codes: Tensor | None = None):
        """Phase "reconstruction" (the default): the usual :class:`Output`.

        The regularisation phases also run through ``forward`` so that a DDP wrapper sees
        them and averages their gradients across processes: "discriminator" returns the
        discriminator's logits for prior draws and for ``codes`` (detached codes), each (B,);
        "generator" encodes ``batch.x`` afresh and returns the logits for those codes.  (B,)
        """
        if phase == "reconstruction":
            return super().forward(batch, generator)
        if phase == "discriminator":
            prior = torch.randn(codes.shape, generator=generator, device=codes.device, dtype=codes.dtype)  # (B, D)
            return self.discriminator(prior).squeeze(1), self.discriminator(codes).squeeze(1)
        if phase == "generator":
            return self.discriminator(self.encode(batch.x, batch.y).mode()).squeeze(1)
        raise ValueError(f"unknown phase {phase!r}")

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {
            "autoencoder": make_adam([*self.encoder.parameters(), *self.from_latent.parameters(),
                                      *self.decoder.parameters()], lr, weight_decay),
            "discriminator": make_adam(self.discriminator.parameters(), lr, weight_decay),
            "generator": make_adam(self.encoder.parameters(), lr, weight_decay),
        }

    def training_step(self, batch: Batch, optimizers: dict, ctx: StepContext | None = None) -> Losses:
        ctx = ctx or StepContext(forward=self)
        # 1. reconstruction
        with ctx.autocast():
            out: Output = ctx.forward(batch, ctx.generator)
            recon = self.loss(batch, out).total
        ctx.check_finite(Losses(recon, {"recon": recon}))
        ctx.backward_step(recon, optimizers["autoencoder"])

        # 2. discriminator: prior draws are "real" (1), the encoder's codes "fake" (0).
        codes = out.z.detach()
        with ctx.autocast():
            d_prior, d_codes = ctx.forward(batch, ctx.generator, phase="discriminator", codes=codes)
            disc = 0.5 * (F.binary_cross_entropy_with_logits(d_prior.float(), torch.ones_like(d_prior.float()))
                          + F.binary_cross_entropy_with_logits(d_codes.float(), torch.zeros_like(d_codes.float())))
        ctx.check_finite(Losses(disc, {"disc": disc}))
        ctx.backward_step(disc, optimizers["discriminator"])
        accuracy = 0.5 * ((d_prior > 0).float().mean() + (d_codes < 0).float().mean())

        # 3. generator: the encoder, freshly updated, tries to pass its codes off as prior draws.
        with ctx.autocast():
            d_fooled = ctx.forward(batch, ctx.generator, phase="generator").float()
            gen = F.binary_cross_entropy_with_logits(d_fooled, torch.ones_like(d_fooled))
        ctx.check_finite(Losses(gen, {"gen": gen}))
        ctx.backward_step(self.config.adv_weight * gen, optimizers["generator"])

        parts = {"recon": recon.detach(), "disc": disc.detach(), "gen": gen.detach(),
                 "disc_accuracy": accuracy.detach()}
        return Losses(total=recon.detach(), parts=parts)
