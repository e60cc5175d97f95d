"""Scoring a run: test-split metrics and, for image-to-image tasks, the baselines on the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..run.folder import Run

SPLITS = ("train", "val", "test")


def score(model, task, splits, *, seed: int = 0, split: str = "test") -> dict[str, Any]:
    """Metrics of ``model`` on one of ``splits``, plus "baselines" where the task has them.

    The baselines' parameters are tuned on validation images; when the validation split is the
    one scored, on training images instead, so that tuning never sees the scored images.
    """
    from ..errors import ConfigError
    from ..eval.evaluate import evaluate_model

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    data = getattr(splits, split)
    metrics = evaluate_model(model, data, task, seed=seed)
    tuning = splits.train if split == "val" else splits.val
    baselines = task.baselines(tuning, data, seed=seed)
    if baselines:
        metrics["baselines"] = baselines
    return metrics


def evaluate(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
             device: str = "auto", split: str = "test", nll_samples: int | None = None,
             nll_images: int | None = None, progress=None) -> dict[str, Any]:
    """Metrics of a trained run on a dataset's test split (its own dataset unless ``dataset``).

    For denoise and super-resolution runs the result also holds "baselines": {name: {"psnr",
    "ssim", ...}} for the noisy input and the classical denoisers (tuned on validation
    images), or for nearest/bilinear/bicubic enlargement, scored on the same images.

    With ``nll_samples`` = K, also the importance-sampled negative log-likelihood
    (:mod:`aekit.eval.likelihood`): "nll" and its standard error "nll_se" over the images, in
    nats per image, on the first ``nll_images`` images of the split (all by default);
    ``progress(n)`` is told as images are finished.
    """
    run = Run.open(run_dir, device=device)
    model = run.model
    if nll_samples is not None:
        from ..eval.likelihood import check_estimable

        check_estimable(model)  # before any time is spent on the other metrics
    splits = run.splits(dataset, data_dir)
    metrics = score(model, run.task, splits, seed=run.config.train.seed, split=split)
    if nll_samples is not None:
        from ..eval.likelihood import estimate_log_likelihood

        data = getattr(splits, split)
        n = len(data) if nll_images is None else min(nll_images, len(data))
        labels = data.labels[:n] if data.labels is not None else None
        estimate = estimate_log_likelihood(model, data.images[:n], labels, samples=nll_samples,
                                           seed=run.config.train.seed, progress=progress)
        metrics.update(estimate.as_dict())
    return metrics
