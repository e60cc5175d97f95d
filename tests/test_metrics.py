"""The metrics against independent sources (scikit-image, NumPy, scikit-learn), and the
baselines against the behaviour that makes them fair comparisons."""

from __future__ import annotations

import itertools
import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize
from sklearn.decomposition import PCA

from aekit.errors import AekitError, ConfigError
from aekit.eval import (
    DENOISERS,
    PSNR_CAP_DB,
    bce_per_pixel,
    evaluate_denoisers,
    evaluate_upsamplers,
    fit_pca,
    gaussian_blur,
    knn_accuracy,
    mean_psnr,
    median_filter,
    mse_per_image,
    nl_means,
    psnr,
    roc_auc,
    sse_per_image,
    ssim,
    summarize,
    tune_denoisers,
    tv_chambolle,
    upsample,
)
from aekit.eval import metrics as metrics_module


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noisy_pair(shape, sigma=0.1, seed=0):
    g = _gen(seed)
    x = torch.rand(shape, generator=g)
    x_hat = (x + sigma * torch.randn(shape, generator=g)).clamp(0, 1)
    return x_hat, x


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0
    )


def _photo_patches(c: int, size: int, n: int = 4) -> torch.Tensor:
    """Real image content: crops of scikit-image's bundled photographs, shrunk to ~MNIST scale."""
    if c == 1:
        img = skdata.camera().astype(np.float64)[None] / 255.0  # (1, 512, 512)
    else:
        img = skdata.astronaut().astype(np.float64).transpose(2, 0, 1) / 255.0  # (3, 512, 512)
    small = resize(img, (c, 96, 96), anti_aliasing=True)
    rng = np.random.default_rng(size + c)
    crops = []
    for _ in range(n):
        i, j = rng.integers(0, 96 - size, size=2)
        crops.append(small[:, i : i + size, j : j + size])
    return torch.tensor(np.stack(crops))


def _rectangles(n: int, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Piecewise-constant images (a few bright rectangles on black): easy to denoise well."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, size, size))
    for img in out:
        for _ in range(3):
            i, j = rng.integers(0, size - 8, size=2)
            h, w = rng.integers(4, 12, size=2)
            img[0, i : i + h, j : j + w] = rng.uniform(0.5, 1.0)
    return torch.tensor(out, dtype=torch.float32)


def _add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=_gen(seed))).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# Pixel errors
# ---------------------------------------------------------------------------------------------


