"""Tasks: what a model learns to map from and to, one registered class per file.

``reconstruct``: the input is the target (the plain autoencoder).  ``denoise``: a corrupted
copy goes in, the clean image is the target.  ``super-resolution``: an area-downsampled copy
goes in, the full-size image is the target.  Adding a task is adding a file here that defines a
:class:`~aekit.tasks.base.Task` subclass decorated with :func:`register_task`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..errors import ConfigError

TASKS: dict[str, type] = {}


def register_task(cls: type) -> type:
    if cls.name in TASKS:
        raise RuntimeError(f"task name {cls.name!r} registered twice")
    TASKS[cls.name] = cls
    return cls


def _discover() -> None:
    # Every module in this package (but the base) defines and registers tasks on import.
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def task_names() -> list[str]:
    """Task names, the plain autoencoder's first."""
    _discover()
    return sorted(TASKS, key=lambda name: (name != "reconstruct", name))


def make_task(name: str = "reconstruct", noise: str | None = None, scale: int | None = None):
    """The task called ``name`` with its options (``noise`` for denoise, ``scale`` for super-resolution)."""
    _discover()
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(task_names())}")
    return TASKS[name].from_options(noise=noise, scale=scale)


def task_of(data: Any):
    """The task a run's ``data`` settings (a :class:`~aekit.config.DataConfig`) describe."""
    return make_task(data.task, data.noise, data.scale)


def dataset_kind(dataset: str) -> str:
    """The kind of data ``dataset`` holds: that of the task of another kind than "image" that
    reads it (melodies: "melody"), else "image"."""
    _discover()
    for cls in TASKS.values():
        if cls.data_kind != "image" and cls.reads_dataset(dataset):
            return cls.data_kind
    return "image"


def task_for_dataset(dataset: str) -> str:
    """The task ``dataset`` is trained for when --task is not given: reconstruct for images,
    the task made for any other kind of data (melody for melodies)."""
    kind = dataset_kind(dataset)
    return next((name for name, cls in TASKS.items() if cls.data_kind == kind and kind != "image"), "reconstruct")


def _plural(kind: str) -> str:
    return next((cls.data_plural for cls in TASKS.values() if cls.data_kind == kind), f"{kind}s")


def check_task_data(task, dataset: str, model: str | None = None, model_kind: str | None = None) -> None:
    """Refuse a task (and a model) that cannot read ``dataset``'s kind of data, saying what can."""
    kind = dataset_kind(dataset)
    if task.data_kind != kind:
        raise ConfigError(f"--dataset {dataset} holds {_plural(kind)}, which --task {task.name} does not train on; "
                          f"drop --task (the default follows the dataset: {task_for_dataset(dataset)})")
    if model_kind is not None and model_kind != kind:
        default = TASKS[task_for_dataset(dataset)].default_model
        raise ConfigError(f"{model} reads {_plural(model_kind)}, but --dataset {dataset} holds {_plural(kind)}; "
                          f"choose a model for {_plural(kind)} (the default for this dataset is {default})")


def task_for_command(command: str):
    """The task class whose runs ``aekit COMMAND`` applies to files (denoise, upscale)."""
    _discover()
    for cls in TASKS.values():
        if cls.apply_command == command:
            return cls
    raise ConfigError(f"no task is applied by `aekit {command}`")


from .base import Task

__all__ = ["TASKS", "Task", "check_task_data", "dataset_kind", "make_task", "register_task", "task_for_command",
           "task_for_dataset", "task_names", "task_of"]
