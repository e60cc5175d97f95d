"""aekit: autoencoders as practical tools.

>>> import aekit
>>> model = aekit.load("runs/my-run")            # rebuilt from config.json + model.safetensors
>>> model = aekit.load("pretrained:mnist-vae-2d")  # shipped with aekit (`aekit pretrained`); or "hf://ORG/NAME"
>>> posterior = model.encode(x)                  # .mode(), .sample(), .kl()
>>> x_hat = model.decode(posterior.mode())
>>> run = aekit.Run.open("runs/my-run")          # its config, task, metrics and data too

Importing aekit imports neither torch nor any other heavy library: names below are loaded on
first use, so ``aekit --help`` answers at once.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import train as _train_package  # noqa: F401  (see train() below)
from .errors import AekitError, CheckpointError, ConfigError, DataError, TrainingError

__version__ = "0.1.0"

# name -> (module, attribute) of what `import aekit` offers, imported when first used
_LAZY = {
    "load": ("aekit.run", "load"),
    "Run": ("aekit.run", "Run"),
    "evaluate": ("aekit.app.evaluation", "evaluate"),
    "model_names": ("aekit.registry", "model_names"),
    "task_names": ("aekit.tasks", "task_names"),
}

__all__ = ["AekitError", "CheckpointError", "ConfigError", "DataError", "Run", "TrainingError", "__version__",
           "evaluate", "load", "model_names", "task_names", "train"]
assert set(_LAZY) <= set(__all__)


def train(*args: Any, **options: Any):
    """Train a model into a run folder and return it; see :func:`aekit.app.training.train`."""
    from .app.training import train as _train

    return _train(*args, **options)


# ``aekit.train`` is both this function and the subpackage aekit/train/.  Python binds a
# subpackage to its parent's attribute when it is first imported, so the subpackage is imported
# above (cheaply: its __init__ imports nothing) and then this function takes the name for good.


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
