"""The Python entry points behind the CLI: train a run, evaluate a run.

These compose the layers (data, models, tasks, trainer, evaluation, figures) and own the run
folder's life cycle; the CLI only parses options and talks.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import DataConfig, RunConfig, TrainConfig, check_positive
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_text
from .registry import config_from_dict, lookup
from .tasks import make_task
from .train import checkpoint as ckpt
from .train.distributed import cpu_threads, dist_info, rank0_then_broadcast, session
from .train.loop import Callbacks, Trainer, TrainResult

log = logging.getLogger(__name__)

TEST_METRICS_NAME = "test_metrics.json"
# The model a task trains when none is named: the lesson's conv VAE for plain reconstruction,
# and for the image-to-image tasks the models built for them (models/denoise.py, models/sr.py).
DEFAULT_MODELS = {"reconstruct": "conv-vae", "denoise": "dn", "super-resolution": "sr"}
# A streamed training split has no images tensor; the report gets this many of its images
# decoded into memory (it shows samples around the codes of a few thousand training images).
REPORT_TRAIN_IMAGES = 2000


@dataclass
class RunResult:
    run_dir: Path
    result: TrainResult
    test_metrics: dict[str, Any] | None  # metric -> value, plus "baselines" for task runs


def default_run_dir(model: str, dataset: str, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_dataset = dataset.replace(":", "-").replace("/", "_").strip("_.-")[:40] or "data"
    return Path(root) / f"{stamp}-{model}-{safe_dataset}"


def prepare_run_dir(path: Path) -> None:
    """Create the run folder and prove it is writable before any training time is spent."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is a file; choose a folder")
    if (path / ckpt.CONFIG_NAME).exists():
        raise ConfigError(f"--out {path}: already holds a run; continue it with --resume {path} or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {path}: cannot write there ({err.strerror}); choose a writable folder") from None


def build_model_config(model: str, in_shape, options: dict[str, Any], *, num_classes: int, scale: int | None):
    config_cls, _ = lookup(model)
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in options.items() if v is not None}
    values["in_shape"] = list(in_shape)
    if "latent_dim" in values and "latent_dim" in names:
        least = 0 if config_cls().latent_dim == 0 else 1  # conv-ae: 0 keeps its convolutional code
        if not isinstance(values["latent_dim"], int) or values["latent_dim"] < least:
            raise ConfigError(f"--latent-dim must be a whole number of at least {least} for {model}, "
                              f"got {values['latent_dim']!r}")
    if "num_classes" in names:
        if num_classes < 2:
            raise ConfigError(f"{model} is conditional and needs a labelled dataset; this one has no classes")
        values["num_classes"] = num_classes
    if "scale" in names and scale:
        values["scale"] = scale
    return config_from_dict(model, values)


def train(*, model: str | None = None, dataset: str = "mnist-5k", out: str | Path | None = None,
          resume: str | Path | None = None, epochs: int | None = None, batch_size: int | None = None,
          lr: float | None = None, seed: int | None = None, device: str | None = None,
          data_dir: str | None = None, image_size: int | None = None, channels: int | None = None,
          task: str = "reconstruct", noise: str | None = None, scale: int | None = None,
          precision: str | None = None, model_options: dict[str, Any] | None = None,
          callbacks: Callbacks | None = None, stop_after_epoch: int | None = None,
          evaluate_test: bool = True, write_report: bool = True, stream: bool | None = None,
          workers: int | None = None) -> RunResult:
    """Train ``model`` on ``dataset`` into a run folder (or continue the run in ``resume``).

    ``model=None`` trains the task's default model (:data:`DEFAULT_MODELS`).

    Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment) every process calls
    this: it joins the process group for the run (NCCL on GPUs, gloo on CPUs) and leaves it at
    the end; rank 0 names the run folder and writes every file.  ``stream`` reads a
    ``folder:PATH`` training split from disk in ``workers`` DataLoader processes (None: only
    when the folder decodes to more than 1 GiB).
    """
    args = dict(locals())
    wanted = device
    if wanted is None:
        wanted = ckpt.read_run_config(resume).train.device if resume is not None else "auto"
    with session(ckpt.resolve_device(wanted)) as dev:
        return _train(dev, **args)


