"""How good are a generative model's samples, measured offline: "FD on aekit's LeNet features".

The field scores samples with FID (Heusel et al. 2017, "GANs trained by a two time-scale update
rule converge to a local Nash equilibrium", NeurIPS): the Fréchet distance between Gaussians
fitted to Inception-v3 features of the samples and of real images.  Inception's weights are a
download and were trained on ImageNet photos, so for 28x28 grey images the MNIST literature
often swaps in a small classifier trained on the dataset itself.  This module does that, with
two LeNet-style classifiers shipped in the package (``eval/scorers/``, made by
``scripts/train_scorer.py``), one for MNIST digits and one for Fashion-MNIST clothes.

:func:`score_samples` gives:

- ``fd``: the Fréchet distance between Gaussians fitted to the penultimate (128-d) features of
  the samples and of the reference (by default the official test split, whose statistics ship
  with the scorer).  Lower is better.  It is NOT comparable with Inception FID, nor with
  another paper's "MNIST FID" computed with another classifier: compare models scored by the
  same scorer file only.  Like FID it is biased upwards at small n, so compare at the same n
  (10,000 samples is the usual figure; the scorer's JSON records anchors at 5,000).
- ``confidence``: the samples' mean largest softmax probability (does each look clearly like
  some class?), the half of the Inception Score that needs no marginal.
- ``class_histogram`` and ``classes_covered``: which classes the samples look like (mode
  coverage); a class counts as covered with at least 1% of the samples.

Scorers load from safetensors only (the file's SHA-256 is checked against its JSON), never pickle.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

SCORE_NAME = "FD on aekit's LeNet features"
NOT_FID = "not comparable with Inception FID: compare only scores made with the same aekit scorer"

# dataset -> scorer file stem.  mnist-5k and binarized-mnist hold MNIST digits, so MNIST's
# classifier reads them; the stored statistics are those of the grey MNIST test digits.
SCORERS: dict[str, str] = {
    "mnist": "mnist",
    "mnist-5k": "mnist",
    "binarized-mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
}
# The keys of the reference statistics inside a scorer's safetensors file.
TEST_MU, TEST_SIGMA = "stats.test_mu", "stats.test_sigma"
# A class counts as covered when at least this share of the samples is classified as it.
COVERED_SHARE = 0.01
# Images through the network at once: about 2 MB of activations per 100 images; 1,000 keeps
# the peak near 20 MB whatever N is.
BATCH_SIZE = 1000


class LeNet(nn.Module):
    """Two 5x5 conv layers (each ReLU + 2x2 max-pool), a dense layer of ``hidden`` features
    (ReLU; these are the features the Fréchet distance compares), and a linear classifier.

    LeCun et al. 1998's layout with ReLU and max-pooling, sized to ship in the package: with the
    defaults about 80,000 weights (a 28x28 image becomes 16x24x24 -> 16x12x12 -> 32x8x8 -> 32x4x4).
    """

    def __init__(self, *, in_shape: tuple[int, int, int] = (1, 28, 28), channels: tuple[int, int] = (16, 32),
                 kernel: int = 5, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        c, h, w = in_shape
        c1, c2 = channels
        self.conv1 = nn.Conv2d(c, c1, kernel)
        self.conv2 = nn.Conv2d(c1, c2, kernel)
        side_h, side_w = ((h - kernel + 1) // 2 - kernel + 1) // 2, ((w - kernel + 1) // 2 - kernel + 1) // 2
        if side_h < 1 or side_w < 1:
            raise ConfigError(f"LeNet with {kernel}x{kernel} kernels needs images of at least "
                              f"{3 * kernel + 1}x{3 * kernel + 1} pixels, got {h}x{w}")
        self.fc = nn.Linear(c2 * side_h * side_w, hidden)
        self.head = nn.Linear(hidden, classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, hidden) penultimate activations."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, classes) logits."""
        return self.head(self.features(x))


