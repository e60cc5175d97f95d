"""Scoring a run: test-split metrics and, for image-to-image tasks, the baselines on the same images."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from ..errors import AekitError, ConfigError
from ..run.folder import Run

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def score(model, task, splits, *, seed: int = 0, split: str = "test") -> dict[str, Any]:
    """Metrics of ``model`` on one of ``splits``, plus "baselines" where the task has them: the
    task scores its own kind of output (:meth:`aekit.tasks.Task.score`), and tunes its baselines
    on data other than the scored split."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return task.score(model, splits, split=split, seed=seed)


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
    nats per image, on ``nll_images`` images spread evenly over the split (all by default: the
    first images of MNIST's test split are easier than the rest, so a prefix would flatter);
    ``progress(n)`` is told as images are finished.

    With ``samples`` = N, also "sample_quality": N generated images (``sampler``: the model's
    prior, or ``gmm[:K]``) scored by :func:`aekit.eval.sample_quality.score_samples`.

    What needs no measuring is refused before any time is spent: a model without a likelihood
    (with ``nll_samples``), then a dataset without a scorer or a sampler the model cannot draw
    from (:func:`sample_quality` checks both before it draws, so the samples are drawn first).

    What was measured beyond the test metrics (the NLL, the sample scores) is also stored
    (:func:`store_evaluations`), for the report and the explorer.
    """
    run = Run.open(run_dir, device=device)
    model = run.model
    if nll_samples is not None:
        from ..eval.likelihood import check_estimable

        check_estimable(model)
    quality = None
    if samples is not None:  # sample_quality refuses a sampler the model cannot draw from before it draws
        started = time.perf_counter()
        quality = sample_quality(run, samples, sampler=sampler, dataset=dataset, data_dir=data_dir)
        quality_seconds = round(time.perf_counter() - started, 1)
    splits = run.splits(dataset, data_dir)
    metrics = score(model, run.task, splits, seed=run.config.train.seed, split=split)
    scored_on = dataset or run.config.data.dataset
    stored: dict[str, dict[str, Any]] = {}
    if nll_samples is not None:
        from ..eval.likelihood import estimate_log_likelihood

        data = getattr(splits, split)
        picked = evenly_spread(len(data), nll_images)
        labels = data.labels[picked] if data.labels is not None else None
        started = time.perf_counter()
        estimate = estimate_log_likelihood(model, data.items[picked], labels, samples=nll_samples,
                                           seed=run.config.train.seed, progress=progress)
        metrics.update(run.task.likelihood_metrics(estimate, model, data.items[picked], splits, split))
        key = f"nll {scored_on} {split} K={estimate.samples} N={int(estimate.log_likelihood.numel())}"
        stored[key] = {"measured": "nll", "dataset": scored_on, "split": split, **estimate.as_dict(),
                       "seconds": round(time.perf_counter() - started, 1)}
    if quality is not None:  # last, in the metrics and in evaluations.json
        metrics["sample_quality"] = quality
        record = {k: v for k, v in quality.items() if not isinstance(v, list)}  # JSON records hold no lists
        if "classes" in quality:
            record["class_histogram"] = dict(zip(quality["classes"], quality["class_histogram"]))
        stored[f"samples {scored_on} {sampler} N={samples}"] = {
            "measured": "sample_quality", "dataset": scored_on, "sampler_option": sampler, **record,
            "seconds": quality_seconds}
    if stored:
        store_evaluations(run, stored)
    return metrics


def store_evaluations(run: Run, records: dict[str, dict[str, Any]]) -> Path | None:
    """Add ``records`` to the run's ``evaluations.json`` (atomically), so that the report and the
    explorer show what was measured without measuring it again.  Returns the file written.

    The file is :meth:`Run.output_file`'s: in the run folder, or for a read-only run (a shipped
    or downloaded model: ``pretrained:NAME``, ``hf://ORG/NAME``) in its own folder in aekit's
    cache, beside the mixtures and the report derived from it.  Where even that cannot be
    written (a run folder without write permission, no cache folder), nothing is kept: the
    figures were printed, and the log says why they were not stored."""
    import json
    import os

    from ..fileio import atomic_write_text
    from ..run.layout import EVALUATIONS_NAME, read_evaluations

    try:
        path = run.output_file(EVALUATIONS_NAME)
    except ConfigError as err:  # a read-only run whose cache folder cannot be made
        log.info("%s; the evaluation is printed but not stored", err)
        return None
    if not os.access(path.parent, os.W_OK):
        log.info("%s is read-only; the evaluation is printed but not stored", path.parent)
        return None
    try:
        merged = {**read_evaluations(path.parent), **records}
    except AekitError:  # an unreadable old file is replaced rather than blocking the new figures
        merged = dict(records)
    stamped = {key: {**record, "date": time.strftime("%Y-%m-%d")} if key in records else record
               for key, record in merged.items()}
    atomic_write_text(path, json.dumps(stamped, indent=1, allow_nan=False) + "\n")
    return path


def evenly_spread(total: int, wanted: int | None) -> slice:
    """Every k-th index of ``range(total)``, ``wanted`` of them (all when None): a subset that
    samples the whole split, and the same one every time."""
    if wanted is None or wanted >= total:
        return slice(0, total)
    return slice(0, (total // wanted) * wanted, total // wanted)


def sample_quality(run: Run, n: int, *, sampler: str = "prior", dataset: str | None = None,
                   data_dir: str | None = None) -> dict[str, Any]:
    """``n`` samples of the run's model scored against its dataset's test images (the shipped
    classifier's statistics): {"fd", "confidence", "class_histogram", "classes_covered", ...,
    "sampler"}.  Draws are seeded by the run's seed, so the figure repeats.

    ``sampler``: "prior" (generative models), "normal" (N(0, I) codes) or "gmm[:K]" (a mixture
    fitted to the training codes; :func:`aekit.app.inspect.code_mixture`).  A dataset without a
    scorer, or a sampler the model cannot draw from (no prior; codes without a label for a
    conditional model), is refused in one line before anything is fitted or drawn."""
    import torch

    from ..eval.sample_quality import load_scorer, score_samples
    from ..latent.gmm import parse_sampler
    from ..latent.views import decode_latents
    from .inspect import code_mixture

    model = run.model
    load_scorer(run.config.data.dataset)  # a dataset without a scorer is refused first
    source, components = parse_sampler(sampler)
    # What the model cannot draw from is refused here, before any codes are fitted or drawn.
    if source in ("normal", "gmm") and model.conditional:
        raise ConfigError(f"--sampler {source} draws codes without a label; score a conditional model's prior")
    if source == "prior" and not model.generative:
        raise ConfigError(f"{model.registry_name} has no prior to sample from; score a fitted mixture "
                          "instead: --sampler gmm")
    generator = torch.Generator().manual_seed(run.config.train.seed)
    if source == "gmm":
        z = code_mixture(run, components, dataset=dataset, data_dir=data_dir).sample(n, generator=generator)
        images = decode_latents(model, z)
        name = f"Gaussian mixture of {components} fitted to the training codes"
    elif source == "normal":
        images = decode_latents(model, torch.randn((n, model.latent_dim), generator=generator))
        name = "N(0, I) codes"
    else:
        images = torch.cat([model.sample(min(1000, n - start), generator=generator).float().cpu()
                            for start in range(0, n, 1000)])
        name = "the model's prior"
    return {**score_samples(images, dataset=run.config.data.dataset), "sampler": name}


# -- labels -------------------------------------------------------------------------------------------

def metric_labels(task=None) -> dict[str, str]:
    """The metrics' labels (:data:`aekit.eval.evaluate.METRIC_LABELS`) in the words of ``task``'s
    data: "ELBO (nats per melody)", "standard error over melodies" for a melody run; as they are
    for images (and without a task)."""
    from ..eval.evaluate import METRIC_LABELS

    if task is None or task.data_kind == "image":
        return dict(METRIC_LABELS)
    return {key: per_item(label, task.data_kind, task.data_plural) for key, label in METRIC_LABELS.items()}


def per_item(text: str, kind: str, plural: str) -> str:
    """``text`` with the words "image" and "images" replaced by ``kind`` and ``plural``."""
    return re.sub(r"\bimages?\b", lambda m: plural if m[0] == "images" else kind, text)
