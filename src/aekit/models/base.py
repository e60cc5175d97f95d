"""The contract every aekit model keeps, and the objects that travel through it.

``encode(x) -> Posterior``, ``decode(z) -> x_hat``, ``forward(batch) -> Output`` and
``loss(batch, out) -> Losses``.  The trainer, the evaluator, the plots and the web page only
ever use these, so a new model family is one file that subclasses :class:`Autoencoder`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, TrainingError

LOG_2PI = math.log(2 * math.pi)


class Posterior:
    """A diagonal Gaussian q(z|x) = N(mean, exp(logvar)); a point mass when ``logvar`` is None.

    ``logvar`` is the log of the *variance*: sampling uses std = exp(logvar / 2) and the KL
    below is written for the same quantity.  (The lesson's notebooks sample with exp(logvar)
    as if it were log sigma, but compute the KL as if it were the log-variance; the two must
    agree, and ``tests/test_vae_maths.py`` checks that they do.)
    """

    def __init__(self, mean: Tensor, logvar: Tensor | None = None):
        self.mean = mean  # (B, D)
        self.logvar = logvar  # (B, D) or None

    @property
    def is_point_mass(self) -> bool:
        return self.logvar is None

    @property
    def std(self) -> Tensor:
        if self.logvar is None:
            return torch.zeros_like(self.mean)
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw z = mean + std * eps, so gradients reach mean and logvar."""
        if self.logvar is None:
            return self.mean
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps  # (B, D)

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per item, in nats: 0.5 * sum(mean^2 + var - 1 - logvar).  (B,)"""
        if self.logvar is None:
            return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) per item.  (B,)"""
        if self.logvar is None:
            raise ValueError("a point mass has no density")
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mean).pow(2) / self.logvar.exp()).sum(dim=1)

    def detach(self) -> Posterior:
        return Posterior(self.mean.detach(), None if self.logvar is None else self.logvar.detach())


@dataclass
class Batch:
    """What a model trains on.  ``x`` goes in, ``target`` is what should come out.

    For plain reconstruction they are the same tensor; for denoising ``x`` is the corrupted
    image, for super-resolution the small one.  ``y`` holds class labels when there are any.
    """

    x: Tensor  # (B, C, H, W) in [0, 1]
    target: Tensor  # (B, C, H', W') in [0, 1]
    y: Tensor | None = None  # (B,) int64


@dataclass
class Output:
    logits: Tensor  # (B, C, H', W'): pre-sigmoid decoder output
    posterior: Posterior
    z: Tensor  # (B, D): the latent actually decoded
    # (K, B): log p(x|z_k) + log p(z_k) - log q(z_k|x) for K codes per image, where a family
    # trains on an importance-weighted bound (iwae); None otherwise
    log_weights: Tensor | None = None

    @property
    def x_hat(self) -> Tensor:
        return torch.sigmoid(self.logits)


@dataclass
class Losses:
    total: Tensor  # scalar that the trainer backpropagates
    parts: dict[str, Tensor] = field(default_factory=dict)  # scalars logged by name


def reconstruction_loss(logits: Tensor, target: Tensor, loss_name: str) -> Tensor:
    """Per-image reconstruction loss summed over pixels (nats per image for BCE).  (B,)

    BCE is computed from logits for numerical stability; MSE compares sigmoid outputs.  Both in
    float32 whatever the logits' precision: a sum over pixels in bfloat16 loses digits.
    """
    logits = logits.float()
    if loss_name == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif loss_name == "mse":
        per_pixel = (torch.sigmoid(logits) - target).pow(2)
    else:
        raise ConfigError(f"unknown reconstruction loss {loss_name!r}; use 'bce' or 'mse'")
    return per_pixel.flatten(1).sum(dim=1)