def check_images(images: Tensor, in_shape: tuple[int, ...], what: str = "images") -> Tensor:
    """``images`` as float32 (N, C, H, W) of the scorer's shape, or a ConfigError saying the fix."""
    if not isinstance(images, Tensor):
        raise ConfigError(f"{what} must be a torch tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(in_shape):
        raise ConfigError(f"{what}: the scorer reads images of shape (N, {', '.join(map(str, in_shape))}), "
                          f"got {tuple(images.shape)}; reshape with x.view(-1, {', '.join(map(str, in_shape))})")
    if len(images) == 0:
        raise ConfigError(f"{what}: no images to score")
    if not images.is_floating_point():
        raise ConfigError(f"{what} are {images.dtype}; the scorer reads floats in [0, 1] (divide bytes by 255)")
    images = images.detach().to(torch.float32)
    if not bool(torch.isfinite(images).all()):
        raise ConfigError(f"{what} contain NaN or infinite pixels; the scorer reads floats in [0, 1]")
    if float(images.max()) > 2.0:
        raise ConfigError(f"{what} have pixel values up to {float(images.max()):g}; the scorer reads "
                          "images in [0, 1] (divide 0-255 images by 255)")
    return images


@dataclass(frozen=True)
class Scorer:
    """A shipped classifier, its description (the JSON beside it) and the test split's statistics."""

    name: str
    net: LeNet
    info: dict[str, Any]
    test_mu: np.ndarray  # (F,) float64: mean feature of the official test split
    test_sigma: np.ndarray  # (F, F) float64: their covariance (unbiased, n - 1)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.info["architecture"]["in_shape"])  # type: ignore[return-value]

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @torch.no_grad()
    def outputs(self, images: Tensor, *, batch_size: int = BATCH_SIZE) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) images in [0, 1] -> features (N, F) and class probabilities (N, K), float32."""
        images = check_images(images, self.in_shape)
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            f = self.net.features(images[start:start + batch_size])
            feats.append(f)
            probs.append(torch.softmax(self.net.head(f), dim=1))
        return torch.cat(feats), torch.cat(probs)

    def features(self, images: Tensor, *, batch_size: int = BATCH_SIZE) -> Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, F) penultimate activations, without gradients."""
        return self.outputs(images, batch_size=batch_size)[0]

    def predict(self, images: Tensor, *, batch_size: int = BATCH_SIZE) -> Tensor:
        """(N, C, H, W) images -> (N,) int64 predicted classes."""
        return self.outputs(images, batch_size=batch_size)[1].argmax(dim=1)


def _scorer_files(stem: str) -> tuple[Any, Any]:
    folder = resources.files(__package__).joinpath("scorers")
    return folder.joinpath(f"{stem}.json"), folder.joinpath(f"{stem}.safetensors")


def _choices() -> str:
    own = sorted(set(SCORERS.values()))
    borrowed = [f"{d} (uses {s}'s)" for d, s in SCORERS.items() if d != s]
    return ", ".join(own + borrowed)


def load_scorer(dataset: str) -> Scorer:
    """The shipped scorer for ``dataset`` (``mnist``, ``fashion-mnist``, ...), loaded once per process."""
    if dataset not in SCORERS:
        raise ConfigError(f"no sample-quality scorer for dataset {dataset!r}; there are scorers for: {_choices()}")
    return _load(SCORERS[dataset])


