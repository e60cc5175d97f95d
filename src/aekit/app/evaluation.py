"""Scoring a run: test-split metrics and, for image-to-image tasks, the baselines on the same images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..run.folder import Run

SPLITS = ("train", "val", "test")


def score(model, task, splits, *, seed: int = 0, split: str = "test") -> dict[str, Any]:
    """Metrics of ``model`` on one of ``splits``, plus "baselines" where the task has them.

    The baselines' parameters are tuned on validation images; when the validation split is the
    one scored, on training images instead, so that tuning never sees the scored images.
    """
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
             nll_images: int | None = None, progress=None, samples: int | None = None,
             sampler: str = "prior") -> dict[str, Any]:
    """Metrics of a trained run on a dataset's test split (its own dataset unless ``dataset``).

    For denoise and super-resolution runs the result also holds "baselines": {name: {"psnr",
    "ssim", ...}} for the noisy input and the classical denoisers (tuned on validation
    images), or for nearest/bilinear/bicubic enlargement, scored on the same images.

    With ``nll_samples`` = K, also the importance-sampled negative log-likelihood
    (:mod:`aekit.eval.likelihood`): "nll" and its standard error "nll_se" over the images, in
    nats per image, on the first ``nll_images`` images of the split (all by default);
    ``progress(n)`` is told as images are finished.

    With ``samples`` = N, also "sample_quality": N generated images (``sampler``: the model's
    prior, or ``gmm[:K]``) scored by :func:`aekit.eval.sample_quality.score_samples`.
    """
    run = Run.open(run_dir, device=device)
    model = run.model
    if nll_samples is not None:
        from ..eval.likelihood import check_estimable

        check_estimable(model)  # before any time is spent on the other metrics
    if samples is not None:
        from ..eval.sample_quality import load_scorer
        from ..latent.gmm import parse_sampler

        load_scorer(run.config.data.dataset)  # a dataset without a scorer is refused first
        if parse_sampler(sampler)[0] == "prior" and not model.generative:
            raise ConfigError(f"{model.registry_name} has no prior to sample from; score a fitted mixture "
                              "instead: --sampler gmm")
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
    if samples is not None:
        metrics["sample_quality"] = sample_quality(run, samples, sampler=sampler, dataset=dataset, data_dir=data_dir)
    return metrics


def sample_quality(run: Run, n: int, *, sampler: str = "prior", dataset: str | None = None,
                   data_dir: str | None = None) -> dict[str, Any]:
    """``n`` samples of the run's model scored against its dataset's test images (the shipped
    classifier's statistics): {"fd", "confidence", "class_histogram", "classes_covered", ...,
    "sampler"}.  Draws are seeded by the run's seed, so the figure repeats."""
    import torch

    from ..eval.sample_quality import score_samples
    from ..latent.gmm import parse_sampler
    from ..latent.views import decode_latents
    from .inspect import code_mixture

    model = run.model
    source, components = parse_sampler(sampler)
    generator = torch.Generator().manual_seed(run.config.train.seed)
    if source == "gmm":
        z = code_mixture(run, components, dataset=dataset, data_dir=data_dir).sample(n, generator=generator)
        images = decode_latents(model, z)
        name = f"Gaussian mixture of {components} fitted to the training codes"
    else:
        images = torch.cat([model.sample(min(1000, n - start), generator=generator).float().cpu()
                            for start in range(0, n, 1000)])
        name = "the model's prior"
    return {**score_samples(images, dataset=run.config.data.dataset), "sampler": name}