class Autoencoder(nn.Module):
    """Base class: subclasses implement ``encode`` and ``decode_logits``.

    Class attributes say what a family can do, so callers never branch on a model's name:
    ``variational`` (the posterior has a variance and the loss a KL term), ``generative``
    (``sample`` draws from a prior), ``conditional`` (encoder and decoder take a label).
    """

    registry_name: str = "?"
    variational = False
    generative = False
    conditional = False
    # What the model reads and writes, as the task's data must be: "image" tensors (B, C, H, W)
    # in [0, 1], or "melody" class indices (B, T) (aekit.data.melodies).
    data_kind = "image"
    # The training settings this family learns fastest with (train.* field -> value), used
    # where the user gives none: measured by benchmarks/time_to_quality.py, not guessed.
    train_defaults: Mapping[str, Any] = MappingProxyType({})
    # Whether ``--precision auto`` may train this family under bfloat16 autocast (on hardware
    # that computes it natively); families not measured in it train in float32.
    auto_bf16 = True

    def __init__(self, config):
        super().__init__()
        self.config = config
        c = self.in_shape[0]
        if self.data_kind == "image" and c not in (1, 3):
            raise ConfigError(f"images must have 1 (grey) or 3 (RGB) channels, got {c}")

    # -- shapes -------------------------------------------------------------------------
    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.in_shape)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return self.in_shape

    @property
    def logits_shape(self) -> tuple[int, ...]:
        """One item's decoder output before its link function: one logit per pixel here; a
        decoder over classes adds their number."""
        return self.out_shape

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    def example_input(self, n: int, *, shape: tuple[int, ...] | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """``n`` random items of the kind the model reads, of ``shape`` (its input shape by default):
        uniform pixels here.  For tests, and for tracing the model (ONNX export).  (n, *shape)"""
        return torch.rand((n, *(shape or self.in_shape)), generator=generator)

    @property
    def num_classes(self) -> int:
        return int(getattr(self.config, "num_classes", 0) or 0)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            got = tuple(x.shape[1:]) if x.dim() == 4 else tuple(x.shape)
            c, h, w = self.in_shape
            raise ConfigError(
                f"this model expects images of shape {self.in_shape} (channels, height, width), got {got}; "
                f"resize the data to {h}x{w} with {c} channel(s) (--image-size {h}) or train a model for this size"
            )

    def check_labels(self, y: Tensor | None, n: int) -> None:
        if not self.conditional:
            return
        if y is None:
            raise ConfigError(f"{self.registry_name} is conditional: pass a class label (0..{self.num_classes - 1})")
        if y.shape != (n,) or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ConfigError(f"labels must be {n} integers in 0..{self.num_classes - 1}")

    # -- the contract -------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        raise NotImplementedError

    def decode_logits(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Latents (B, D) to images (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> Output:
        posterior = self.encode(batch.x, batch.y)
        z = posterior.sample(generator)
        return Output(logits=self.decode_logits(z, batch.y), posterior=posterior, z=z)

    def loss(self, batch: Batch, out: Output) -> Losses:
        recon = reconstruction_loss(out.logits, batch.target, self.config.recon_loss).mean()
        if not self.variational:
            return Losses(total=recon, parts={"recon": recon})
        kl = self.kl(out.posterior, out.z).mean()
        return Losses(total=recon + self.config.beta * kl, parts={"recon": recon, "kl": kl})

    # -- training hooks (models with several optimisers, like the AAE, override these) ---
    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        return {"main": make_adam(self.parameters(), lr, weight_decay)}

    has_unused_parameters = False  # True when a training step leaves some parameters out (DDP must know)

    def training_step(self, batch: Batch, optimizers: dict, ctx: StepContext | None = None) -> Losses:
        """One optimisation step; ``ctx`` carries the (possibly DDP-wrapped) forward and precision."""
        ctx = ctx or StepContext(forward=self)
        with ctx.autocast():
            out = ctx.forward(batch, ctx.generator)
            losses = self.loss(batch, out)
        ctx.check_finite(losses)
        ctx.backward_step(losses.total, optimizers["main"])
        return losses

    # -- conveniences for users -----------------------------------------------------------
    @torch.inference_mode()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Encode to the posterior mode and decode: deterministic.  (B, C, H', W')"""
        return self.decode(self.encode(x, y).mode(), y)

    def log_weights(self, target: Tensor, y: Tensor | None, posterior: Posterior, z: Tensor) -> Tensor:
        """Importance weights log p(x|z) + log p(z) - log q(z|x) of codes ``z`` (K, B, D) drawn
        from ``posterior`` for the images ``target`` (B, C, H, W), with the Bernoulli decoder.  (K, B)"""
        k, b, d = z.shape
        flat = z.reshape(k * b, d)
        labels = None if y is None else y.unsqueeze(0).expand(k, b).reshape(k * b)
        targets = target.unsqueeze(0).expand(k, *target.shape).reshape(k * b, *target.shape[1:])
        log_px_z = -reconstruction_loss(self.decode_logits(flat, labels), targets, "bce")  # (K*B,)
        repeated = Posterior(posterior.mean.unsqueeze(0).expand(k, b, d).reshape(k * b, d),
                             posterior.logvar.unsqueeze(0).expand(k, b, d).reshape(k * b, d))
        return (log_px_z + self.log_prior(flat) - repeated.log_prob(flat)).reshape(k, b)

    def describe_prior(self) -> str:
        """The prior's name, for captions: "N(0, I)" here."""
        return "N(0, I)"

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) per code under the model's prior: N(0, I) here.  (B,)"""
        return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=1)

    def kl(self, posterior: Posterior, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) per item, in nats.  Exact for the N(0, I) prior; a family with
        another prior overrides this (with a one-sample estimate log q(z) - log p(z) at the
        drawn ``z`` where there is no closed form).  (B,)"""
        return posterior.kl()

    def prior_sample(self, n: int, *, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> Tensor:
        """``n`` codes drawn from the model's prior, on the CPU (so draws do not depend on the
        device).  N(0, temperature^2 I) here; a family with another prior (a mixture, a learned
        one) overrides this, and :meth:`sample` and the explorer follow.  (n, D)"""
        return torch.randn((n, self.latent_dim), generator=generator, device="cpu") * temperature

    @torch.inference_mode()
    def sample(self, n: int, *, label: int | Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Decode ``n`` draws from the prior N(0, temperature^2 I).  (n, C, H, W)"""
        if not self.generative:
            raise ConfigError(
                f"{self.registry_name} has no prior to sample from; use a VAE-family model "
                "(vae, conv-vae, cvae, aae), or `aekit sample`, which samples where a plain AE's codes lie"
            )
        device = next(self.parameters()).device
        z = self.prior_sample(n, temperature=temperature, generator=generator).to(device)  # (n, D)
        y = None
        if self.conditional:
            if label is None:
                y = torch.arange(n, device=device) % self.num_classes
            else:
                y = torch.as_tensor(label, device=device).long().expand(n).clone()
            self.check_labels(y, n)
        return self.decode(z, y)


