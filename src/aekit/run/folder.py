"""``Run``: one trained run folder, read without running code.

Everything that reads a run goes through here: the CLI commands, the report, the web explorer
and ``aekit.load``.  The config is read and checked when the run is opened; the model is built
and its weights loaded on first use; the data is loaded only when asked for, with one rule for
where its files are looked for (see :meth:`Run.splits`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from . import layout
from .sources import Source, resolve


class Run:
    """A run folder: ``Run.open(path)``, then ``.config``, ``.task``, ``.model``, ``.splits()``."""

    def __init__(self, path: Path, config: RunConfig, *, device: str = "cpu", source: Source | None = None):
        self.path = path
        self.config = config
        self.device = device
        # where it came from (a folder, pretrained:NAME, hf://ORG/NAME): its name, and where derived files go
        self.source = source or Source(spec=str(path), path=path, name=path.name, read_only=False)

    @classmethod
    def open(cls, path: str | Path, *, device: str = "cpu") -> Run:
        """Read and check ``path/config.json``; the model is built only when first used.

        ``path`` is a run folder, ``pretrained:NAME`` (a model shipped with aekit) or
        ``hf://ORG/NAME[@REV]`` (a Hub repository, downloaded once): see :mod:`aekit.run.sources`.
        ``device`` is where :attr:`model` will live: "cpu", "cuda" or "auto".
        """
        source = resolve(path)
        path = source.path
        run = cls(path, layout.read_config(path), device=device, source=source)
        try:
            run.task  # noqa: B018 - the task's options (noise, scale) are checked now, naming the file
        except ConfigError as err:
            raise CheckpointError(f"{path / layout.CONFIG_NAME}: {err}") from None
        return run

    # -- what needs no model -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.source.name

    @property
    def read_only(self) -> bool:
        """True for pretrained and Hub models: nothing may be written into :attr:`path`."""
        return self.source.read_only

    def output_file(self, name: str) -> Path:
        """Where a file derived from the run (a fitted mixture, the report) is written: in the run
        folder, or for a read-only source in its own folder in aekit's cache."""
        return self.source.output_file(name)

    def file(self, name: str) -> Path:
        """The path of one of the run's files (a name from :mod:`aekit.run.layout`)."""
        return self.path / name

    @cached_property
    def task(self):
        """The :class:`~aekit.tasks.Task` the run was trained for."""
        from ..tasks import task_of

        return task_of(self.config.data)

    def history(self) -> list[dict]:
        """One record per finished epoch (``metrics.jsonl``)."""
        return layout.read_metrics(self.path)

    def test_metrics(self) -> dict[str, Any] | None:
        """The metrics written at the end of training (``test_metrics.json``), None before."""
        return layout.read_test_metrics(self.path)

    def evaluations(self) -> dict[str, dict[str, Any]]:
        """What `aekit evaluate` measured and stored after training (``evaluations.json``, where
        `aekit evaluate` keeps it: in the folder for derived files, :meth:`output_file`'s, which for
        a read-only run is its own folder in aekit's cache)."""
        try:
            folder = self.source.output_dir()
        except ConfigError:  # a read-only run whose cache folder cannot be made: nothing was stored there
            return {}
        return layout.read_evaluations(folder)

    @property
    def has_report(self) -> bool:
        return (self.path / layout.REPORT_NAME).is_file()

    def weights_path(self) -> Path:
        """The run's weights; where a kill came between the newest checkpoint and the run's own
        copy of its weights (written in that order), the checkpoint's."""
        weights = self.path / layout.WEIGHTS_NAME
        if not weights.is_file():
            checkpoints = layout.list_checkpoints(self.path)
            if checkpoints and (checkpoints[-1] / layout.WEIGHTS_NAME).is_file():
                return checkpoints[-1] / layout.WEIGHTS_NAME
        return weights

    # -- the model ---------------------------------------------------------------------------
    @cached_property
    def model(self):
        """The trained model in eval mode on the run's device, built once and then kept."""
        return self.load_model(device=self.device)

    def load_model(self, *, device: str | None = None, weights: str | Path | None = None):
        """A fresh copy of the trained model (or of ``weights``, e.g. a checkpoint's) on ``device``."""
        from .weights import build_from_config, load_weights, resolve_device

        weights = Path(weights) if weights is not None else self.weights_path()
        self.check(weights)
        model = build_from_config(self.config, str(self.path / layout.CONFIG_NAME))
        load_weights(model, weights)
        return model.to(resolve_device(device or self.device)).eval()

    def check(self, weights: str | Path | None = None) -> None:
        """Refuse the run, in one line naming the file, unless its model can be built and its
        weights (or ``weights``) fit it: checked from config.json and the safetensors header
        alone, before anything is allocated (see :func:`aekit.run.weights.check_weights`)."""
        from .weights import check_weights

        check_weights(self.config, Path(weights) if weights is not None else self.weights_path(),
                      str(self.path / layout.CONFIG_NAME))

    # -- the data ----------------------------------------------------------------------------
    def splits(self, dataset: str | None = None, data_dir: str | None = None, *, download: bool = True,
               stream: bool | None = None):
        """The run's dataset (or ``dataset``), at the shape the run was trained on.

        Where the files are looked for, one rule for every command: ``data_dir`` if given,
        else the folder the run was trained from (``--data-dir`` at training, kept in
        config.json), and then, as for training, a subfolder named after the dataset and the
        cache.  Another dataset is resized to the run's image size and converted to its
        channels, so that a model trained on digits can be scored on clothes.
        """
        from ..data import load_dataset

        cfg = self.config
        name = dataset or cfg.data.dataset
        same = name == cfg.data.dataset
        image = len(cfg.out_shape) == 3  # else (steps,): melodies come in the length they were cut to
        c, h = (cfg.out_shape[0], cfg.out_shape[1]) if image else (None, None)
        splits = load_dataset(name, data_dir=data_dir or cfg.data.data_dir,
                              image_size=cfg.data.image_size if same else h,
                              channels=cfg.data.channels if same else c, seed=cfg.train.seed,
                              download=download, stream=stream, strict=cfg.data.strict)
        if tuple(splits.in_shape) != tuple(cfg.out_shape):
            raise ConfigError(f"{name} images are {tuple(splits.in_shape)}, the run was trained on "
                              f"{tuple(cfg.out_shape)}; choose a dataset of that shape")
        return splits

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.config.model}, {self.task.describe()}, {self.config.data.dataset})"


def load(path: str | Path, *, device: str = "cpu", weights: str | Path | None = None):
    """Rebuild a trained model from a run folder: ``config.json`` plus ``model.safetensors``.

    ``path`` may also name a model shipped with aekit (``"pretrained:mnist-vae-2d"``; ``aekit
    pretrained`` lists them) or a Hub repository (``"hf://ORG/NAME"``, ``"hf://ORG/NAME@REV"``).

    Returns the model in eval mode on ``device`` ("cpu", "cuda", or "auto").  No code from the
    folder is run: the config names a registered model, and the weights are safetensors.  For
    the run's config, task, data and metrics, open it as a :class:`Run`.
    """
    return Run.open(path, device=device).load_model(weights=weights)
