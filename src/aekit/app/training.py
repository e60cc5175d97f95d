"""Training a run: from the user's options to one :class:`~aekit.config.RunConfig`, then a run folder.

One path for every way of asking: ``aekit train`` flags, ``--set section.field=value``,
``--config FILE`` (a run's own config.json reproduces it) and ``aekit.train(...)`` keywords all
become assignments to the same config, checked by the same rules (:mod:`aekit.config`), and
then the data, the task, the model and the trainer are built from that config alone.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import (
    DataConfig,
    RunConfig,
    TrainConfig,
    check_positive,
    check_value,
    field_hints,
    from_plain,
    parse_value,
    to_plain,
)
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_text
from ..registry import config_from_dict, fill_absent_model_config, lookup
from ..run import layout
from ..run.folder import Run

log = logging.getLogger(__name__)

# The options aekit.train() and `aekit train` take by a flat name, and the setting each sets.
# Every other setting is reached with --set SECTION.FIELD=VALUE (settings=[...] from Python).
OPTIONS = {
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "image_size": "data.image_size",
    "channels": "data.channels",
    "task": "data.task",
    "strict": "data.strict",
    "noise": "data.noise",
    "scale": "data.scale",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "seed": "train.seed",
    "device": "train.device",
    "precision": "train.precision",
    "workers": "train.num_workers",
    "tensorboard": "train.tensorboard",
    "latent_dim": "model.latent_dim",
    "beta": "model.beta",
    "recon_loss": "model.recon_loss",
}
# What may change when a run is continued: how long it trains, and where (its data's folder, its
# device, its loader processes), and whether it also writes TensorBoard files (they only watch it).
# Anything else would make the resumed run another run.
RESUMABLE = ("train.epochs", "train.device", "data.data_dir", "train.num_workers", "train.tensorboard")
SECTIONS = {"data": DataConfig, "train": TrainConfig}

# A streamed training split has no images tensor; the report gets this many of its images
# decoded into memory (it shows samples around the codes of a few thousand training images).
REPORT_TRAIN_IMAGES = 2000


@dataclass
class RunResult:
    run_dir: Path
    result: Any  # aekit.train.loop.TrainResult
    test_metrics: dict[str, Any] | None  # metric -> value, plus "baselines" for task runs
    task: Any = None  # aekit.tasks.Task: what the run learned, for wording its metrics


# -- from options to a config ----------------------------------------------------------------------

def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as plain values: JSON (a run's config.json, or any part of one) or TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {path}: cannot read it ({err})") from None
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(f"--config {path}: TOML needs Python 3.11 or later; write the file as JSON") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"--config {path}: not valid TOML ({err})") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config {path}: not valid JSON ({err})") from None
        except RecursionError:
            raise ConfigError(f"--config {path}: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path}: expected an object with model, model_config, data and train")
    return raw


def plan_config(*, config_file: str | Path | None = None, model: str | None = None,
                options: dict[str, Any] | None = None, settings: list[str] | tuple[str, ...] = (),
                model_options: dict[str, Any] | None = None) -> RunConfig:
    """The config a new run trains with, before its data fixes the shapes and classes.

    Later sources win: ``config_file`` (a run's config.json, or any part of one: ``model``,
    ``model_config``, ``data``, ``train``), then ``options`` (flat names: :data:`OPTIONS`) and
    ``model_options``, then ``settings`` (``"section.field=value"`` strings).  Each value is
    checked against its field's type and range, and errors name the field.
    """
    base: dict[str, Any] = read_config_file(config_file) if config_file is not None else {}
    where = f"--config {config_file}" if config_file is not None else "config"
    known = {"model", "model_config", "data", "train", "in_shape", "out_shape", "classes", "format_version",
             "aekit_version", "torch_version"}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; known: model, model_config, data, train")
    values: dict[str, dict[str, Any]] = {"data": {}, "train": {}, "model": {}}
    for section in ("data", "train"):
        values[section].update(from_plain(SECTIONS[section], base.get(section, {}), source=f"{where}: {section}",
                                          partial=True))
    base_model = base.get("model")
    if base_model is not None and not isinstance(base_model, str):
        raise ConfigError(f"{where}: model must be a model name, got {base_model!r}")
    model_config = base.get("model_config", {})
    if not isinstance(model_config, dict):
        raise ConfigError(f"{where}: model_config must be an object")
    if "format_version" in base and base_model is not None and model in (None, base_model):
        model_config = fill_absent_model_config(base_model, model_config)  # a run's config.json: as it was trained
    values["model"].update(model_config)

    for name, value in (options or {}).items():
        if name not in OPTIONS:
            raise ConfigError(f"unknown training option {name!r}; known: model, {', '.join(OPTIONS)}")
        if value is not None:
            section, key = OPTIONS[name].split(".")
            values[section][key] = value
    values["model"].update({k: v for k, v in (model_options or {}).items() if v is not None})
    for name, value in _parse_settings(settings, model or base_model, values["data"]).items():
        section, key = name.split(".")
        values[section][key] = value

    if "task" not in values["data"]:  # the default follows the data: melodies get the melody task
        values["data"]["task"] = _default_task(values["data"])
    data = from_plain(DataConfig, values["data"], source="data")
    task = _task_class(data.task)
    name = model or base_model or task.default_model
    config_cls, model_cls = lookup(name)
    # the family's own training defaults fill what no source gave (a run's config.json gives all)
    train = from_plain(TrainConfig, {**model_cls.train_defaults, **values["train"]}, source="train")
    from ..tasks import check_task_data

    check_task_data(task, data.dataset, name, model_cls.data_kind)
    # the model's values are checked now, by their fields' own ranges, before any data is loaded
    from_plain(config_cls, values["model"], source=f"model {name!r}", partial=True)
    return RunConfig(model=name, model_config=values["model"], data=data, train=train,
                     aekit_version=__version__, torch_version=_torch_version())


def _parse_settings(settings, model: str | None, data_values: dict[str, Any]) -> dict[str, Any]:
    """``section.field=value`` strings, checked against the field each names: {"section.field": value}."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, dot, field = key.partition(".")
        if not sep or not dot or section not in ("model", "data", "train"):
            raise ConfigError(f"--set {item!r}: write SECTION.FIELD=VALUE, SECTION being model, data or train "
                              "(for example --set model.channels=16,32 or --set train.warmup_steps=200)")
        if section == "model":
            if model is None:
                model = out.get("data.task") or data_values.get("task") or _default_task(data_values)
                model = _task_class(model).default_model
            config_cls, _ = lookup(model)
        else:
            config_cls = SECTIONS[section]
        hints = field_hints(config_cls)
        if field not in hints:
            owner = f"model {model!r}" if section == "model" else f"the {section} settings"
            raise ConfigError(f"--set {key}: {owner} has no field {field!r}; known: {', '.join(hints)}")
        hint, fld = hints[field]
        out[key] = parse_value(text, hint, fld, where=f"--set {key}")
    return out


