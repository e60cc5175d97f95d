"""Functions over a model's latent space.

Embeddings are posterior modes (means), so they are deterministic: the same image always lands
on the same point in plots, in files and on the web page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError


@torch.inference_mode()
def encode_dataset(model, images: Tensor, labels: Tensor | None = None, *, batch_size: int = 512) -> Tensor:
    """Posterior means of every image, on the CPU.  (N, D)"""
    model.eval()
    device = next(model.parameters()).device
    codes = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        y = labels[start:start + batch_size].to(device) if labels is not None and model.conditional else None
        codes.append(model.encode(x, y).mode().float().cpu())
    return torch.cat(codes) if codes else torch.empty(0, model.latent_dim)


@dataclass
class Projection:
    """A linear map between the latent space (D) and a 2-D view of it, and back.

    For D == 2 it is the identity; otherwise PCA fitted on encoded data: ``to2d`` keeps the
    two principal coordinates, ``from2d`` returns the latent point on the plane they span
    (the data mean plus the two principal axes), so a click on a map decodes to a real code.
    """

    method: str  # "identity" or "pca"
    mean: Tensor  # (D,)
    components: Tensor  # (2, D), orthonormal rows
    explained: tuple[float, float] = (1.0, 0.0)  # fraction of variance along each axis

    def to2d(self, codes: Tensor) -> Tensor:
        """(N, D) -> (N, 2)"""
        return (codes.float() - self.mean) @ self.components.T

    def from2d(self, points: Tensor) -> Tensor:
        """(N, 2) -> (N, D)"""
        return self.mean + points.float() @ self.components

    def describe(self) -> str:
        if self.method == "identity":
            return "the 2-D latent space itself"
        a, b = self.explained
        return f"first two principal axes of the {self.mean.numel()}-D latent means ({a:.0%} and {b:.0%} of variance)"


def fit_projection(codes: Tensor) -> Projection:
    """Identity for 2-D codes, PCA for more; 1-D codes get a zero second axis."""
    d = codes.shape[1]
    if d == 2:
        return Projection("identity", torch.zeros(2), torch.eye(2))
    if d == 1:
        return Projection("identity", torch.zeros(1), torch.tensor([[1.0], [0.0]]))
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(codes.double().numpy())
    return Projection("pca", torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float(),
                      tuple(float(v) for v in pca.explained_variance_ratio_))


def tsne_2d(codes: Tensor, *, seed: int = 0) -> Tensor:
    """t-SNE embedding for plots only (it has no inverse).  (N, 2)"""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(5, codes.shape[0] // 4)))
    out = TSNE(n_components=2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(codes.numpy())
    return torch.from_numpy(np.asarray(out)).float()


def interpolate(z0: Tensor, z1: Tensor, steps: int, *, spherical: bool = False) -> Tensor:
    """Points from z0 to z1 inclusive.  (steps, D)

    ``spherical`` follows the great circle (slerp), which keeps Gaussian samples at a typical
    norm; the straight line passes closer to the origin than any real code would.
    """
    if steps < 2:
        raise ConfigError(f"interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0, 1, steps).unsqueeze(1)  # (steps, 1)
    if not spherical:
        return (1 - t) * z0 + t * z1
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos((a * b).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def prior_samples(n: int, dim: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
    """Draws from the VAE prior N(0, temperature^2 I).  (n, D)"""
    return torch.randn(n, dim, generator=generator) * temperature


def empirical_samples(codes: Tensor, n: int, *, generator: torch.Generator | None = None,
                      temperature: float = 1.0) -> Tensor:
    """Draws from a Gaussian fitted to encoded data: where a plain autoencoder's codes lie.  (n, D)

    A plain AE has no prior; random points far from its codes decode to blobs (the lesson's
    point), while points drawn with the codes' own mean and covariance decode to plausible images.
    """
    mean = codes.mean(0)
    cov = torch.cov(codes.T.double()) + 1e-6 * torch.eye(codes.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov).float()
    eps = torch.randn(n, codes.shape[1], generator=generator) * temperature
    return mean + eps @ chol.T
