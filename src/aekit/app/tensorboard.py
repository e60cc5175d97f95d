"""TensorBoard event files for a training run: ``aekit train --tensorboard`` writes ``RUN/tensorboard/``.

A view of the run for ``tensorboard --logdir runs/``, not its record: ``metrics.jsonl`` stays the
source of truth, and everything here is written through the trainer's callbacks
(:class:`aekit.train.loop.Callbacks`), so the loop does not know TensorBoard exists.

Every event is logged at the run's global step, so that runs of different lengths, and a run and
its resumption, line up on one axis.  The tags:

    train/PART, val/PART       each loss part's epoch mean, as in metrics.jsonl
    train_step/PART            single batches' losses (and train_step/lr), every few steps
    lr, images_per_second, epoch_seconds
    val_sample/METRIC          PSNR, SSIM, BCE per pixel (and the ELBO for VAEs) on the first
                               VAL_SAMPLE_IMAGES validation images, decoded from the posterior mode
    reconstructions            the first PREVIEW_IMAGES validation images above what the model makes of them
    samples                    draws from the prior (generative models), the same draws every epoch

A resumed run appends a new event file to the same folder, opened with ``purge_step`` one past
the step it resumed from: TensorBoard then hides whatever the earlier process logged after that
checkpoint, so no step appears twice.  Only rank 0 writes (:func:`aekit.app.training.train`
attaches the log there alone).  Drawing the previews uses generators of its own and puts the
model back in training mode, so a run logged to TensorBoard trains exactly as one that is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import AekitError, ConfigError
from ..train.loop import Callbacks, StepInfo

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"  # inside the run folder
INSTALL_HINT = 'pip install "aekit[tensorboard]"'
STEP_LOG_EVERY = 50  # per-step losses at most this often; short epochs log 10 times each instead
PREVIEW_IMAGES = 8  # validation images shown with their reconstructions, and prior draws shown
# A trend, not a result (test_metrics.json is that): about 0.3 s an epoch for the default conv-VAE on one CPU thread
VAL_SAMPLE_IMAGES = 256
PREVIEW_SEED_STREAM = 7_777  # the previews' own randomness, apart from every generator training uses


def require_tensorboard() -> None:
    """Refuse, in one line naming the install, when TensorBoard's writer cannot be imported."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (it imports the tensorboard package)
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}") from None