def _default_task(data_values: dict[str, Any]) -> str:
    """--task's default for the dataset in ``data_values`` (reconstruct; melody for melodies)."""
    from ..tasks import task_for_dataset

    return task_for_dataset(data_values.get("dataset") or DataConfig().dataset)


def _task_class(name: str):
    from ..tasks import TASKS, task_names

    task_names()  # registers them
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    return TASKS[name]


def _torch_version() -> str:
    import torch

    return torch.__version__


def settings_help() -> str:
    """The data.* and train.* fields --set reaches, with their types and defaults, one per line."""
    lines = []
    for section, cls in SECTIONS.items():
        defaults = to_plain(cls())
        lines += [f"{section}.{name} = {json.dumps(defaults[name])}" for name in field_hints(cls)]
    return "\n".join(lines)


def build_model_config(model: str, in_shape, values: dict[str, Any], *, num_classes: int, task):
    """The model's config for data of ``in_shape``: the user's values plus what the data and task decide."""
    config_cls, _ = lookup(model)
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in values.items() if v is not None}
    values["in_shape"] = list(in_shape)
    if "num_classes" in names:
        if num_classes < 2:
            raise ConfigError(f"{model} is conditional and needs a labelled dataset; this one has no classes")
        values["num_classes"] = num_classes
    values.update({k: v for k, v in task.model_options().items() if k in names})
    return config_from_dict(model, values)


# -- the run folder --------------------------------------------------------------------------------

