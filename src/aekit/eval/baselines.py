"""Baselines an autoencoder has to beat: classical denoisers, interpolation, PCA, and the
scikit-learn scorers (k-NN accuracy, ROC AUC) that the embedding and anomaly results use.

A claim such as "the denoising autoencoder removes noise" only means something next to what a
median filter does with the same images; this module gives each baseline the same fair chance:
its parameter is tuned on *validation* images (never on the test images it is scored on), and
it is scored with the same metrics as the models (:mod:`aekit.eval.metrics`).

Images are tensors (B, C, H, W) in [0, 1].  The classical filters run in NumPy, SciPy and
scikit-image on the CPU; results come back as tensors of the input's dtype.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor

from ..errors import ConfigError
from .metrics import mean_psnr, ssim

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Denoisers
# ---------------------------------------------------------------------------------------------


def _check_images(x: Tensor, what: str) -> np.ndarray:
    if x.dim() != 4:
        raise ConfigError(
            f"{what}: expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}; "
            "add the missing axes with x[None] or x[:, None]"
        )
    return x.detach().cpu().to(torch.float64).numpy()


def _back(out: np.ndarray, like: Tensor) -> Tensor:
    # The autoencoders' outputs lie in [0, 1] (a sigmoid), so every filter gets the same free
    # clamp: clean images lie in [0, 1], and clamping to it never increases any pixel's error.
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(dtype=like.dtype, device=like.device)


def median_filter(noisy: Tensor, size: int) -> Tensor:
    """Median over a size x size neighbourhood of each pixel, per image and channel.  (B,C,H,W)

    Borders are reflected (scipy's default).  One scipy call filters the whole batch: a
    footprint of (1, 1, size, size) never mixes images or channels, so it equals a loop over
    images and is much faster.
    """
    a = _check_images(noisy, "median_filter")
    return _back(ndi.median_filter(a, size=(1, 1, size, size), mode="reflect"), noisy)


def gaussian_blur(noisy: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing with standard deviation ``sigma`` pixels, per image and channel."""
    a = _check_images(noisy, "gaussian_blur")
    # sigma 0 along the batch and channel axes: as for the median, no mixing across images.
    return _back(ndi.gaussian_filter(a, sigma=(0.0, 0.0, sigma, sigma), mode="reflect"), noisy)


def _per_image(fn: Callable[..., np.ndarray], a: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Run a scikit-image filter on each (C, H, W) image; grey images go in as (H, W)."""
    out = np.empty_like(a)
    for i, img in enumerate(a):
        if img.shape[0] == 1:
            out[i, 0] = fn(img[0], channel_axis=None, **kwargs)
        else:
            # channel_axis tells skimage which axis holds colour, so channels are never
            # smoothed into each other (nl-means still compares whole colour patches).
            out[i] = fn(img, channel_axis=0, **kwargs)
    return out


def tv_chambolle(noisy: Tensor, weight: float) -> Tensor:
    """Total-variation denoising (Chambolle 2004) with ``weight``: larger is smoother."""
    a = _check_images(noisy, "tv_chambolle")
    return _back(_per_image(denoise_tv_chambolle, a, weight=weight), noisy)


# nl-means' defaults (7x7 patches searched over 23x23) are meant for photographs; on 28x28
# digits a 23x23 search covers nearly the whole image and costs 4x the time. 5x5 patches see a
# stroke and its edges (MNIST strokes are 2-3 pixels wide), searched within 6 pixels.
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6


def nl_means(noisy: Tensor, h: float) -> Tensor:
    """Non-local means (Buades et al. 2005) with cut-off ``h``, in the fast (box-kernel) mode.

    ``sigma`` is left at 0, so ``h`` alone sets how different two patches may be and still be
    averaged; the tuning below picks it for the noise level at hand.
    """
    a = _check_images(noisy, "nl_means")
    out = _per_image(
        denoise_nl_means,
        a,
        h=h,
        patch_size=NLM_PATCH_SIZE,
        patch_distance=NLM_PATCH_DISTANCE,
        fast_mode=True,
    )
    return _back(out, noisy)


# name -> (filter, the parameter values that tuning tries).  The grids span light to strong
# smoothing for noise standard deviations of about 0.05-0.5 on [0, 1] images; nl-means has the
# shortest grid because it is the slowest filter.
DENOISERS: dict[str, tuple[Callable[[Tensor, Any], Tensor], tuple[Any, ...]]] = {
    "median_filter": (median_filter, (3, 5)),
    "gaussian_blur": (gaussian_blur, (0.5, 0.75, 1.0, 1.5, 2.0)),
    "tv_chambolle": (tv_chambolle, (0.02, 0.05, 0.1, 0.2, 0.4)),
    "nl_means": (nl_means, (0.05, 0.1, 0.2, 0.3, 0.45)),
}

# The most images a slow filter is tuned or scored on; the first ones are used, so the subset
# is the same on every run.  nl-means takes about 2 ms per 28x28 image, so 2000 images is
# about 4 s per parameter value.  The count used is reported as "n" in the results.
DEFAULT_MAX_IMAGES: dict[str, int] = {"nl_means": 2000}


def _check_noisy_clean(noisy: Tensor, clean: Tensor) -> None:
    if noisy.shape != clean.shape:
        raise ConfigError(
            f"noisy and clean images differ in shape: {tuple(noisy.shape)} vs {tuple(clean.shape)}; "
            "pass each noisy image with its own clean original"
        )
    if noisy.shape[0] == 0:
        raise ConfigError("no images given; pass at least one noisy/clean pair")


def tune_denoisers(
    noisy_val: Tensor,
    clean_val: Tensor,
    *,
    denoisers: Mapping[str, tuple[Callable[[Tensor, Any], Tensor], Sequence[Any]]] = DENOISERS,
    max_images: Mapping[str, int] = DEFAULT_MAX_IMAGES,
) -> dict[str, Any]:
    """For each denoiser, the parameter from its grid with the highest mean PSNR on the
    validation pairs.  Returns {name: best parameter}.

    Only validation images are seen here; :func:`evaluate_denoisers` then scores the chosen
    parameters on test images.  Ties go to the earlier (usually lighter) grid value.
    """
    _check_noisy_clean(noisy_val, clean_val)
    best: dict[str, Any] = {}
    for name, (fn, grid) in denoisers.items():
        n = min(noisy_val.shape[0], max_images.get(name, noisy_val.shape[0]))
        noisy, clean = noisy_val[:n], clean_val[:n]
        t0 = time.perf_counter()
        scores = [mean_psnr(fn(noisy, p), clean) for p in grid]
        i = int(np.argmax(scores))
        best[name] = grid[i]
        log.info(
            "tuned %s on %d validation images: %r (%.2f dB; grid %s) in %.1f s",
            name,
            n,
            grid[i],
            scores[i],
            list(grid),
            time.perf_counter() - t0,
        )
    return best


def evaluate_denoisers(
    noisy_test: Tensor,
    clean_test: Tensor,
    params: Mapping[str, Any],
    *,
    denoisers: Mapping[str, tuple[Callable[[Tensor, Any], Tensor], Sequence[Any]]] = DENOISERS,
    max_images: Mapping[str, int] = DEFAULT_MAX_IMAGES,
) -> dict[str, dict[str, Any]]:
    """Score each denoiser, with its parameter from ``params``, on the test pairs.

    Returns {name: {"psnr": mean dB, "ssim": mean SSIM, "param": value, "n": images scored}},
    with a first entry "noisy input" (the noisy images as given, no filter, param None) that
    every denoiser must beat to be worth anything.  PSNRs are capped at 100 dB before
    averaging (see :data:`aekit.eval.metrics.PSNR_CAP_DB`).  Slow filters are scored on the
    first ``max_images[name]`` images only; "n" says how many.
    """
    _check_noisy_clean(noisy_test, clean_test)
    missing = [name for name in denoisers if name not in params]
    if missing:
        raise ConfigError(f"no parameter for {missing}; run tune_denoisers on validation images first")

    def score(out: Tensor, clean: Tensor, param: Any) -> dict[str, Any]:
        return {
            "psnr": mean_psnr(out, clean),
            "ssim": float(ssim(out, clean).mean()),
            "param": param,
            "n": int(clean.shape[0]),
        }

    results = {"noisy input": score(noisy_test, clean_test, None)}
    for name, (fn, _grid) in denoisers.items():
        n = min(noisy_test.shape[0], max_images.get(name, noisy_test.shape[0]))
        t0 = time.perf_counter()
        results[name] = score(fn(noisy_test[:n], params[name]), clean_test[:n], params[name])
        log.info("scored %s on %d test images in %.1f s", name, n, time.perf_counter() - t0)
    return results


# ---------------------------------------------------------------------------------------------
# Super-resolution
# ---------------------------------------------------------------------------------------------

UPSAMPLE_METHODS = ("nearest", "bilinear", "bicubic")


def upsample(x_small: Tensor, scale: int, method: str) -> Tensor:
    """Enlarge (B, C, h, w) images to (B, C, h*scale, w*scale) by interpolation.

    ``align_corners=False`` treats pixels as squares (the convention of image resizers and of
    average-pool downscaling).  Bicubic interpolation overshoots at edges, so its output is
    clamped to [0, 1]; nearest and bilinear cannot leave the input's range.
    """
    if method not in UPSAMPLE_METHODS:
        raise ConfigError(f"unknown upsampling method {method!r}; choose one of {list(UPSAMPLE_METHODS)}")
    if int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a whole number >= 1, got {scale!r}")
    if x_small.dim() != 4:
        raise ConfigError(f"expected a batch of images (B, C, H, W), got shape {tuple(x_small.shape)}")
    scale = int(scale)
    size = (x_small.shape[-2] * scale, x_small.shape[-1] * scale)
    if method == "nearest":
        # "nearest-exact" would differ from "nearest" only for non-integer scales.
        return F.interpolate(x_small, size=size, mode="nearest")
    out = F.interpolate(x_small, size=size, mode=method, align_corners=False)
    return out.clamp(0.0, 1.0) if method == "bicubic" else out


def evaluate_upsamplers(small: Tensor, target: Tensor, scale: int) -> dict[str, dict[str, float]]:
    """Mean PSNR (capped at 100 dB) and mean SSIM of each interpolation against ``target``.

    Returns {method: {"psnr": dB, "ssim": value}} for nearest, bilinear and bicubic.
    """
    results = {}
    for method in UPSAMPLE_METHODS:
        up = upsample(small, scale, method)
        if up.shape != target.shape:
            raise ConfigError(
                f"upsampling {tuple(small.shape)} by {scale} gives {tuple(up.shape)}, but the targets "
                f"are {tuple(target.shape)}; check the scale"
            )
        results[method] = {"psnr": mean_psnr(up, target), "ssim": float(ssim(up, target).mean())}
    return results


# ---------------------------------------------------------------------------------------------
# PCA: the linear autoencoder
# ---------------------------------------------------------------------------------------------


class PCABaseline:
    """PCA on flattened images, with the encode/decode interface of an autoencoder.

    PCA is the best *linear* autoencoder for squared error (its decoder is the transpose of
    its encoder), so "the autoencoder beats PCA at k dimensions" is the claim that the
    nonlinearity pays.

    ``decode`` does **not** clamp by default: the unclamped output is PCA's own reconstruction
    (what ``sklearn``'s ``inverse_transform`` returns) and its SSE is the projection error PCA
    minimises.  Clamping to [0, 1] can only lower the error against images in [0, 1], so pass
    ``clamp=True`` to give PCA that advantage too (and say which one a table reports).
    """

    def __init__(self, pca: PCA, image_shape: tuple[int, int, int]):
        self.pca = pca
        self.image_shape = image_shape  # (C, H, W)

    @property
    def n_components(self) -> int:
        return int(self.pca.n_components_)

    def _flat(self, x: Tensor) -> np.ndarray:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"PCA was fitted on images of shape {self.image_shape}, got {tuple(x.shape[1:])}; "
                "fit it on images like these"
            )
        return x.detach().cpu().reshape(x.shape[0], -1).to(torch.float64).numpy()

    def encode(self, x: Tensor) -> Tensor:
        """Coordinates of (N, C, H, W) images along the principal axes.  (N, k) float32"""
        return torch.from_numpy(self.pca.transform(self._flat(x))).float()

    def decode(self, codes: Tensor, *, clamp: bool = False) -> Tensor:
        """Images from (N, k) codes.  (N, C, H, W) float32, unclamped unless ``clamp``."""
        if codes.dim() != 2 or codes.shape[1] != self.n_components:
            raise ConfigError(f"expected codes of shape (N, {self.n_components}), got {tuple(codes.shape)}")
        flat = self.pca.inverse_transform(codes.detach().cpu().to(torch.float64).numpy())
        out = torch.from_numpy(flat).float().reshape(-1, *self.image_shape)
        return out.clamp(0.0, 1.0) if clamp else out

    def reconstruct(self, x: Tensor, *, clamp: bool = False) -> Tensor:
        """decode(encode(x)).  (N, C, H, W)"""
        return self.decode(self.encode(x), clamp=clamp)


def fit_pca(train_images: Tensor, n_components: int, *, random_state: int = 0) -> PCABaseline:
    """Fit PCA with ``n_components`` axes on (N, C, H, W) training images.

    Randomized SVD, because only the leading k of up to C*H*W axes are wanted and it finds
    them much faster than a full SVD of a large training set; the fixed ``random_state`` makes
    it repeatable (tests/test_metrics.py checks it against the full SVD's reconstructions).
    """
    if train_images.dim() != 4:
        raise ConfigError(f"expected images (N, C, H, W), got shape {tuple(train_images.shape)}")
    n, dim = train_images.shape[0], int(np.prod(train_images.shape[1:]))
    if not 1 <= n_components <= min(n, dim):
        raise ConfigError(
            f"n_components must be between 1 and min(images, pixels) = {min(n, dim)}, got {n_components}"
        )
    flat = train_images.detach().cpu().reshape(n, -1).to(torch.float64).numpy()
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=random_state)
    pca.fit(flat)
    return PCABaseline(pca, tuple(train_images.shape[1:]))


# ---------------------------------------------------------------------------------------------
# Scorers for embeddings and anomaly scores
# ---------------------------------------------------------------------------------------------


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def knn_accuracy(
    train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean) in code space, fitted on the
    training codes and scored on the test codes: how well the embedding keeps classes apart.
    """
    xtr, ytr = _as_numpy(train_codes), _as_numpy(train_labels)
    xte, yte = _as_numpy(test_codes), _as_numpy(test_labels)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ConfigError(
            f"codes and labels differ in number: train {len(xtr)} vs {len(ytr)}, test {len(xte)} vs {len(yte)}"
        )
    if not 1 <= k <= len(xtr):
        raise ConfigError(f"k must be between 1 and the number of training codes ({len(xtr)}), got {k}")
    clf = KNeighborsClassifier(n_neighbors=k).fit(xtr.reshape(len(xtr), -1), ytr)
    return float(clf.score(xte.reshape(len(xte), -1), yte))


def roc_auc(scores_in: Tensor, scores_out: Tensor) -> float:
    """Area under the ROC curve for telling out-of-distribution inputs from in-distribution ones.

    Higher scores must mean "more unusual" (a reconstruction error, say): in-distribution
    scores are labelled 0 and out-of-distribution ones 1, so 1.0 is a perfect detector, 0.5 a
    coin flip, and 0.0 a detector that has the sign backwards.
    """
    s_in, s_out = _as_numpy(scores_in).ravel(), _as_numpy(scores_out).ravel()
    if len(s_in) == 0 or len(s_out) == 0:
        raise ConfigError("ROC AUC needs both in-distribution and out-of-distribution scores")
    scores = np.concatenate([s_in, s_out]).astype(np.float64)
    if not np.isfinite(scores).all():
        raise ConfigError("anomaly scores contain NaN or infinity; check the model's outputs")
    labels = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    return float(roc_auc_score(labels, scores))


__all__ = [
    "DEFAULT_MAX_IMAGES",
    "DENOISERS",
    "UPSAMPLE_METHODS",
    "PCABaseline",
    "evaluate_denoisers",
    "evaluate_upsamplers",
    "fit_pca",
    "gaussian_blur",
    "knn_accuracy",
    "median_filter",
    "nl_means",
    "roc_auc",
    "tune_denoisers",
    "tv_chambolle",
    "upsample",
]
