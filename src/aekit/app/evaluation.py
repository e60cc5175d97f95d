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
             device: str = "auto", split: str = "test") -> dict[str, Any]:
    """Metrics of a trained run on a dataset's test split (its own dataset unless ``dataset``).

    For denoise and super-resolution runs the result also holds "baselines": {name: {"psnr",
    "ssim", ...}} for the noisy input and the classical denoisers (tuned on validation
    images), or for nearest/bilinear/bicubic enlargement, scored on the same images.
    """
    run = Run.open(run_dir, device=device)
    splits = run.splits(dataset, data_dir)
    return score(run.model, run.task, splits, seed=run.config.train.seed, split=split)