def default_run_dir(model: str, dataset: str, root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_dataset = dataset.replace(":", "-").replace("/", "_").strip("_.-")[:40] or "data"
    return Path(root) / f"{stamp}-{model}-{safe_dataset}"


def prepare_run_dir(path: Path) -> None:
    """Create the run folder and prove it is writable before any training time is spent."""
    if str(path).strip() == "":
        raise ConfigError("--out is empty; name a folder for the run")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is a file; choose a folder")
    if (path / layout.CONFIG_NAME).exists():
        raise ConfigError(f"--out {path}: already holds a run; continue it with --resume {path} or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--out {path}: cannot write there ({err.strerror}); choose a writable folder") from None


# -- training ---------------------------------------------------------------------------------------

def train(config: RunConfig | None = None, *, model: str | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, config_file: str | Path | None = None,
          settings: list[str] | tuple[str, ...] = (), model_options: dict[str, Any] | None = None,
          callbacks=None, stop_after_epoch: int | None = None, evaluate_test: bool = True,
          write_report: bool = True, stream: bool | None = None, **options) -> RunResult:
    """Train a model into a run folder (or continue the run in ``resume``) and return it.

    The run is described by ``config`` (a :class:`RunConfig`), or planned from ``config_file``,
    ``model``, the flat ``options`` (:data:`OPTIONS`: ``dataset=``, ``epochs=``, ``latent_dim=``
    ...), ``model_options`` and ``settings`` (:func:`plan_config`).  With ``resume`` only
    :data:`RESUMABLE` settings may be given; ``epochs`` extends the run.

    Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment) every process calls
    this: it joins the process group for the run (NCCL on GPUs, gloo on CPUs) and leaves it at
    the end; rank 0 names the run folder and writes every file.  ``stream`` reads a
    ``folder:PATH`` training split from disk in ``workers`` DataLoader processes (None: only
    when the folder decodes to more than 1 GiB).
    """
    from ..run.weights import resolve_device
    from ..train.distributed import session

    if resume is not None:
        if config is not None or config_file is not None or model is not None or model_options or settings:
            raise ConfigError(f"--resume {resume}: continues the run as configured; drop the model and "
                              "config options (only --epochs, --device, --data-dir and --workers may change)")
        cfg = _resume_config(Path(resume), options)
    elif config is not None:
        if options or model is not None or config_file is not None or model_options or settings:
            raise ConfigError("pass either a RunConfig or options, not both")
        cfg = config
    else:
        cfg = plan_config(config_file=config_file, model=model, options=options, settings=settings,
                          model_options=model_options)
    if stop_after_epoch is not None:
        check_positive("--stop-after-epoch", stop_after_epoch, integer=True)
    if out is not None and str(out).strip() == "":  # Path("") is ".", which would train into the current folder
        raise ConfigError("--out is empty; name a folder for the run")
    if cfg.train.tensorboard:  # a missing extra is refused now, not after the data has loaded
        from .tensorboard import require_tensorboard

        require_tensorboard()
    with session(resolve_device(cfg.train.device)) as dev:
        return _train(dev, cfg, out=out, resume=resume, callbacks=callbacks, stop_after_epoch=stop_after_epoch,
                      evaluate_test=evaluate_test, write_report=write_report, stream=stream)


def _resume_config(run_dir: Path, options: dict[str, Any]) -> RunConfig:
    """The run's own config, with the options that may change on a resume applied."""
    cfg = Run.open(run_dir).config
    for name, value in options.items():
        if name not in OPTIONS:
            raise ConfigError(f"unknown training option {name!r}; known: model, {', '.join(OPTIONS)}")
        if value is None:
            continue
        path = OPTIONS[name]
        if path not in RESUMABLE:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} cannot change when resuming {run_dir} (the run keeps its own); "
                              "drop it, or train a new run")
        section, key = path.split(".")
        hint, fld = field_hints(SECTIONS[section])[key]
        setattr(getattr(cfg, section), key, check_value(value, hint, fld, where="--" + name.replace("_", "-")))
    return cfg


def _train(dev, cfg: RunConfig, *, out, resume, callbacks, stop_after_epoch, evaluate_test, write_report,
           stream) -> RunResult:
    """:func:`train` inside the process group, on ``dev`` (this process's device), holding the
    run folder's lock (:class:`aekit.run.lock.RunLock`) on rank 0 from before the folder is
    touched until its last file is written."""
    from ..run.lock import RunLock

    locks: list[RunLock] = []
    try:
        return _train_locked(dev, cfg, out=out, resume=resume, callbacks=callbacks, stop_after_epoch=stop_after_epoch,
                             evaluate_test=evaluate_test, write_report=write_report, stream=stream, locks=locks)
    finally:
        for lock in locks:
            lock.release()


