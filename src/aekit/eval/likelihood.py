"""The log-likelihood of a variational model, estimated by importance sampling.

For one image x, draw K codes z_k from the encoder's q(z|x) and weight each by
w_k = p(x|z_k) p(z_k) / q(z_k|x).  Then

    log p(x) >= log (1/K) sum_k w_k          (the IWAE bound, Burda et al. 2016)

and the bound rises towards log p(x) as K grows; K = 1 is the ELBO in expectation.  This is
how the field reports the likelihood of VAEs on binarised MNIST (K = 5000 is the usual figure).
p(x|z) is the model's Bernoulli decoder (the BCE the model trains with), so the estimate is a
likelihood in nats only for binary images (``binarized-mnist``); on grey images it is the same
quantity the ELBO reports, comparable between aekit runs but not with the literature.

Memory stays bounded whatever K is: the K samples are drawn in chunks, and the chunks' log
weights are folded into a running log-sum-exp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models.base import Autoencoder

DEFAULT_SAMPLES = 1000  # papers publish K = 5000; the README's figures use it
# Decoded images in flight at once (chunk of samples x images): about 30 MB for 28x28 floats.
MAX_DECODES_IN_FLIGHT = 10_000


@dataclass
class LikelihoodEstimate:
    """Per-image estimates in nats, and their summary over the images scored."""

    log_likelihood: Tensor  # (N,) log p(x) estimated with K samples
    elbo: Tensor  # (N,) mean of the same samples' log weights: an ELBO estimate
    samples: int  # K

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood, nats per image (lower is better)."""
        return -float(self.log_likelihood.double().mean())

    @property
    def nll_standard_error(self) -> float:
        """Standard error of :attr:`nll` over the images (their spread, not the estimator's bias)."""
        n = self.log_likelihood.numel()
        return float(self.log_likelihood.double().std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")

    @property
    def negative_elbo(self) -> float:
        return -float(self.elbo.double().mean())

    def as_dict(self) -> dict[str, float | int]:
        return {"nll": self.nll, "nll_se": self.nll_standard_error, "nll_negative_elbo": self.negative_elbo,
                "nll_samples": self.samples, "nll_images": int(self.log_likelihood.numel())}


def check_estimable(model: Autoencoder) -> None:
    """Refuse models whose likelihood this estimator cannot measure, saying why."""
    if not model.variational:
        raise ConfigError(f"{model.registry_name} is not variational: its encoder gives a point, not a "
                          "distribution to sample from, so it has no likelihood to estimate; use a VAE-family model")
    if getattr(model.config, "recon_loss", "bce") != "bce":
        raise ConfigError(f"{model.registry_name} was trained with recon_loss={model.config.recon_loss!r}; the "
                          "likelihood needs the Bernoulli decoder (recon_loss bce)")
    if tuple(model.in_shape) != tuple(model.out_shape):
        raise ConfigError("the likelihood applies to models whose input is their target (--task reconstruct)")


@torch.inference_mode()
def log_weights(model: Autoencoder, x: Tensor, y: Tensor | None, k: int,
                generator: torch.Generator | None) -> Tensor:
    """log w for ``k`` codes drawn from q(z|x) for each image of ``x`` (B, C, H, W).  (k, B)"""
    posterior = model.encode(x, y)
    b, d = posterior.mean.shape
    eps = torch.randn((k, b, d), generator=generator, device=x.device, dtype=posterior.mean.dtype)
    z = posterior.mean.unsqueeze(0) + posterior.std.unsqueeze(0) * eps  # (k, B, D)
    return model.log_weights(x, y, posterior, z)


@torch.inference_mode()
def estimate_log_likelihood(model: Autoencoder, images: Tensor, labels: Tensor | None = None, *,
                            samples: int = DEFAULT_SAMPLES, seed: int = 0, batch_size: int = 100,
                            progress: Callable[[int], None] | None = None) -> LikelihoodEstimate:
    """Importance-sampled log p(x) (nats) for each of ``images`` (N, C, H, W), with ``samples`` = K.

    Images go through in batches of ``batch_size`` and the K samples in chunks, so that at most
    :data:`MAX_DECODES_IN_FLIGHT` images are decoded at once.  The draws come from one generator
    seeded by ``seed``: the same call gives the same figure.  ``progress`` is called with the
    number of images finished after each batch.
    """
    check_estimable(model)
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"--nll-samples must be a whole number of at least 1, got {samples!r}")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    log_px, elbos = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        y = None if labels is None or not model.conditional else labels[start:start + batch_size].to(device)
        chunk = max(1, MAX_DECODES_IN_FLIGHT // x.shape[0])
        running = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=device)
        weight_sum = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
        done = 0
        while done < samples:
            k = min(chunk, samples - done)
            logw = log_weights(model, x, y, k, generator).double()  # (k, B)
            running = torch.logaddexp(running, torch.logsumexp(logw, dim=0))
            weight_sum += logw.sum(dim=0)
            done += k
        log_px.append((running - math.log(samples)).cpu())
        elbos.append((weight_sum / samples).cpu())
        if progress is not None:
            progress(x.shape[0])
    return LikelihoodEstimate(torch.cat(log_px), torch.cat(elbos), samples)
