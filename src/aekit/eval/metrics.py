"""Image-quality metrics as small pure functions on tensors.

Every function takes a reconstruction ``x_hat`` and a reference ``x`` of the same shape
(B, C, H, W), pixel values on a scale whose full range is ``data_range`` (1.0 for images in
[0, 1]), and returns one value per image, shape (B,), in float64: the images are small but the
test sets are large, and float32 sums over thousands of pixels lose the digits that separate
two good models.  Nothing here needs gradients, so everything runs under ``no_grad``.

Reductions are per image, never over the batch, so a table can report a mean *and* a spread,
and a bad image can be found by its index.  :func:`summarize` turns the per-image values into
the means a table shows.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import AekitError, ConfigError

log = logging.getLogger(__name__)

# Above this, PSNR says nothing useful: 100 dB is an RMSE of 1e-5 of the data range, far below
# the 8-bit quantisation step (1/255 is about 48 dB away from zero error).  It is the cap that
# mean_psnr applies so that one perfect image does not make a whole mean infinite.
PSNR_CAP_DB = 100.0

# SSIM constants of Wang et al. 2004 ("Image quality assessment: from error visibility to
# structural similarity", IEEE TIP 13(4)), with the Gaussian window they use.
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # skimage's choice: radius int(3.5 * 1.5 + 0.5) = 5, so an 11x11 window

# SSIM holds five float64 maps per image at once; chunking bounds that at about
# 5 * 1024 * 784 * 8 bytes = 32 MB for 28x28 grey images, whatever the batch size.
_SSIM_CHUNK = 1024


def _check_pair(x_hat: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Both as float64 (B, C, H, W), or a ConfigError that says what does not fit."""
    if x_hat.shape != x.shape:
        raise ConfigError(
            f"reconstruction and reference differ in shape: {tuple(x_hat.shape)} vs "
            f"{tuple(x.shape)}; compare each image with its own reference"
        )
    if x.dim() != 4:
        raise ConfigError(
            f"expected a batch of images (B, C, H, W), got shape {tuple(x.shape)}; "
            "add the missing axes with x[None] or x[:, None]"
        )
    return x_hat.detach().to(torch.float64), x.detach().to(torch.float64)


@torch.no_grad()
def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error of each image, averaged over its C*H*W pixels.  (B,) float64."""
    x_hat, x = _check_pair(x_hat, x)
    return (x_hat - x).pow(2).flatten(1).mean(dim=1)


@torch.no_grad()
def sse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Sum of squared errors of each image over its C*H*W pixels.  (B,) float64.

    The sum, not the mean, is what a Gaussian decoder's negative log-likelihood and the PCA
    projection error are written in, so comparisons with PCA use this one.
    """
    x_hat, x = _check_pair(x_hat, x)
    return (x_hat - x).pow(2).flatten(1).sum(dim=1)


@torch.no_grad()
def bce_per_pixel(x_hat: Tensor, x: Tensor, *, eps: float = 1e-7) -> Tensor:
    """Binary cross-entropy of each image, averaged over its pixels, in nats.  (B,) float64.

    ``x_hat`` is clamped to [eps, 1 - eps] first, so a confident wrong pixel costs about
    -log(eps) = 16 nats instead of infinity.  The reference ``x`` may be grey (not only 0/1);
    then the minimum over ``x_hat`` is the entropy of ``x``, not zero.
    """
    x_hat, x = _check_pair(x_hat, x)
    p = x_hat.clamp(eps, 1.0 - eps)
    bce = -(x * torch.log(p) + (1.0 - x) * torch.log1p(-p))
    return bce.flatten(1).mean(dim=1)


@torch.no_grad()
def psnr(x_hat: Tensor, x: Tensor, *, data_range: float = 1.0, max_db: float | None = None) -> Tensor:
    """Peak signal-to-noise ratio of each image in dB: 10 log10(data_range^2 / MSE).  (B,) float64.

    An image identical to its reference has MSE 0 and PSNR ``+inf``; that is kept (it is the
    true value, and scikit-image returns the same) unless ``max_db`` is given, which caps
    every value at ``max_db``.  Use :func:`mean_psnr` for a number to put in a table.
    """
    mse = mse_per_image(x_hat, x)
    # Division by zero gives +inf in torch (no warning), and log10(inf) = inf.
    value = 10.0 * torch.log10(data_range**2 / mse)
    if max_db is not None:
        value = value.clamp(max=max_db)
    return value