def _train_locked(dev, cfg: RunConfig, *, out, resume, callbacks, stop_after_epoch, evaluate_test, write_report,
                  stream, locks) -> RunResult:
    import torch

    from ..data import load_dataset
    from ..run.lock import RunLock
    from ..run.weights import build_from_config
    from ..tasks import task_of
    from ..train import checkpoint as ckpt
    from ..train.distributed import cpu_threads, dist_info, rank0_then_broadcast
    from ..train.loop import Trainer

    rank, world = dist_info()
    task = task_of(cfg.data)
    cfg.data.noise, cfg.data.scale = task.options()["noise"], task.options()["scale"]
    if resume is not None:
        run_dir = Path(resume)

        def lock_and_clean() -> None:
            locks.append(RunLock(run_dir).acquire())  # before anything in the folder is touched
            ckpt.remove_stale_temp_files(run_dir)  # left by a process killed mid-write

        rank0_then_broadcast(lock_and_clean)

    splits = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, image_size=cfg.data.image_size,
                          channels=cfg.data.channels, seed=cfg.train.seed, stream=stream, strict=cfg.data.strict)
    target_shape = splits.in_shape
    in_shape = task.input_shape(target_shape)
    if resume is None:
        model_cfg = build_model_config(cfg.model, in_shape, cfg.model_config, num_classes=len(splits.classes),
                                       task=task)
        cfg.model_config = dataclasses.asdict(model_cfg)
        cfg.in_shape, cfg.out_shape, cfg.classes = tuple(in_shape), tuple(target_shape), list(splits.classes)

        def create_run_dir() -> Path:
            path = Path(out) if out is not None else default_run_dir(cfg.model, cfg.data.dataset)
            prepare_run_dir(path)
            locks.append(RunLock(path).acquire())
            if (path / layout.CONFIG_NAME).exists():  # another `aekit train --out` got there first
                raise ConfigError(f"--out {path}: already holds a run; continue it with --resume {path} "
                                  "or choose another --out")
            atomic_write_text(path / layout.CONFIG_NAME, cfg.to_json())
            return path

        # Rank 0 names and creates the folder (the default name holds the time, which the ranks
        # would not agree on) and tells the others; its errors are raised on every rank.
        run_dir = rank0_then_broadcast(create_run_dir)
    else:
        if tuple(cfg.out_shape) != tuple(target_shape):
            raise CheckpointError(f"{run_dir}: the run was trained on images of shape {tuple(cfg.out_shape)}, "
                                  f"but {cfg.data.dataset} now loads as {tuple(target_shape)}")
        # The extended length (--epochs) is recorded, so the folder describes the run it holds.
        if rank == 0:
            atomic_write_text(run_dir / layout.CONFIG_NAME, cfg.to_json())
    torch.manual_seed(cfg.train.seed)  # weight initialisation
    net = build_from_config(cfg)
    if tuple(net.out_shape) != tuple(target_shape):
        raise ConfigError(f"{cfg.model} produces images of shape {net.out_shape}, the targets are {target_shape}; "
                          "choose a model for this task")
    # A full disk is refused now, not after an epoch of training; only rank 0 writes, so only its disk counts.
    rank0_then_broadcast(lambda: ckpt.check_free_space(run_dir, net))
    trainer = Trainer(net, splits.train, splits.val, cfg, run_dir, task=task, device=dev, callbacks=callbacks)
    board = None
    if cfg.train.tensorboard and rank == 0:  # only rank 0 writes files
        from .tensorboard import TensorBoardLog

        board = TensorBoardLog.attach(trainer)
    try:
        with cpu_threads(dev, workers=cfg.train.num_workers if trainer.streamed else 0):
            result = trainer.fit(resume=resume is not None, stop_after_epoch=stop_after_epoch)
    finally:
        if board is not None:
            board.close()
    if world > 1:
        torch.distributed.barrier()

    test_metrics = None
    finished = not result.interrupted and result.epochs_done >= cfg.train.epochs
    if rank == 0 and finished:
        # The run's own copy of the weights is written after each checkpoint; a process killed
        # between the two at the last epoch left it one epoch old, and a resume has no epoch left
        # to rewrite it in.
        ckpt.save_weights(net, run_dir / layout.WEIGHTS_NAME)
        net.eval()
        if evaluate_test:
            from .evaluation import score

            test_metrics = score(net, task, splits, seed=cfg.train.seed)
            atomic_write_text(run_dir / layout.TEST_METRICS_NAME, json.dumps(test_metrics, indent=2))
        save_reconstructions(net, task, splits.test, run_dir / layout.RECONSTRUCTIONS_NAME, seed=cfg.train.seed)
        if write_report:
            from .report import write_report as _write_report

            if not isinstance(getattr(splits.train, "items", None), torch.Tensor):  # streamed
                splits = dataclasses.replace(splits, train=splits.train.load(REPORT_TRAIN_IMAGES))
            run = Run(Path(run_dir), cfg)
            run.model = net  # the trained model and its data are at hand: the report need not load them again
            _write_report(run, splits=splits)
    return RunResult(Path(run_dir), result, test_metrics, task)


def save_reconstructions(model, task, data, path: Path, *, n: int = 10, seed: int = 0) -> Path:
    """Test originals above their reconstructions (and the model's input, when it differs)."""
    import torch

    from ..latent import views as lv
    from ..viz import plots, save_figure

    if task.data_kind != "image":  # melodies: piano rolls
        from .music import reconstructions_figure

        return save_figure(reconstructions_figure(model, data, n=n, title=f"{model.registry_name}: "
                                                  f"{task.describe()}"), path)
    n = min(n, len(data))
    labels = data.labels[:n] if data.labels is not None else None
    rows = lv.before_after(model, task, data.images[:n], labels, generator=torch.Generator().manual_seed(seed))
    return save_figure(plots.reconstructions_figure(rows, title=f"{model.registry_name}: {task.describe()}"), path)