@functools.cache
def _load(stem: str) -> Scorer:
    info_file, weights_file = _scorer_files(stem)
    where = f"aekit/eval/scorers/{stem}"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        blob = weights_file.read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: the scorer's files cannot be read ({exc}); reinstall aekit") from exc
    if hashlib.sha256(blob).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"{where}.safetensors does not match the SHA-256 in {stem}.json; reinstall aekit "
                              "or rerun scripts/train_scorer.py")
    try:
        tensors = load_safetensors(blob)
        arch = info["architecture"]
        net = LeNet(in_shape=tuple(arch["in_shape"]), channels=tuple(arch["channels"]), kernel=arch["kernel"],
                    hidden=arch["hidden"], classes=arch["classes"])
        mu = tensors.pop(TEST_MU).to(torch.float64).numpy()
        sigma = tensors.pop(TEST_SIGMA).to(torch.float64).numpy()
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if found != expected or mu.shape != (arch["hidden"],) or sigma.shape != (arch["hidden"],) * 2:
            raise CheckpointError(f"{where}: tensors {found} do not fit the architecture in {stem}.json")
        net.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    except (SafetensorError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: the scorer's files do not fit together ({exc}); reinstall aekit") from exc
    net.eval().requires_grad_(False)
    return Scorer(name=stem, net=net, info=info, test_mu=mu, test_sigma=sigma)


def feature_statistics(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) features -> their mean (F,) and unbiased covariance (F, F), in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ConfigError(f"feature statistics need at least 2 feature vectors (N, F), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance; rounding's tiny negative eigenvalues become 0."""
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    (Dowson and Landau 1982).  The trace of (sigma1 sigma2)^(1/2) is computed as the trace of
    (s sigma2 s)^(1/2) with s = sigma1^(1/2): the same eigenvalues, but of a symmetric positive
    semi-definite matrix, which ``eigh`` handles exactly where pytorch-fid's ``sqrtm`` of the
    non-symmetric product needs an offset for singular covariances (dead ReLU features, fewer
    samples than features) and drops imaginary parts.  Float64 throughout; a result a hair
    below zero from rounding is returned as 0.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if d < 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ConfigError(f"Fréchet distance needs means (D,) and covariances (D, D) of one D, got "
                          f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ConfigError("Fréchet distance of statistics with NaN or infinite values; check the features")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    s = _psd_sqrt(sigma1)
    cross = np.linalg.eigvalsh((s @ sigma2 @ s + (s @ sigma2 @ s).T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt), 0.0)


def score_samples(samples: Tensor, reference_images: Tensor | None = None, *, dataset: str) -> dict[str, Any]:
    """Score generated ``samples`` (N, C, H, W) in [0, 1] with ``dataset``'s shipped classifier.

    The reference is the official test split (its statistics ship with the scorer), or
    ``reference_images`` when given.  Returns plain Python values, ready for JSON::

        {"score": "FD on aekit's LeNet features (mnist scorer)", "note": "not comparable with ...",
         "fd": float, "confidence": float, "class_histogram": [int] * K, "classes": [str] * K,
         "classes_covered": int, "n": int, "reference": str, "n_reference": int}
    """
    scorer = load_scorer(dataset)
    feats, probs = scorer.outputs(samples)
    n = len(feats)
    if n < 2:
        raise ConfigError("the Fréchet distance needs at least 2 samples (10,000 is the usual figure)")
    if n < feats.shape[1]:
        log.warning("%d samples for %d features: the covariance is singular and the FD biased upwards", n,
                    feats.shape[1])
    mu, sigma = feature_statistics(feats)
    if reference_images is None:
        ref_mu, ref_sigma = scorer.test_mu, scorer.test_sigma
        n_ref = int(scorer.info["statistics"]["n"])
        reference = f"{scorer.name} test split ({n_ref:,} images; statistics shipped with the scorer)"
    else:
        ref_mu, ref_sigma = feature_statistics(scorer.features(check_images(reference_images, scorer.in_shape,
                                                                             "reference images")))
        n_ref = len(reference_images)
        reference = f"{n_ref:,} reference images given"
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])
    return {
        "score": f"{SCORE_NAME} ({scorer.name} scorer)",
        "note": NOT_FID,
        "fd": frechet_distance(mu, sigma, ref_mu, ref_sigma),
        "confidence": float(probs.max(dim=1).values.to(torch.float64).mean()),
        "class_histogram": [int(c) for c in counts],
        "classes": scorer.classes,
        "classes_covered": int((counts >= COVERED_SHARE * n).sum()),
        "n": n,
        "reference": reference,
        "n_reference": n_ref,
    }
