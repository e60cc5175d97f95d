"""Training a VQ-VAE's prior, the second stage: ``aekit train-prior RUN``.

1. Take the run's lock (:class:`aekit.run.lock.RunLock`: no trainer may write the folder
   meanwhile), open the run and load its model in eval mode, so that the codebook's EMA never
   runs and the autoencoder stays as it was trained.
2. Encode the training and validation splits to grids of code indices, once.
3. Train the prior (the model's PixelCNN) on the training grids with cross-entropy: AdamW and
   the trainer's own warm-up and cosine schedule (:func:`aekit.train.schedule.get_lr`).
4. Record the prior's epochs in the model (its ``prior_epochs`` buffer), then write
   ``model.safetensors`` atomically (:func:`aekit.train.checkpoint.save_weights`: a temporary
   file in the folder, then a rename) and ``prior_metrics.json`` beside it.  Nothing is written
   if training fails, so a failed run leaves the folder as it was.

The run's checkpoints keep the autoencoder's last training state, untrained prior included: a
run resumed with ``aekit train --resume`` changes its codes, and its prior must then be trained
again (``prior_epochs`` is 0 in the checkpoint, so sampling says so).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import check_positive
from ..errors import ConfigError, TrainingError
from ..fileio import atomic_write_text
from ..run import layout
from ..run.folder import Run
from ..run.lock import RunLock

log = logging.getLogger(__name__)

PRIOR_METRICS_NAME = "prior_metrics.json"
ENCODE_BATCH = 500  # images encoded at once: a few MB of activations
WARMUP_STEPS = 100  # as the trainer's default: the first Adam steps do not overshoot
MIN_LR_RATIO = 0.1  # the cosine decays to a tenth of --lr, as the trainer's does


@dataclass
class PriorCallbacks:
    """What the CLI hears: ``on_epoch_start(epoch, batches)``, ``on_step()`` after each batch,
    ``on_epoch(record)`` with the epoch's NLLs."""

    on_epoch_start: Callable[[int, int], None] | None = None
    on_step: Callable[[], None] | None = None
    on_epoch: Callable[[dict[str, Any]], None] | None = None


@dataclass
class PriorResult:
    run_dir: Path
    metrics: dict[str, Any]  # what prior_metrics.json holds
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch


def _grids(model, images, task, *, seed: int) -> Any:
    """The code indices of ``images`` as the model sees them (its task's inputs).  (N, h, w) int64"""
    import torch

    out = []
    for start in range(0, images.shape[0], ENCODE_BATCH):
        clean = images[start:start + ENCODE_BATCH].to(model.prior_epochs.device)
        out.append(model.code_indices(task.fixed_inputs(clean, seed=seed, first_index=start)).cpu())
    return torch.cat(out) if out else torch.empty(0, *model.grid, dtype=torch.long)


def _mean_nll(model, grids, batch_size: int) -> float:
    """Mean -log p(grid) under the prior, in nats per image."""
    import torch

    total = 0.0
    with torch.no_grad():
        for start in range(0, grids.shape[0], batch_size):
            batch = grids[start:start + batch_size].to(model.prior_epochs.device)
            total += float(model.prior_nll(batch).double().sum())
    return total / max(grids.shape[0], 1)


def train_prior(run_dir: str | Path, *, epochs: int = 6, batch_size: int = 128, lr: float = 1e-3,
                seed: int | None = None, device: str = "auto", dataset: str | None = None,
                data_dir: str | None = None, callbacks: PriorCallbacks | None = None) -> PriorResult:
    """Train the prior of the VQ-VAE run in ``run_dir`` for ``epochs`` on its training split (or
    ``dataset``'s, from ``data_dir``), write its weights into the run's ``model.safetensors`` and
    its metrics to ``prior_metrics.json``; the autoencoder's weights are left bit-identical.
    ``seed`` (default: the run's) orders the batches."""
    check_positive("--epochs", epochs, integer=True)
    check_positive("--batch-size", batch_size, integer=True)
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    from ..run.sources import resolve

    source = resolve(run_dir)
    if source.read_only:  # pretrained:NAME and hf://ORG/NAME are read, never written
        raise ConfigError(f"{source.spec}: a shipped or downloaded model is not written to; copy it to a folder "
                          f"with `aekit export {source.spec} DIR`, then train the prior there: aekit train-prior DIR")
    layout.read_config(run_dir)  # a folder that is no run is named as such, before a lock file is made in it
    lock = RunLock(run_dir).acquire()  # before the model is read: a trainer may be rewriting it
    try:
        return _train_prior_locked(Path(run_dir), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                   device=device, dataset=dataset, data_dir=data_dir,
                                   callbacks=callbacks or PriorCallbacks())
    finally:
        lock.release()


