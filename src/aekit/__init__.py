"""aekit: autoencoders as practical tools.

>>> import aekit
>>> model = aekit.load("runs/my-run")            # rebuilt from config.json + model.safetensors
>>> posterior = model.encode(x)                  # .mode(), .sample(), .kl()
>>> x_hat = model.decode(posterior.mode())
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import AekitError, CheckpointError, ConfigError, DataError, TrainingError
from .registry import model_names
from .train.checkpoint import load

__all__ = [
    "AekitError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "TrainingError",
    "__version__",
    "evaluate",
    "load",
    "model_names",
    "train",
]


def train(**options):
    """Train a model and return its run folder; see :func:`aekit.api.train`."""
    from .api import train as _train

    return _train(**options)


def evaluate(run_dir, **options):
    """Test-split metrics of a run; see :func:`aekit.api.evaluate`."""
    from .api import evaluate as _evaluate

    return _evaluate(run_dir, **options)