def _train(dev: torch.device, *, model, dataset, out, resume, epochs, batch_size, lr, seed, device, data_dir,
           image_size, channels, task, noise, scale, precision, model_options, callbacks, stop_after_epoch,
           evaluate_test, write_report, stream, workers) -> RunResult:
    """:func:`train` inside the process group, on ``dev`` (this process's device)."""
    from .data import load_dataset

    rank, world = dist_info()
    if resume is not None:
        run_dir = Path(resume)
        cfg = ckpt.read_run_config(run_dir)
        if rank == 0:
            ckpt.remove_stale_temp_files(run_dir)  # left by a process killed mid-write
        if epochs is not None:
            cfg.train.epochs = epochs
        if device is not None:
            cfg.train.device = device
        if data_dir is not None:
            cfg.data.data_dir = data_dir
        if workers is not None:
            cfg.train.num_workers = workers
    else:
        if model is None:
            model = DEFAULT_MODELS.get(task, DEFAULT_MODELS["reconstruct"])
        tcfg = TrainConfig()
        for key, value in {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                           "device": device, "precision": precision, "num_workers": workers}.items():
            if value is not None:
                setattr(tcfg, key, value)
        dcfg = DataConfig(dataset=dataset, data_dir=data_dir, image_size=image_size, channels=channels,
                          task=task, noise=noise, scale=scale)
        cfg = RunConfig(model=model, model_config={}, data=dcfg, train=tcfg,
                        aekit_version=__version__, torch_version=torch.__version__)
        lookup(model)
    check_positive("--epochs", cfg.train.epochs, integer=True)
    check_positive("--batch-size", cfg.train.batch_size, integer=True)
    check_positive("--lr", cfg.train.lr)
    if stop_after_epoch is not None:
        check_positive("--stop-after-epoch", stop_after_epoch, integer=True)
    if cfg.train.num_workers < 0:
        raise ConfigError(f"--workers must be 0 (decode in the training process) or more, got {cfg.train.num_workers}")
    task_obj = make_task(cfg.data.task, cfg.data.noise, cfg.data.scale)
    if cfg.data.image_size is not None:
        check_positive("--image-size", cfg.data.image_size, integer=True)
    if cfg.data.channels not in (None, 1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {cfg.data.channels}")

    splits = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, image_size=cfg.data.image_size,
                          channels=cfg.data.channels, seed=cfg.train.seed, stream=stream)
    target_shape = splits.in_shape
    in_shape = task_obj.input_shape(target_shape)
    if resume is None:
        model_cfg = build_model_config(model, in_shape, model_options or {}, num_classes=len(splits.classes),
                                       scale=task_obj.scale)
        cfg.model_config = dataclasses.asdict(model_cfg)
        cfg.in_shape, cfg.out_shape, cfg.classes = tuple(in_shape), tuple(target_shape), list(splits.classes)

        def create_run_dir() -> Path:
            path = Path(out) if out is not None else default_run_dir(model, dataset)
            prepare_run_dir(path)
            atomic_write_text(path / ckpt.CONFIG_NAME, cfg.to_json())
            return path

        # Rank 0 names and creates the folder (the default name holds the time, which the ranks
        # would not agree on) and tells the others; its errors are raised on every rank.
        run_dir = rank0_then_broadcast(create_run_dir)
    elif tuple(cfg.out_shape) != tuple(target_shape):
        raise CheckpointError(f"{run_dir}: the run was trained on images of shape {tuple(cfg.out_shape)}, "
                              f"but {cfg.data.dataset} now loads as {tuple(target_shape)}")
    if resume is not None:  # a config.json edited to ask for a huge model is refused before it is built
        ckpt.check_size_against_weights(cfg, run_dir / ckpt.WEIGHTS_NAME, str(run_dir / ckpt.CONFIG_NAME))
    torch.manual_seed(cfg.train.seed)  # weight initialisation
    net = ckpt.build_from_config(cfg)
    if tuple(net.out_shape) != tuple(target_shape):
        raise ConfigError(f"{cfg.model} produces images of shape {net.out_shape}, the targets are {target_shape}; "
                          "choose a model for this task")
    # A full disk is refused now, not after an epoch of training; only rank 0 writes, so only its disk counts.
    rank0_then_broadcast(lambda: ckpt.check_free_space(run_dir, net))
    trainer = Trainer(net, splits.train, splits.val, cfg, run_dir, task=task_obj, device=dev, callbacks=callbacks)
    with cpu_threads(dev, workers=cfg.train.num_workers if trainer.streamed else 0):
        result = trainer.fit(resume=resume is not None, stop_after_epoch=stop_after_epoch)
    if world > 1:
        torch.distributed.barrier()

    test_metrics = None
    finished = not result.interrupted and result.epochs_done >= cfg.train.epochs
    if rank == 0 and finished:
        # The run's own copy of the weights is written after each checkpoint; a process killed
        # between the two at the last epoch left it one epoch old, and a resume has no epoch left
        # to rewrite it in.
        ckpt.save_weights(net, run_dir / ckpt.WEIGHTS_NAME)
        net.run_config = cfg
        if evaluate_test:
            from .eval.evaluate import evaluate_model

            test_metrics = evaluate_model(net, splits.test, task_obj, seed=cfg.train.seed)
            if task_obj.kind != "reconstruct":
                from .eval.tasks import evaluate_task_baselines

                test_metrics["baselines"] = evaluate_task_baselines(task_obj, splits.val, splits.test,
                                                                    seed=cfg.train.seed)
            atomic_write_text(run_dir / TEST_METRICS_NAME, json.dumps(test_metrics, indent=2))
        save_reconstructions(net, splits.test, task_obj, run_dir / "reconstructions.png", seed=cfg.train.seed)
        if write_report:
            try:
                from .viz.report import write_report as _write_report
            except ImportError:  # the report module is optional while it is being built
                _write_report = None
            if _write_report is not None:
                if not isinstance(getattr(splits.train, "images", None), torch.Tensor):  # streamed
                    splits = dataclasses.replace(splits, train=splits.train.load(REPORT_TRAIN_IMAGES))
                _write_report(run_dir, model=net, splits=splits)
    return RunResult(run_dir, result, test_metrics)