def _train_prior_locked(run_dir: Path, *, epochs, batch_size, lr, seed, device, dataset, data_dir,
                        callbacks: PriorCallbacks) -> PriorResult:
    import torch

    from ..latent.views import first_images
    from ..models.vq_vae import code_statistics
    from ..train.checkpoint import save_weights
    from ..train.schedule import get_lr

    run = Run.open(run_dir, device=device)
    model = run.load_model()  # eval mode: encoding leaves the codebook alone
    if not callable(getattr(model, "prior_nll", None)):
        raise ConfigError(f"{run_dir}: a {run.config.model} run has no prior to train; "
                          "`aekit train-prior` trains the prior of vq-vae runs")
    seed = run.config.train.seed if seed is None else seed
    splits = run.splits(dataset, data_dir)
    started = time.perf_counter()
    train_images, _ = first_images(splits.train)
    train = _grids(model, train_images, run.task, seed=seed)  # (N, h, w)
    val = _grids(model, splits.val.images, run.task, seed=seed)
    if train.shape[0] == 0:
        raise ConfigError(f"{run_dir}: the training split is empty; there is nothing to train the prior on")
    encode_seconds = time.perf_counter() - started
    codebook_size = int(model.config.codebook_size)
    perplexity, used = code_statistics(train, codebook_size)
    log.info("%s: %d training grids encoded in %.1fs; codebook perplexity %.1f of %d", run_dir, train.shape[0],
             encode_seconds, float(perplexity), codebook_size)

    eval_grids = val if val.shape[0] else train
    nll_before = _mean_nll(model, eval_grids, ENCODE_BATCH)
    weights = model.prior_weights()
    optimizer = torch.optim.AdamW(weights, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    batches = math.ceil(train.shape[0] / batch_size)
    total_steps = epochs * batches
    history: list[dict[str, Any]] = []
    step = 0
    for w in weights:
        w.requires_grad_(True)
    try:
        for epoch in range(epochs):
            if callbacks.on_epoch_start:
                callbacks.on_epoch_start(epoch, batches)
            t0 = time.perf_counter()
            order = torch.randperm(train.shape[0], generator=gen)
            nll_sum = 0.0
            for b in range(batches):
                for group in optimizer.param_groups:
                    group["lr"] = get_lr(step, base_lr=lr, total_steps=total_steps, warmup_steps=WARMUP_STEPS,
                                         min_lr_ratio=MIN_LR_RATIO)
                grids = train[order[b * batch_size:(b + 1) * batch_size]].to(model.prior_epochs.device)
                loss = model.prior_nll(grids).mean()  # nats per image
                if not torch.isfinite(loss.detach()):
                    raise TrainingError(f"the prior's loss is not finite at step {step} (epoch {epoch + 1}); "
                                        f"lower --lr (now {lr:g}); {run_dir} is left as it was")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                nll_sum += float(loss.detach()) * grids.shape[0]
                step += 1
                if callbacks.on_step:
                    callbacks.on_step()
            val_nll = _mean_nll(model, eval_grids, ENCODE_BATCH)
            record = {"epoch": epoch + 1, "train_nll_nats": nll_sum / train.shape[0], "val_nll_nats": val_nll,
                      "val_nll_bits": val_nll / math.log(2), "seconds": round(time.perf_counter() - t0, 3)}
            history.append(record)
            log.info("prior epoch %d/%d: %s", epoch + 1, epochs, record)
            if callbacks.on_epoch:
                callbacks.on_epoch(record)
    finally:
        for w in weights:
            w.requires_grad_(False)

    model.record_prior_training(epochs)
    save_weights(model, run_dir / layout.WEIGHTS_NAME)
    last = history[-1]
    grid_size = math.prod(train.shape[1:])
    metrics = {
        "prior_epochs": int(model.prior_epochs),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
        "train_grids": int(train.shape[0]), "val_grids": int(val.shape[0]),
        "scored_on": "val" if val.shape[0] else "train",
        "nll_nats_before": nll_before,
        "nll_nats": last["val_nll_nats"], "nll_bits": last["val_nll_bits"],
        "nll_bits_per_position": last["val_nll_bits"] / grid_size,
        "train_nll_nats": last["train_nll_nats"],
        "uniform_nll_nats": grid_size * math.log(codebook_size),  # a prior that knows nothing
        "codebook_size": codebook_size,
        "codebook_perplexity": float(perplexity),  # of the training split's codes
        "codes_used": float(used),
        "encode_seconds": round(encode_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "history": {str(r["epoch"]): r for r in history},
    }
    atomic_write_text(run_dir / PRIOR_METRICS_NAME, json.dumps(metrics, indent=2))
    return PriorResult(run_dir, metrics, history)