def step_interval(batches_per_epoch: int) -> int:
    """How many steps apart per-step losses are logged: every STEP_LOG_EVERY, or 10 times an epoch
    when epochs are shorter than that, so a small run still shows its curve within an epoch."""
    return max(1, min(STEP_LOG_EVERY, batches_per_epoch // 10))


def chain(first: Callbacks, then: Callbacks) -> Callbacks:
    """Callbacks that call ``first``'s and then ``then``'s; a stop asked by either stops."""
    def both(a: Callable | None, b: Callable | None) -> Callable | None:
        if a is None or b is None:
            return a or b
        return lambda *args: (a(*args), b(*args))[-1]

    stops = [f for f in (first.should_stop, then.should_stop) if f is not None]
    return Callbacks(on_step=both(first.on_step, then.on_step), on_epoch=both(first.on_epoch, then.on_epoch),
                     on_epoch_start=both(first.on_epoch_start, then.on_epoch_start),
                     should_stop=(lambda: any(f() for f in stops)) if stops else None)


class TensorBoardLog:
    """The event files of one training process: ``TensorBoardLog.attach(trainer)``, then ``close()``."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.folder = Path(trainer.run_dir) / TENSORBOARD_DIR
        self.every = step_interval(trainer.batches_per_epoch)
        self.writer = None
        self.failed = False
        # PSNR, SSIM and pictures are for images; other data (melodies) logs its losses only
        images = getattr(trainer.task, "data_kind", "image") == "image"
        self.val_metrics = self.previews = images  # until they turn out not to apply

    @classmethod
    def attach(cls, trainer) -> TensorBoardLog:
        """Log ``trainer``'s run, after whatever callbacks it already has."""
        board = cls(trainer)
        trainer.callbacks = chain(trainer.callbacks, Callbacks(on_step=board.on_step, on_epoch=board.on_epoch,
                                                               on_epoch_start=board.on_epoch_start))
        return board

    # -- the callbacks ---------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, batches: int) -> None:
        if self.writer is None and not self.failed:
            self._guarded(self._open)

    def on_step(self, info: StepInfo) -> None:
        if self.writer is None or info.step % self.every:
            return
        self._guarded(self._log_step, info)

    def on_epoch(self, record: dict) -> None:
        if self.writer is not None:
            self._guarded(self._log_epoch, record)

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except OSError as err:
                log.warning("TensorBoard files in %s could not be finished: %s", self.folder, err)

    # -- writing ---------------------------------------------------------------------------------
    def _guarded(self, write, *args) -> None:
        # A full disk or an unwritable folder must not end a long run that is otherwise fine:
        # logging stops, with a warning, and metrics.jsonl still records every epoch.
        try:
            write(*args)
        except Exception as err:  # see above; the error is shown, not hidden
            log.warning("TensorBoard logging stopped (%s: %s); training goes on and metrics.jsonl records "
                        "every epoch", type(err).__name__, " ".join(str(err).split())[:200])
            log.debug("the error", exc_info=True)
            self.failed = True
            self.close()

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # The trainer's step is the one it resumed from (0 for a new run): events an earlier
        # process logged after that checkpoint are hidden, as this process logs them again.
        resumed = self.folder.is_dir() and any(self.folder.glob("events.out.tfevents.*"))
        purge = self.trainer.step + 1 if resumed else None
        self.folder.mkdir(exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge)

    def _log_step(self, info: StepInfo) -> None:
        for part, value in info.losses.items():
            self.writer.add_scalar(f"train_step/{part}", value, info.step)
        self.writer.add_scalar("train_step/lr", info.lr, info.step)

    def _log_epoch(self, record: dict) -> None:
        step, w = record["step"], self.writer
        for split in ("train", "val"):
            for part, value in record[split].items():
                w.add_scalar(f"{split}/{part}", value, step)
        w.add_scalar("lr", record["lr"], step)
        w.add_scalar("images_per_second", record["images_per_second"], step)
        w.add_scalar("epoch_seconds", record["seconds"], step)
        model = self.trainer.model
        was_training = model.training
        try:
            if self.val_metrics:
                for name, value in self._view("val_metrics", self._val_sample_metrics).items():
                    w.add_scalar(f"val_sample/{name}", value, step)
            if self.previews:
                for tag, picture in self._view("previews", self._previews).items():
                    w.add_image(tag, picture, step, dataformats="HW" if picture.ndim == 2 else "HWC")
        finally:
            model.train(was_training)
        w.flush()  # an epoch's events reach the disk with its checkpoint, for a TensorBoard watching live

    def _view(self, switch: str, build) -> dict:
        """``build()``; when the run's data does not allow it (images too small for SSIM, say),
        {} and the ``switch`` attribute off for the rest of the run: the losses still get logged."""
        try:
            return build()
        except AekitError as err:
            log.warning("TensorBoard: no %s for this run: %s", switch.replace("_", " "), err)
            setattr(self, switch, False)
            return {}

    def _val_sample_metrics(self) -> dict[str, float]:
        from ..eval.evaluate import evaluate_model

        t = self.trainer
        metrics = evaluate_model(t.model, t.val_set, t.task, seed=t.tcfg.seed, max_images=VAL_SAMPLE_IMAGES)
        names = ("psnr_db", "ssim", "bce_per_pixel", "elbo")
        return {k: metrics[k] for k in names if k in metrics}

    def _previews(self) -> dict:
        """{tag: picture (H, W) or (H, W, 3) in [0, 1]}: reconstructions, and prior draws if the model has a prior."""
        from ..latent import views as lv
        from ..viz.plots import mosaic

        t = self.trainer
        model, data = t.model, t.val_set
        n = min(PREVIEW_IMAGES, len(data))
        labels = data.labels[:n] if data.labels is not None else None
        rows = lv.before_after(model, t.task, data.images[:n], labels, generator=self._generator())
        pictures = {"reconstructions": mosaic(list(rows.values()))}
        if model.generative:
            panels = lv.sample_panels(model, 2 * PREVIEW_IMAGES, generator=self._generator())
            drawn = next(iter(panels.values()))  # (2 * PREVIEW_IMAGES, C, H, W)
            pictures["samples"] = mosaic(list(drawn.split(PREVIEW_IMAGES)))
        return pictures

    def _generator(self) -> torch.Generator:
        # The same draws every epoch (so the pictures show the model changing, not the noise),
        # from a CPU generator of their own (so training's random streams are never touched).
        return torch.Generator().manual_seed(self.trainer.tcfg.seed * 1_000_003 + PREVIEW_SEED_STREAM)