@torch.no_grad()
def mean_psnr(x_hat: Tensor, x: Tensor, *, data_range: float = 1.0, max_db: float = PSNR_CAP_DB) -> float:
    """Mean over images of the per-image PSNR (the usual convention), each capped at ``max_db``.

    The mean of per-image PSNRs, not the PSNR of the mean MSE: the two differ (the first is
    what papers on MNIST-sized images report, and it weighs every image alike).  The cap keeps
    a single perfect reconstruction from turning the mean into +inf; see :data:`PSNR_CAP_DB`
    for why 100 dB.
    """
    return float(psnr(x_hat, x, data_range=data_range, max_db=max_db).mean())


def _gaussian_kernel1d(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalised 1-D Gaussian that scipy.ndimage.gaussian_filter uses.  (2r+1,)"""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


@torch.no_grad()
def ssim(x_hat: Tensor, x: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image, averaged over channels and positions.  (B,) float64.

    Wang et al. 2004 with their 11x11 Gaussian window (sigma 1.5) and population (not sample)
    covariances, which is ``skimage.metrics.structural_similarity(x_hat, x, data_range=1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)`` for each
    image; tests/test_metrics.py checks that they agree.

    Steps:
      1. local means, second moments and cross moment by one separable Gaussian convolution
         of the five maps x, y, x*x, y*y, x*y;
      2. the SSIM map from those, with C1 = (0.01 R)^2 and C2 = (0.03 R)^2;
      3. the mean of the map over positions at least 5 pixels (the window's radius) from the
         border, and over channels.

    Step 3 follows skimage, which filters with reflected borders and then crops them off: a
    convolution without padding ("valid") gives exactly the uncropped part, so no padding is
    done at all.  Images must be at least 11x11.
    """
    x_hat, x = _check_pair(x_hat, x)
    b, c, h, w = x.shape
    radius = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    size = 2 * radius + 1
    if h < size or w < size:
        raise ConfigError(
            f"SSIM needs images of at least {size}x{size} (its Gaussian window), got {h}x{w}; "
            "upsample the images or report PSNR only"
        )
    g = _gaussian_kernel1d(_SSIM_SIGMA, radius, x.dtype, x.device)
    # One grouped convolution filters the five maps at once: weight (5, 1, kh, kw).
    g_rows = g.view(1, 1, 1, size).expand(5, 1, 1, size)
    g_cols = g.view(1, 1, size, 1).expand(5, 1, size, 1)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2

    out = []
    for start in range(0, b, _SSIM_CHUNK):
        # Channels become batch entries: SSIM is computed per channel, then averaged.
        xs = x_hat[start : start + _SSIM_CHUNK].reshape(-1, 1, h, w)  # (b'*C, 1, H, W)
        ys = x[start : start + _SSIM_CHUNK].reshape(-1, 1, h, w)
        maps = torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=1)  # (b'*C, 5, H, W)
        maps = F.conv2d(F.conv2d(maps, g_rows, groups=5), g_cols, groups=5)  # (b'*C, 5, H-10, W-10)
        ux, uy, uxx, uyy, uxy = maps.unbind(dim=1)
        vx = uxx - ux * ux
        vy = uyy - uy * uy
        vxy = uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        # Every channel's map has the same size, so the mean over (C, h', w') is the mean of
        # the per-channel means, which is how skimage combines channels.
        out.append(s.reshape(-1, c * s.shape[-2] * s.shape[-1]).mean(dim=1))
    return torch.cat(out)


def summarize(values: dict[str, Tensor]) -> dict[str, float]:
    """The mean of each per-image array, as plain floats for a table or a JSON file.

    The means are plain: a +inf PSNR makes its mean +inf, and that is logged as a warning
    rather than hidden (pass PSNRs through ``psnr(..., max_db=PSNR_CAP_DB)`` first to cap them).
    NaN values are a bug upstream and raise.
    """
    result = {}
    for name, v in values.items():
        v = torch.as_tensor(v).detach().to(torch.float64)
        if v.numel() == 0:
            raise ConfigError(f"no values for {name!r}; evaluate at least one image")
        if torch.isnan(v).any():
            raise AekitError(f"{name!r} has NaN values; the model or the data produced NaNs")
        mean = float(v.mean())
        if not math.isfinite(mean):
            log.warning("mean of %r is %s: some per-image values are infinite", name, mean)
        result[name] = mean
    return result