def test_mse_sse_bce_match_numpy():
    x_hat, x = _noisy_pair((5, 3, 8, 9), sigma=0.3)
    # Exact 0s and 1s in the prediction exercise the clamp in the BCE.
    x_hat[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.0])
    a, b = x_hat.double().numpy(), x.double().numpy()
    diff2 = (a - b) ** 2
    np.testing.assert_allclose(mse_per_image(x_hat, x).numpy(), diff2.mean(axis=(1, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(sse_per_image(x_hat, x).numpy(), diff2.sum(axis=(1, 2, 3)), rtol=1e-12)
    eps = 1e-7
    p = np.clip(a, eps, 1 - eps)
    bce = -(b * np.log(p) + (1 - b) * np.log(1 - p))
    np.testing.assert_allclose(bce_per_pixel(x_hat, x, eps=eps).numpy(), bce.mean(axis=(1, 2, 3)), rtol=1e-9)
    assert mse_per_image(x_hat, x).dtype == torch.float64
    assert mse_per_image(x_hat, x).shape == (5,)


def test_bce_matches_torch_away_from_the_clamp():
    x_hat, x = _noisy_pair((4, 1, 10, 10), sigma=0.2, seed=1)
    x_hat = x_hat.clamp(0.01, 0.99).double()
    expected = F.binary_cross_entropy(x_hat, x.double(), reduction="none").mean(dim=(1, 2, 3))
    torch.testing.assert_close(bce_per_pixel(x_hat, x), expected)


def test_bce_clamp_bounds_a_confident_wrong_pixel():
    x = torch.ones(1, 1, 1, 1)
    wrong = torch.zeros(1, 1, 1, 1)
    assert bce_per_pixel(wrong, x, eps=1e-7).item() == pytest.approx(-np.log(1e-7))


def test_shape_mismatch_and_missing_axes_are_config_errors():
    with pytest.raises(ConfigError, match="differ in shape"):
        mse_per_image(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        psnr(torch.zeros(4, 4), torch.zeros(4, 4))


# ---------------------------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (3, 3, 32, 32)])
def test_psnr_matches_skimage_per_image(shape):
    x_hat, x = _noisy_pair(shape, sigma=0.05 * (1 + len(shape)))
    expected = [
        peak_signal_noise_ratio(x[i].double().numpy(), x_hat[i].double().numpy(), data_range=1)
        for i in range(shape[0])
    ]
    np.testing.assert_allclose(psnr(x_hat, x).numpy(), expected, rtol=1e-10)


def test_psnr_uses_data_range():
    x_hat, x = _noisy_pair((3, 1, 12, 12), sigma=0.1, seed=2)
    expected = [
        peak_signal_noise_ratio(255 * x[i].double().numpy(), 255 * x_hat[i].double().numpy(), data_range=255)
        for i in range(3)
    ]
    np.testing.assert_allclose(psnr(255 * x_hat, 255 * x, data_range=255).numpy(), expected, rtol=1e-6)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    c=st.sampled_from([1, 3]),
    h=st.integers(2, 20),
    w=st.integers(2, 20),
    sigma=st.floats(1e-3, 0.5),
    seed=st.integers(0, 2**16),
)
def test_psnr_matches_skimage_on_any_shape(c, h, w, sigma, seed):
    x_hat, x = _noisy_pair((2, c, h, w), sigma=sigma, seed=seed)
    if torch.equal(x_hat, x):
        return  # the identical case has its own test
    expected = [
        peak_signal_noise_ratio(x[i].double().numpy(), x_hat[i].double().numpy(), data_range=1)
        for i in range(2)
    ]
    np.testing.assert_allclose(psnr(x_hat, x).numpy(), expected, rtol=1e-9)


def test_identical_images_give_inf_psnr_and_mean_psnr_caps_them():
    x_hat, x = _noisy_pair((2, 1, 8, 8), sigma=0.1)
    x_hat[0] = x[0]
    values = psnr(x_hat, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the division by zero
        assert peak_signal_noise_ratio(x[0].numpy(), x_hat[0].numpy(), data_range=1) == np.inf
    assert values[0].item() == float("inf")
    assert np.isfinite(values[1].item())
    assert psnr(x_hat, x, max_db=50.0)[0].item() == 50.0
    assert mean_psnr(x_hat, x) == pytest.approx((PSNR_CAP_DB + values[1].item()) / 2)
    # The cap never raises a finite value: an image above the cap is the only one that moves.
    assert mean_psnr(x_hat[1:], x[1:]) == pytest.approx(values[1].item())


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_ssim_matches_skimage_on_random_images(c, size):
    x_hat, x = _noisy_pair((4, c, size, size), sigma=0.15, seed=size + c)
    expected = [_skimage_ssim(x_hat[i].double().numpy(), x[i].double().numpy()) for i in range(4)]
    np.testing.assert_allclose(ssim(x_hat, x).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_ssim_matches_skimage_on_photographs(c, size):
    x = _photo_patches(c, size)
    # Three kinds of damage, so that luminance, contrast and structure terms all vary.
    blurred = torch.tensor(resize(resize(x.numpy(), (4, c, size // 2, size // 2)), x.shape))
    noisy = _add_noise(x, 0.05, seed=3)
    darker = 0.8 * x
    for x_hat in (blurred, noisy, darker):
        expected = [_skimage_ssim(x_hat[i].numpy(), x[i].numpy()) for i in range(len(x))]
        np.testing.assert_allclose(ssim(x_hat, x).numpy(), expected, atol=1e-6)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    x_hat, x = _noisy_pair((3, 1, 16, 16), sigma=0.2)
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert (ssim(x_hat, x) < 0.99).all()


def test_ssim_chunking_does_not_change_values(monkeypatch):
    x_hat, x = _noisy_pair((7, 2, 14, 14), sigma=0.2, seed=5)
    whole = ssim(x_hat, x)
    monkeypatch.setattr(metrics_module, "_SSIM_CHUNK", 3)
    torch.testing.assert_close(ssim(x_hat, x), whole)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ConfigError, match="11x11"):
        ssim(torch.zeros(1, 1, 10, 28), torch.zeros(1, 1, 10, 28))


# ---------------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------------


def test_summarize_means_and_nonfinite_handling(caplog):
    out = summarize({"a": torch.tensor([1.0, 2.0, 6.0]), "b": torch.tensor([0.5], dtype=torch.float64)})
    assert out == {"a": 3.0, "b": 0.5}
    assert all(type(v) is float for v in out.values())
    with caplog.at_level(logging.WARNING, logger="aekit.eval.metrics"):
        assert summarize({"psnr": torch.tensor([float("inf"), 20.0])})["psnr"] == float("inf")
    assert "psnr" in caplog.text
    with pytest.raises(AekitError, match="NaN"):
        summarize({"mse": torch.tensor([float("nan"), 1.0])})


# ---------------------------------------------------------------------------------------------
# Denoisers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "param"), [(median_filter, 3), (gaussian_blur, 1.0), (tv_chambolle, 0.1), (nl_means, 0.1)]
)
@pytest.mark.parametrize("c", [1, 3])
def test_denoisers_filter_each_image_alone(fn, param, c):
    noisy = torch.rand((3, c, 16, 16), generator=_gen(c))
    batch = fn(noisy, param)
    assert batch.shape == noisy.shape and batch.dtype == noisy.dtype
    assert batch.min() >= 0 and batch.max() <= 1
    assert not torch.equal(batch, noisy)
    # Filtering a batch must equal filtering each image on its own: no mixing across images.
    one_by_one = torch.cat([fn(noisy[i : i + 1], param) for i in range(3)])
    torch.testing.assert_close(batch, one_by_one)


def test_median_filter_matches_scipy_per_channel():
    from scipy.ndimage import median_filter as scipy_median

    noisy = torch.rand((2, 3, 12, 12), generator=_gen(9), dtype=torch.float64)
    expected = np.stack([[scipy_median(ch, size=5) for ch in img] for img in noisy.numpy()])
    np.testing.assert_array_equal(median_filter(noisy, 5).numpy(), expected)


def test_tuning_picks_the_best_grid_value_on_validation():
    clean = _rectangles(24, seed=1)
    noisy = _add_noise(clean, 0.2, seed=1)
    grids = {"median_filter": DENOISERS["median_filter"], "gaussian_blur": DENOISERS["gaussian_blur"]}
    best = tune_denoisers(noisy, clean, denoisers=grids)
    for name, (fn, grid) in grids.items():
        # An independent score: skimage's PSNR, image by image.
        scores = []
        for p in grid:
            out = fn(noisy, p).double().numpy()
            scores.append(
                np.mean(
                    [peak_signal_noise_ratio(c, o, data_range=1) for c, o in zip(clean.double().numpy(), out)]
                )
            )
        assert best[name] == grid[int(np.argmax(scores))]


def test_tuning_follows_the_noise_level_of_the_validation_images():
    clean = _rectangles(24, seed=2)
    grids = {"gaussian_blur": DENOISERS["gaussian_blur"], "tv_chambolle": DENOISERS["tv_chambolle"]}
    light = tune_denoisers(_add_noise(clean, 0.03, seed=2), clean, denoisers=grids)
    heavy = tune_denoisers(_add_noise(clean, 0.4, seed=2), clean, denoisers=grids)
    assert light["gaussian_blur"] < heavy["gaussian_blur"]
    assert light["tv_chambolle"] < heavy["tv_chambolle"]


def test_tuned_denoisers_beat_the_noisy_input_on_test_images():
    clean = _rectangles(48, seed=3)
    noisy = _add_noise(clean, 0.25, seed=3)
    val, test = slice(0, 16), slice(16, 48)
    params = tune_denoisers(noisy[val], clean[val], max_images={"nl_means": 8})
    assert set(params) == set(DENOISERS)
    assert all(params[name] in grid for name, (_, grid) in DENOISERS.items())
    results = evaluate_denoisers(noisy[test], clean[test], params, max_images={"nl_means": 10})
    assert next(iter(results)) == "noisy input"
    assert results["noisy input"]["param"] is None
    assert results["noisy input"]["n"] == 32
    assert results["nl_means"]["n"] == 10  # the subset is reported
    assert results["median_filter"]["n"] == 32
    for name in DENOISERS:
        assert results[name]["param"] == params[name]
        assert results[name]["psnr"] > results["noisy input"]["psnr"] + 2, name
        assert results[name]["ssim"] > results["noisy input"]["ssim"], name


def test_evaluate_denoisers_needs_every_parameter():
    clean = _rectangles(4)
    with pytest.raises(ConfigError, match="tune_denoisers"):
        evaluate_denoisers(clean, clean, {"median_filter": 3})


# ---------------------------------------------------------------------------------------------
# Upsampling
# ---------------------------------------------------------------------------------------------


def _smooth_images(n: int = 4, size: int = 32) -> torch.Tensor:
    t = torch.linspace(0, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    imgs = [0.5 + 0.4 * torch.sin(2 * np.pi * (f * xx + 0.7 * f * yy) + f) for f in range(1, n + 1)]
    return torch.stack(imgs)[:, None]  # (n, 1, size, size)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("scale", [2, 4])
def test_upsample_shapes(method, scale):
    small = torch.rand(2, 3, 7, 9)
    assert upsample(small, scale, method).shape == (2, 3, 7 * scale, 9 * scale)


def test_nearest_repeats_pixels():
    small = torch.rand(2, 1, 5, 6)
    expected = small.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)
    torch.testing.assert_close(upsample(small, 3, "nearest"), expected)


def test_bicubic_beats_nearest_on_smooth_images():
    target = _smooth_images()
    small = F.avg_pool2d(target, 2)
    results = evaluate_upsamplers(small, target, 2)
    assert set(results) == {"nearest", "bilinear", "bicubic"}
    assert results["bicubic"]["psnr"] > results["nearest"]["psnr"] + 3
    assert results["bicubic"]["ssim"] > results["nearest"]["ssim"]


def test_bicubic_is_clamped_where_it_overshoots():
    small = torch.zeros(1, 1, 6, 6)
    small[..., :, 3:] = 1.0  # a hard edge, where the cubic kernel rings
    raw = F.interpolate(small, scale_factor=4, mode="bicubic", align_corners=False)
    assert raw.max() > 1 and raw.min() < 0  # the overshoot this clamp is for exists
    out = upsample(small, 4, "bicubic")
    assert out.min() == 0 and out.max() == 1
    torch.testing.assert_close(out, raw.clamp(0, 1))


def test_upsample_rejects_bad_method_and_mismatched_targets():
    with pytest.raises(ConfigError, match="bicubic"):
        upsample(torch.zeros(1, 1, 4, 4), 2, "lanczos")
    with pytest.raises(ConfigError, match="check the scale"):
        evaluate_upsamplers(torch.zeros(1, 1, 14, 14), torch.zeros(1, 1, 28, 28), 3)


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


def _low_rank_images(n: int = 300, seed: int = 0) -> torch.Tensor:
    """Images near one fixed 12-dimensional subspace with decaying variances, plus a little
    noise; ``seed`` draws different images from the same subspace."""
    basis = np.random.default_rng(0).normal(size=(12, 1 * 10 * 10))
    rng = np.random.default_rng(seed + 1)
    coefs = rng.normal(size=(n, 12)) * np.linspace(3, 0.3, 12)
    flat = 0.5 + 0.03 * (coefs @ basis) + 0.01 * rng.normal(size=(n, 100))
    return torch.tensor(flat.reshape(n, 1, 10, 10), dtype=torch.float32)


def test_pca_error_decreases_with_components():
    train, test = _low_rank_images(300, seed=0), _low_rank_images(50, seed=1)
    errors = [
        float(sse_per_image(fit_pca(train, k).reconstruct(test), test).mean()) for k in (1, 2, 4, 8, 12)
    ]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors


def test_pca_matches_sklearn_full_svd():
    train = _low_rank_images(300, seed=1)
    test = _low_rank_images(40, seed=2)
    baseline = fit_pca(train, 6)
    reference = PCA(n_components=6, svd_solver="full").fit(train.reshape(300, -1).double().numpy())
    expected = reference.inverse_transform(reference.transform(test.reshape(40, -1).double().numpy()))
    codes = baseline.encode(test)
    assert codes.shape == (40, 6)
    recon = baseline.decode(codes)
    assert recon.shape == test.shape
    np.testing.assert_allclose(recon.reshape(40, -1).numpy(), expected, atol=1e-5)
    # Codes agree up to the sign of each axis, which SVD leaves free.
    ref_codes = reference.transform(test.reshape(40, -1).double().numpy())
    np.testing.assert_allclose(np.abs(codes.numpy()), np.abs(ref_codes), atol=1e-4)


def test_pca_clamp_is_optional_and_only_helps():
    rng = np.random.default_rng(3)
    train = torch.tensor(rng.uniform(size=(200, 1, 6, 6)) ** 4, dtype=torch.float32)  # many near 0
    baseline = fit_pca(train, 3)
    raw = baseline.reconstruct(train)
    clamped = baseline.reconstruct(train, clamp=True)
    assert raw.min() < 0  # the unclamped reconstruction leaves [0, 1] on these images
    assert clamped.min() >= 0 and clamped.max() <= 1
    assert (sse_per_image(clamped, train) <= sse_per_image(raw, train) + 1e-12).all()


def test_pca_rejects_bad_shapes():
    train = _low_rank_images(50)
    with pytest.raises(ConfigError, match="n_components"):
        fit_pca(train, 0)
    baseline = fit_pca(train, 3)
    with pytest.raises(ConfigError, match="fitted on images of shape"):
        baseline.encode(torch.zeros(2, 1, 28, 28))


# ---------------------------------------------------------------------------------------------
# k-NN and ROC AUC
# ---------------------------------------------------------------------------------------------


def _clusters(n: int, seed: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    return centres[labels] + spread * torch.randn(n, 3, generator=g), labels


def test_knn_accuracy_on_separable_clusters_is_one():
    xtr, ytr = _clusters(150, seed=0, spread=1.0)
    xte, yte = _clusters(90, seed=1, spread=1.0)
    assert knn_accuracy(xtr, ytr, xte, yte, k=5) == pytest.approx(1.0)


def test_knn_accuracy_with_random_labels_is_chance():
    xtr, _ = _clusters(300, seed=2, spread=1.0)
    xte, _ = _clusters(300, seed=3, spread=1.0)
    ytr = torch.randint(0, 2, (300,), generator=_gen(4))
    yte = torch.randint(0, 2, (300,), generator=_gen(5))
    assert 0.35 < knn_accuracy(xtr, ytr, xte, yte) < 0.65


def test_roc_auc_orientation_and_chance():
    scores_in = torch.rand(200, generator=_gen(0))
    assert roc_auc(scores_in, scores_in + 2.0) == 1.0  # OOD scores higher: perfect
    assert roc_auc(scores_in + 2.0, scores_in) == 0.0  # the sign backwards
    same_in = torch.randn(4000, generator=_gen(1))
    same_out = torch.randn(4000, generator=_gen(2))
    assert abs(roc_auc(same_in, same_out) - 0.5) < 0.03


def test_roc_auc_needs_both_sets():
    with pytest.raises(ConfigError):
        roc_auc(torch.rand(5), torch.rand(0))
