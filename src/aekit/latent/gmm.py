"""A post-hoc sampler: a Gaussian mixture fitted to a trained model's training codes.

A VAE's N(0, I) prior and the region its encoder actually fills are not the same (the "holes"
in the latent space), and a plain autoencoder has no prior at all.  Fitting a mixture of
Gaussians to the codes of the training images, after training, gives every model a sampler
that draws where the codes really lie (Ghosh et al., "From Variational to Deterministic
Autoencoders", 2020: it improves a VAE's samples markedly and makes plain AEs generators).

The fitted mixture is plain arrays (weights, means, Cholesky factors of the covariances), so a
run folder stores it as ``.npz`` read back with ``allow_pickle=False``: no code is ever loaded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError

DEFAULT_COMPONENTS = 10  # one per MNIST class is the usual choice; more fit finer structure
MAX_COMPONENTS = 1000
MAX_FIT_CODES = 20_000  # enough to fit 10 full-covariance components in 16-D well; more only costs time


def parse_sampler(text: str) -> tuple[str, int | None]:
    """``prior``, ``normal``, ``gmm`` or ``gmm:K`` -> (source, components).

    ``normal`` draws N(0, I) codes whatever the model: a VAE's prior unless it learnt another,
    and for a plain autoencoder the naive guess that a fitted mixture is measured against."""
    source, _, count = text.partition(":")
    if source in ("prior", "normal") and not count:
        return source, None
    if source == "gmm":
        if not count:
            return "gmm", DEFAULT_COMPONENTS
        if count.isdigit() and 1 <= int(count) <= MAX_COMPONENTS:
            return "gmm", int(count)
        raise ConfigError(f"--sampler gmm:K needs K between 1 and {MAX_COMPONENTS}, got {count!r}")
    raise ConfigError(f"--sampler must be prior, normal, gmm or gmm:K, got {text!r}")


@dataclass
class CodeMixture:
    """A Gaussian mixture over codes: ``weights`` (K,), ``means`` (K, D), ``chol`` (K, D, D) lower
    triangular with chol @ chol.T the covariance."""

    weights: np.ndarray
    means: np.ndarray
    chol: np.ndarray

    @property
    def components(self) -> int:
        return int(self.weights.shape[0])

    @classmethod
    def fit(cls, codes: Tensor, components: int = DEFAULT_COMPONENTS, *, seed: int = 0) -> CodeMixture:
        """Fit to ``codes`` (N, D) by EM (scikit-learn), full covariances, k-means initialised."""
        from sklearn.mixture import GaussianMixture

        data = codes.detach().double().cpu().numpy()
        if data.shape[0] < components:
            raise ConfigError(f"a mixture of {components} components needs at least {components} codes, "
                              f"got {data.shape[0]}")
        if data.shape[0] > MAX_FIT_CODES:
            data = data[np.random.default_rng(seed).choice(data.shape[0], MAX_FIT_CODES, replace=False)]
        gmm = GaussianMixture(components, covariance_type="full", random_state=seed, reg_covar=1e-6, max_iter=200)
        gmm.fit(data)
        return cls(gmm.weights_.copy(), gmm.means_.copy(), np.linalg.cholesky(gmm.covariances_))

    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """``n`` codes: a component by weight, then its Gaussian (spread scaled by ``temperature``).  (n, D)"""
        weights = torch.as_tensor(self.weights, dtype=torch.float64)
        pick = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn((n, self.means.shape[1]), generator=generator, dtype=torch.float64) * temperature
        chol = torch.as_tensor(self.chol)[pick]  # (n, D, D)
        z = torch.as_tensor(self.means)[pick] + (chol @ eps.unsqueeze(-1)).squeeze(-1)
        return z.float()

    def log_density(self, z: Tensor) -> Tensor:
        """log p(z) under the mixture.  (B,)"""
        dist = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=torch.as_tensor(self.weights)),
            torch.distributions.MultivariateNormal(torch.as_tensor(self.means), scale_tril=torch.as_tensor(self.chol)),
        )
        return dist.log_prob(z.double()).float()

    # -- a file of arrays, no pickle ----------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, weights=self.weights, means=self.means, chol=self.chol)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str, latent_dim: int) -> CodeMixture:
        """Read a stored mixture back, checking every array's shape and values; CheckpointError naming ``source``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                weights, means, chol = (np.asarray(arrays[k], dtype=np.float64) for k in ("weights", "means", "chol"))
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise CheckpointError(f"{source}: not a stored mixture ({' '.join(str(err).split())[:120]}); "
                                  "delete it and it is fitted again") from None
        k = weights.shape[0] if weights.ndim == 1 else -1
        if (k < 1 or means.shape != (k, latent_dim) or chol.shape != (k, latent_dim, latent_dim)
                or not all(np.isfinite(a).all() for a in (weights, means, chol))
                or (weights < 0).any() or abs(weights.sum() - 1) > 1e-6
                or (np.diagonal(chol, axis1=1, axis2=2) <= 0).any()):
            raise CheckpointError(f"{source}: the stored mixture does not fit this model's {latent_dim}-D codes; "
                                  "delete it and it is fitted again")
        return cls(weights, means, np.tril(chol))