@dataclass
class StepContext:
    """How a training step runs: which module to call (the model, or its DDP wrapper), the
    generator for its noise, mixed precision, and the fp16 gradient scaler if there is one."""

    forward: Callable
    generator: torch.Generator | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    # Where the trainer collects the steps' finiteness to check later (on a GPU: see
    # DeferredFiniteChecks); None checks at once.
    finite_checks: DeferredFiniteChecks | None = None

    def check_finite(self, losses: Losses) -> None:
        """Refuse a non-finite loss before its gradients reach the weights, or leave it to the trainer."""
        if self.finite_checks is None:
            check_finite(losses)
        else:
            self.finite_checks.add(losses)

    def backward_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


def check_finite(losses: Losses) -> None:
    if not torch.isfinite(losses.total.detach()):
        raise TrainingError(f"loss is not finite ({_parts_text(losses.parts)})")


def _parts_text(parts: dict[str, Tensor]) -> str:
    return ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())


class DeferredFiniteChecks:
    """The steps' loss checks, kept on the device until the trainer asks.

    Checking a GPU loss at once makes the CPU wait for the GPU at every step, so it can no
    longer queue the next step's kernels while the GPU runs this one; small models then run
    at the speed of that round trip.  Here each step only queues its flag, and
    :meth:`raise_first` (one wait, at the trainer's chosen moments: every few dozen steps and
    before anything is saved) names the first bad step.  The steps after it have already
    changed the weights, but nothing is written before the check, so the run's last
    checkpoint stays the last good state.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, Tensor, dict[str, Tensor]]] = []
        self.step = 0  # the trainer's step count for what add() receives next

    def add(self, losses: Losses) -> None:
        parts = {k: v.detach() for k, v in losses.parts.items()}
        self._pending.append((self.step, torch.isfinite(losses.total.detach()), parts))

    def __len__(self) -> int:
        return len(self._pending)

    def raise_first(self) -> None:
        """Raise TrainingError for the first non-finite loss since the last call; the error's
        ``step`` attribute is that step."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        finite = torch.stack([flag for _, flag, _ in pending]).cpu()  # the one wait for the GPU
        if bool(finite.all()):
            return
        step, _, parts = pending[int((~finite).nonzero()[0])]
        err = TrainingError(f"loss is not finite ({_parts_text(parts)})")
        err.step = step
        raise err


def make_adam(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = list(params)
    if params and all(p.is_cuda for p in params):
        # On a GPU one fused kernel updates every tensor: the foreach path launches several per
        # step, and aekit's small models are bound by launching work, not by the GPU doing it.
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    # foreach=True batches the per-parameter updates into a few kernels: measurably faster
    # than the default per-tensor loop for models with many small tensors.
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
