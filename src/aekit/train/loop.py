"""The training loop.

It knows models only through :class:`~aekit.models.base.Autoencoder` (``training_step``,
``loss``, ``configure_optimizers``), feeds in-memory datasets by slicing whole tensors (no
per-sample Python work), reads datasets without an ``images`` tensor (a folder streamed from
disk) through a DataLoader with worker processes, and writes a resumable checkpoint after
every epoch.

Distributed: under torchrun each process trains a DistributedDataParallel copy on its shard of
every epoch (torch's DistributedSampler, reshuffled per epoch); ``--batch-size`` is the global
batch, split evenly, so with the same seed the union of the ranks' b-th batches is exactly the
one-process run's b-th batch (when the training set divides by the number of processes; else
the sampler repeats a few images to even the shards out).  Only rank 0 writes files.

Resuming mid-epoch replays that epoch's sampler order and starts at the saved batch: the
batches already trained are skipped (a streamed set never reads their files again), and the
epoch's loss sums and every rank's noise generator come back from the checkpoint.

Repeatability: each epoch draws its shuffling order and its noise (VAE sampling, denoising
corruption) from generators seeded by (seed, epoch), so an epoch's randomness does not depend
on what ran before it, and a resumed run replays exactly what an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..config import RunConfig, check_global_batch
from ..errors import AekitError, CheckpointError, ConfigError, DataError, TrainingError
from ..models.base import Autoencoder, DeferredFiniteChecks, Losses, StepContext
from ..run.layout import read_metrics
from ..run.weights import load_weights
from ..tasks import Task
from . import checkpoint as ckpt
from .distributed import all_reduce_sum, any_rank, dist_info, gather_objects, rank0_then_broadcast
from .schedule import get_lr, warmup_length

log = logging.getLogger(__name__)

EVAL_BATCH = 1024  # large batches for validation: no gradients, so memory is small
# Steps between the checks of deferred (GPU) loss checks: each check waits for the GPU once.
FINITE_CHECK_EVERY = 50
# The share of the GPU's free memory an in-memory training set may take to live there for the
# whole run (no copy from the host, and no wait for it, at every step).
RESIDENT_SHARE = 0.25


@dataclass
class StepInfo:
    epoch: int
    step: int
    batch_in_epoch: int
    batches_per_epoch: int
    loss_tensors: dict[str, torch.Tensor]  # on the training device
    lr: float

    @functools.cached_property
    def losses(self) -> dict[str, float]:
        """The step's loss parts as numbers.  Read it only when needed (a progress bar every few
        steps): on a GPU each read waits for the step to finish."""
        return {k: float(v) for k, v in self.loss_tensors.items()}


@dataclass
class Callbacks:
    on_step: Callable[[StepInfo], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    on_epoch_start: Callable[[int, int], None] | None = None  # (epoch, batches in it)
    should_stop: Callable[[], bool] | None = None  # polled between steps (Ctrl-C in the CLI)


@dataclass
class TrainResult:
    epochs_done: int
    steps: int
    interrupted: bool
    history: list[dict] = field(default_factory=list)


def seeded_generator(seed: int, epoch: int, device: torch.device | str = "cpu", stream: int = 0) -> torch.Generator:
    """A generator for one epoch's randomness, independent of every other epoch's."""
    g = torch.Generator(device=device)
    # Large odd multipliers keep (seed, epoch, stream) triples from colliding.
    g.manual_seed((seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1))
    return g


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler over ``range(n)``: this rank's shard of a per-epoch shuffle
    (``set_epoch``), which can start ``start`` items into its order so that a resumed epoch
    skips the batches it already trained on and replays the rest in the same order."""

    def __init__(self, n: int, *, num_replicas: int, rank: int, seed: int):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


STREAM_CHECK_SAMPLE = 256  # images decoded before a streamed run starts, to refuse flat or NaN data


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (AVX512-BF16 or AMX CPUs, Ampere+ GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: torch.device, model: Autoencoder | None = None) -> str:
    """``auto`` as bf16 where ``device`` computes it natively and the model's family was measured
    to learn as well per second in it (``model.auto_bf16``), else fp32; other values as they are."""
    if precision != "auto":
        return precision
    family_ok = model is None or model.auto_bf16
    return "bf16" if family_ok and native_bf16(device) else "fp32"