@torch.inference_mode()
def save_reconstructions(model, data, task, path: Path, *, n: int = 10, seed: int = 0) -> Path:
    """Test originals above their reconstructions (and the model's input, when it differs)."""
    from .viz import image_grid, save_figure

    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    clean = data.images[:n].to(device)
    y = data.labels[:n].to(device) if data.labels is not None and model.conditional else None
    batch = task.make_batch(clean, y, gen)
    x_hat = model.reconstruct(batch.x, y)
    if task.kind == "reconstruct":
        rows, titles = [clean, x_hat], ["original", "reconstructed"]
    else:
        shown_input = torch.nn.functional.interpolate(batch.x, size=clean.shape[-2:], mode="nearest")
        rows, titles = [clean, shown_input, x_hat], ["clean", "model input", "output"]
    fig = image_grid(rows, titles, title=f"{model.registry_name}: {task.describe()}")
    return save_figure(fig, path)


def evaluate(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
             device: str = "auto", split: str = "test") -> dict[str, Any]:
    """Metrics of a trained run on a dataset's test split (its own dataset unless ``dataset``).

    For denoise and super-resolution runs the result also holds "baselines": {name: {"psnr",
    "ssim", ...}} for the noisy input and the classical denoisers (tuned on validation
    images), or for nearest/bilinear/bicubic enlargement, scored on the same images.
    """
    from .data import load_dataset
    from .eval.evaluate import evaluate_model

    model = ckpt.load(run_dir, device=device)
    cfg: RunConfig = model.run_config
    task = make_task(cfg.data.task, cfg.data.noise, cfg.data.scale)
    name = dataset or cfg.data.dataset
    c, h, _ = cfg.out_shape
    splits = load_dataset(name, data_dir=data_dir or (cfg.data.data_dir if dataset is None else None),
                          image_size=h if (name != cfg.data.dataset or cfg.data.image_size) else None,
                          channels=c if name != cfg.data.dataset else cfg.data.channels, seed=cfg.train.seed)
    if tuple(splits.in_shape) != tuple(cfg.out_shape):
        raise ConfigError(f"{name} images are {splits.in_shape}, the model was trained on {tuple(cfg.out_shape)}")
    data = getattr(splits, split)
    metrics = evaluate_model(model, data, task, seed=cfg.train.seed)
    if task.kind != "reconstruct":
        from .eval.tasks import evaluate_task_baselines

        # Tuning images must not be the scored ones: when the validation split is scored,
        # the filters are tuned on training images instead.
        tuning = splits.train if split == "val" else splits.val
        metrics["baselines"] = evaluate_task_baselines(task, tuning, data, seed=cfg.train.seed)
    return metrics