def check_training_items(items: torch.Tensor, name: str) -> None:
    """Images are checked for their pixels; class indices (melodies) were checked by their set."""
    if items.is_floating_point():
        check_training_images(items, name)
    elif items.numel() == 0:
        raise DataError(f"{name}: the training split is empty")


def check_training_images(images: torch.Tensor, name: str) -> None:
    """Refuse data that can only train a broken model, before spending time on it."""
    if images.numel() == 0:
        raise DataError(f"{name}: the training split is empty")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images.flatten(1))).any(dim=1).sum())
        raise DataError(f"{name}: {bad} training image(s) contain NaN or infinite pixels; clean the data first")
    if images.min() < 0 or images.max() > 1:
        raise DataError(f"{name}: pixel values must lie in [0, 1], found {float(images.min()):.3g}..{float(images.max()):.3g}")
    if float(images.amax() - images.amin()) == 0.0:
        raise DataError(f"{name}: every training pixel has the same value; there is nothing to learn")


class Trainer:
    # Check each step's loss at once (None: on CPUs, where that costs nothing) or in batches of
    # FINITE_CHECK_EVERY steps (on GPUs: DeferredFiniteChecks says why).
    defer_finite_checks: bool | None = None

    def __init__(self, model: Autoencoder, train_set, val_set, run_cfg: RunConfig, run_dir: str | Path, *,
                 task: Task, device: torch.device, callbacks: Callbacks | None = None):
        self.model = model
        self.train_set = train_set
        self.val_set = val_set
        self.cfg = run_cfg
        self.tcfg = run_cfg.train
        self.run_dir = Path(run_dir)
        self.task = task
        self.device = device
        self.callbacks = callbacks or Callbacks()
        self.rank, self.world = dist_info()
        self.is_main = self.rank == 0
        self._stop_requested = False

        check_global_batch(self.tcfg.batch_size, self.world)
        self.local_batch = self.tcfg.batch_size // self.world
        self.memory_format = (torch.channels_last if self.tcfg.channels_last else torch.contiguous_format)
        self.model.to(device=device, memory_format=self.memory_format)
        self.forward = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            # Models with parts that a step does not use (the AAE's discriminator during the
            # reconstruction update) need unused parameters tolerated.
            self.forward = DDP(self.model, device_ids=ids,
                               find_unused_parameters=self.model.has_unused_parameters)
        self.optimizers = self.model.configure_optimizers(self.tcfg.lr, self.tcfg.weight_decay)
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(
            resolve_precision(self.tcfg.precision, device, model), "bad")
        if self.amp_dtype == "bad":
            raise ConfigError(f"--precision must be fp32, bf16 or fp16, got {self.tcfg.precision!r}")
        if self.amp_dtype is torch.float16 and device.type != "cuda":
            raise ConfigError("--precision fp16 needs a CUDA GPU; on the CPU use bf16 or fp32")
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        defer = self.defer_finite_checks if self.defer_finite_checks is not None else device.type == "cuda"
        self.finite_checks = DeferredFiniteChecks() if defer else None
        self.n_train = len(train_set)
        # A set without an items tensor (aekit.data.stream.StreamingImageSet, or any map-style
        # Dataset of (image, label) with a `labels` attribute, None when unlabelled) is read
        # through a DataLoader; tensors (images, melodies) are sliced directly.
        self.streamed = not isinstance(getattr(train_set, "items", None), torch.Tensor)
        self.sampler = EpochSampler(self.n_train, num_replicas=self.world, rank=self.rank, seed=self.tcfg.seed)
        self._loader: DataLoader | None = None
        self._resident: tuple[torch.Tensor, torch.Tensor | None] | None = None  # _resident_items
        if not self.streamed and self.tcfg.num_workers:
            log.info("the training set is in memory: --workers %d is not needed and is ignored", self.tcfg.num_workers)
        self.batches_per_epoch = math.ceil(self._local_count() / self.local_batch)
        self.total_steps = self.batches_per_epoch * self.tcfg.epochs
        warmup = warmup_length(self.tcfg.warmup_steps, self.total_steps)
        if warmup < self.tcfg.warmup_steps and self.rank == 0:
            log.info("train.warmup_steps=%d is more than a tenth of this run's %d steps; warming up over %d",
                        self.tcfg.warmup_steps, self.total_steps, warmup)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict] = []
        self._resume_noise_state: torch.Tensor | None = None
        self._resume_partial: dict | None = None  # loss sums of the part of an epoch before a stop

    # -- control ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to save a checkpoint and return at the next step boundary (Ctrl-C)."""
        self._stop_requested = True

    def _local_count(self) -> int:
        return math.ceil(self.n_train / self.world)

    def _should_stop(self) -> bool:
        local = self._stop_requested or bool(self.callbacks.should_stop and self.callbacks.should_stop())
        # Every rank must stop at the same step, or the others wait forever in the next
        # all-reduce; under torchrun a Ctrl-C reaches the ranks at slightly different moments.
        return any_rank(local) if self.world > 1 else local

    # -- data ------------------------------------------------------------------------------
    def _train_loader(self) -> DataLoader:
        if self._loader is None:
            workers = self.tcfg.num_workers
            # Decoding runs in `workers` processes; in flight at once: workers x 2 batches.
            self._loader = DataLoader(self.train_set, batch_size=self.local_batch, sampler=self.sampler,
                                      num_workers=workers, pin_memory=self.device.type == "cuda",
                                      persistent_workers=workers > 0, prefetch_factor=2 if workers else None)
        return self._loader

    def _batches(self, epoch: int, first_batch: int):
        """This rank's batches of ``epoch`` from ``first_batch`` on: (images (B, C, H, W), labels (B,) or None)."""
        self.sampler.set_epoch(epoch)
        self.sampler.start = first_batch * self.local_batch
        labels = getattr(self.train_set, "labels", None)
        if not self.streamed:
            items, labels = self._resident_items(labels)
            order = torch.tensor(list(self.sampler), dtype=torch.long, device=items.device)
            for start in range(0, order.numel(), self.local_batch):
                idx = order[start:start + self.local_batch]
                yield items[idx], (labels[idx] if labels is not None else None)
            return
        batches = iter(self._train_loader())
        while True:
            try:
                x, y = next(batches)
            except StopIteration:
                return
            except AekitError as err:  # raised in a worker: torch wraps it with the worker's traceback
                raise type(err)(_worker_error_message(err)) from None
            yield x, (y if labels is not None else None)

    # -- failures ----------------------------------------------------------------------------
    def _check_deferred(self, epoch: int) -> None:
        """Raise for a non-finite loss among the steps whose checks were deferred (GPU)."""
        if self.finite_checks is None:
            return
        try:
            self.finite_checks.raise_first()
        except TrainingError as err:
            raise self._stopped_by(err, err.step, epoch) from None

    def _stopped_by(self, err: TrainingError, step: int, epoch: int) -> TrainingError:
        good = ckpt.list_checkpoints(self.run_dir)
        where = f"last good checkpoint: {good[-1]}" if good else "no checkpoint was written yet"
        return TrainingError(f"training stopped at step {step} (epoch {epoch + 1}): {err}; {where}. "
                             "Lower --lr, or check the data for broken images")

    def _resident_items(self, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The in-memory training set where its batches are sliced: on a GPU when it fits there.

        A batch copied from (pageable) host memory makes the CPU wait for the GPU at every step;
        slicing a copy on the GPU does not.  The same indices give the same batches either way.
        """
        items = self.train_set.items
        if self.device.type != "cuda":
            return items, labels
        if self._resident is None:
            size = items.nbytes + (labels.nbytes if labels is not None else 0)
            free, _total = torch.cuda.mem_get_info(self.device)
            if size <= RESIDENT_SHARE * free:
                self._resident = (items.to(self.device), labels.to(self.device) if labels is not None else None)
            else:
                log.info("the training set (%d MiB) stays in host memory: more than %d%% of the GPU's free %d MiB",
                         size >> 20, round(100 * RESIDENT_SHARE), free >> 20)
                self._resident = (items, labels)
        return self._resident

    # -- state -----------------------------------------------------------------------------
    def _optimizer_state(self, noise_states: list[torch.Tensor] | None) -> dict:
        state = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        noise = torch.stack(noise_states) if noise_states else torch.empty(0, dtype=torch.uint8)
        extra = {"noise_generators": noise}  # (world, state bytes): row r is rank r's generator
        if self.scaler is not None:
            extra["scaler"] = self.scaler.state_dict()
        return {"optimizers": state, "extra": extra}

    def save_checkpoint(self, noise_gen: torch.Generator | None, partial: dict | None = None) -> Path | None:
        """Write a resume point (rank 0).

        Mid-epoch (``noise_gen`` given) every rank must call this: each rank's noise generator
        state and ``partial`` (its loss sums so far this epoch) are gathered into the checkpoint,
        so the resumed epoch replays the same noise and reports the same epoch means.
        """
        noise_states, partials = None, None
        if noise_gen is not None:
            noise_states, partials = zip(*gather_objects((noise_gen.get_state(), partial)), strict=True)
        if not self.is_main:
            return None
        trainer_state = {"epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
                         "seed": self.tcfg.seed, "world": self.world}
        if partials is not None and all(partials):
            trainer_state["partial_epoch"] = list(partials)  # one {"sums", "count", "seconds"} per rank
        path = ckpt.write_checkpoint(self.run_dir, self.model, trainer_state, self._optimizer_state(noise_states))
        ckpt.save_weights(self.model, self.run_dir / ckpt.WEIGHTS_NAME)
        return path

    def _newest_readable_checkpoint(self) -> str | None:
        """The newest checkpoint that reads whole and fits this model; None when there is none.

        An unreadable one is passed over for the one before it.  When checkpoints exist but none
        can be used, resuming is an error: starting again from epoch 0 would silently throw
        the run's progress away.
        """
        checkpoints = ckpt.list_checkpoints(self.run_dir)
        reasons = []
        for path in reversed(checkpoints):
            try:
                _state, optim = ckpt.read_checkpoint(path)
                ckpt.check_optimizer_states(self.optimizers, optim["optimizers"], path)
                load_weights(self.model, path / ckpt.WEIGHTS_NAME)
            except Exception as err:  # noqa: BLE001 - an unreadable checkpoint: fall back to the one before
                log.warning("skipping checkpoint %s: %s", path.name, err)
                reasons.append(str(err))
                continue
            return path.name
        if checkpoints:
            first = reasons[0] if len(reasons) == 1 else f"{reasons[0]} (and {len(reasons) - 1} more)"
            raise CheckpointError(f"cannot resume {self.run_dir}: no checkpoint is usable: {first}")
        return None

    def resume(self) -> bool:
        """Load the newest complete checkpoint on every rank; False when there is none.

        Rank 0 chooses the checkpoint, so all ranks load the same one; each rank then reads it
        (the run folder must be visible to every rank: a shared filesystem across nodes).
        """
        name = rank0_then_broadcast(self._newest_readable_checkpoint)
        if name is None:
            return False
        path = self.run_dir / ckpt.CHECKPOINTS_DIR / name
        state, optim = ckpt.read_checkpoint(path)
        load_weights(self.model, path / ckpt.WEIGHTS_NAME)
        # Optimizer.load_state_dict moves the (CPU-loaded) state onto each parameter's device,
        # so a checkpoint written on a GPU resumes on a CPU and the other way round.
        for opt_name, opt in self.optimizers.items():
            opt.load_state_dict(optim["optimizers"][opt_name])
        if self.scaler is not None and "scaler" in optim["extra"]:
            self.scaler.load_state_dict(optim["extra"]["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        saved_world = int(state.get("world", 1))
        noise = optim["extra"].get("noise_generators", optim["extra"].get("noise_generator"))
        noise = noise.unsqueeze(0) if noise is not None and noise.dim() == 1 and noise.numel() else noise
        self._resume_noise_state = None
        if self.batch_in_epoch and noise is not None and noise.numel():
            if saved_world == self.world and noise.shape[0] == self.world:
                # A copy: torch's Generator.set_state reads a view's storage from its start (and
                # crashed on row 1 of this stack), so hand it a tensor of its own.
                self._resume_noise_state = noise[self.rank].clone()
            else:
                log.warning("resuming mid-epoch with %d processes instead of %d: the rest of the epoch keeps "
                            "its sample order but draws fresh noise", self.world, saved_world)
        self._resume_partial = None
        partials = state.get("partial_epoch") if self.batch_in_epoch else None
        if partials:
            if len(partials) == self.world:
                self._resume_partial = partials[self.rank]
            elif self.is_main:  # another world size: rank 0 carries all ranks' sums, the others none
                sums: dict[str, float] = {}
                for part in partials:
                    for k, v in part["sums"].items():
                        sums[k] = sums.get(k, 0.0) + v
                self._resume_partial = {"sums": sums, "count": sum(p["count"] for p in partials),
                                        "seconds": partials[0]["seconds"]}
        self.history = [r for r in read_metrics(self.run_dir) if r["epoch"] <= self.epoch]
        log.info("resumed from %s (epoch %d, step %d)", path.name, self.epoch, self.step)
        return True

    # -- the loop --------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def _set_lr(self) -> float:
        lr = get_lr(self.step, base_lr=self.tcfg.lr, total_steps=self.total_steps,
                    warmup_steps=self.tcfg.warmup_steps, min_lr_ratio=self.tcfg.min_lr_ratio,
                    schedule=self.tcfg.schedule)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def fit(self, *, resume: bool = False, stop_after_epoch: int | None = None) -> TrainResult:
        if not self.streamed:
            check_training_items(self.train_set.items, self.cfg.data.dataset)
        else:  # a streamed set cannot be read whole up front: check an evenly spread sample
            n = len(self.train_set)
            picks = range(0, n, max(1, n // STREAM_CHECK_SAMPLE))
            sample = torch.stack([self.train_set[i][0] for i in picks])
            check_training_images(sample, f"{self.cfg.data.dataset} (a sample of {len(sample)} images)")
        if resume:
            self.resume()
        if self.is_main and self.epoch == 0 and self.batch_in_epoch == 0:
            ckpt.atomic_write_text(self.run_dir / ckpt.METRICS_NAME, "")
        elif self.is_main:  # drop metrics of epochs the checkpoint does not include
            ckpt.atomic_write_text(self.run_dir / ckpt.METRICS_NAME,
                                   "".join(json.dumps(r) + "\n" for r in self.history))
        interrupted = False
        last_epoch = self.tcfg.epochs if stop_after_epoch is None else min(stop_after_epoch, self.tcfg.epochs)
        try:
            while self.epoch < last_epoch:
                interrupted = not self._run_epoch()
                if interrupted:
                    break
        finally:
            self._loader = None  # shuts down persistent DataLoader workers
        return TrainResult(self.epoch, self.step, interrupted, self.history)

    def _run_epoch(self) -> bool:
        """One epoch (or the rest of one); False when stopped early by request."""
        epoch = self.epoch
        noise_gen = seeded_generator(self.tcfg.seed, epoch, self.device, stream=self.rank + 1)
        if self._resume_noise_state is not None and self.batch_in_epoch:
            noise_gen.set_state(self._resume_noise_state)
        self._resume_noise_state = None
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        seen, seconds_before = 0, 0.0
        if self._resume_partial is not None and self.batch_in_epoch:
            # float32, as accumulated before the stop, so the epoch's means come out bit-identical
            sums = {k: torch.tensor(v, dtype=torch.float32, device=self.device)
                    for k, v in self._resume_partial["sums"].items()}
            seen, seconds_before = int(self._resume_partial["count"]), float(self._resume_partial["seconds"])
        self._resume_partial = None
        lr = self._set_lr()
        started = time.perf_counter() - seconds_before
        if self.callbacks.on_epoch_start:
            self.callbacks.on_epoch_start(epoch, self.batches_per_epoch - self.batch_in_epoch)
        batches = self._batches(epoch, self.batch_in_epoch)
        for b, (images, labels) in enumerate(batches, start=self.batch_in_epoch):
            if self._should_stop():
                batches.close()
                self._check_deferred(epoch)  # a stop must not save weights a bad step has spoilt
                partial = {"sums": {k: float(v) for k, v in sums.items()}, "count": seen,
                           "seconds": time.perf_counter() - started}
                self.save_checkpoint(noise_gen, partial)
                return False
            clean = self._to_device(images)
            draw = getattr(self.train_set, "draw", None)
            if draw is not None:  # a fresh draw for every batch: 0/1 pixels, transposed melodies
                clean = draw(clean, noise_gen)
            y = labels.to(self.device, non_blocking=True) if labels is not None else None
            batch = self.task.make_batch(clean, y, noise_gen)
            if batch.x.dim() == 4:
                batch.x = batch.x.contiguous(memory_format=self.memory_format)
            lr = self._set_lr()
            if self.finite_checks is not None:
                self.finite_checks.step = self.step
            step_ctx = StepContext(forward=self.forward, generator=noise_gen, autocast=self._autocast,
                                   scaler=self.scaler, finite_checks=self.finite_checks)
            try:
                losses = self.model.training_step(batch, self.optimizers, step_ctx)
            except TrainingError as err:
                raise self._stopped_by(err, self.step, epoch) from None
            n = clean.shape[0]
            for k, v in _with_total(losses).items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() * n
            seen += n
            self.step += 1
            self.batch_in_epoch = b + 1
            if self.finite_checks is not None and len(self.finite_checks) >= FINITE_CHECK_EVERY:
                self._check_deferred(epoch)
            if self.callbacks.on_step:
                self.callbacks.on_step(StepInfo(epoch, self.step, b + 1, self.batches_per_epoch,
                                                {k: v.detach() for k, v in _with_total(losses).items()}, lr))
        self._check_deferred(epoch)
        seconds = time.perf_counter() - started
        train_means = _reduce_means(sums, seen)
        val = self.validate()
        self.epoch += 1
        self.batch_in_epoch = 0
        record = {"epoch": self.epoch, "step": self.step, "lr": lr, "train": train_means, "val": val,
                  "seconds": round(seconds, 3), "images_per_second": round(seen * self.world / max(seconds, 1e-9), 1)}
        if self.device.type == "cuda":  # this rank's peak so far, for benchmarks and for sizing batches
            record["gpu_memory_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self.history.append(record)
        if self.is_main:
            with open(self.run_dir / ckpt.METRICS_NAME, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            self.save_checkpoint(None)
        if self.callbacks.on_epoch:
            self.callbacks.on_epoch(record)
        return True

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Loss parts on the validation split, with fixed noise so that epochs compare."""
        return evaluate_losses(self.model, self.val_set, self.task, seed=self.tcfg.seed, device=self.device,
                               memory_format=self.memory_format)


@torch.inference_mode()
def evaluate_losses(model: Autoencoder, data, task: Task, *, seed: int, device: torch.device,
                    memory_format=torch.contiguous_format, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean loss parts over a whole split.  Uses a sample from q(z|x), as the ELBO does."""
    was_training = model.training
    model.eval()
    gen = seeded_generator(seed, -1, device, stream=99)
    sums: dict[str, torch.Tensor] = {}
    n_total = 0
    for start in range(0, len(data), batch_size):
        clean = data.items[start:start + batch_size].to(device)
        clean = clean.contiguous(memory_format=memory_format) if clean.dim() == 4 else clean
        y = data.labels[start:start + batch_size].to(device) if data.labels is not None else None
        batch = task.make_batch(clean, y, gen)
        out = model(batch, gen)
        losses = model.loss(batch, out)
        n = clean.shape[0]
        for k, v in _with_total(losses).items():
            sums[k] = sums.get(k, 0.0) + v.float() * n
        n_total += n
    model.train(was_training)
    return _reduce_means(sums, n_total, distributed=False)


def _with_total(losses: Losses) -> dict[str, torch.Tensor]:
    return {"total": losses.total, **losses.parts}


def _reduce_means(sums: dict[str, torch.Tensor], count: int, distributed: bool = True) -> dict[str, float]:
    if not sums:
        return {}
    keys = sorted(sums)
    parts = [torch.as_tensor(sums[k], dtype=torch.float64) for k in keys]
    # the count joins the sums on their device (the training device: a GPU's, under CUDA)
    packed = torch.stack([*parts, parts[0].new_tensor(float(count))])
    if distributed:
        packed = all_reduce_sum(packed)
    total = float(packed[-1])
    return {k: float(packed[i]) / max(total, 1.0) for i, k in enumerate(keys)}


def _worker_error_message(err: AekitError) -> str:
    """The original one-line message of an aekit error that torch re-raised from a DataLoader
    worker (torch prepends "Caught X in DataLoader worker" and the worker's traceback)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    if len(lines) < 2:
        return str(err)
    prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
    last = lines[-1]
    return last.removeprefix(prefix)
