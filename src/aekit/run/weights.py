"""Building a run's model from its config and loading its safetensors weights, safely.

Safetensors holds tensors and nothing else, so loading never runs code.  Sizes are checked
before anything big is allocated: the model is first built on torch's "meta" device, which
records shapes and allocates nothing, so a config.json edited to ask for a layer of 10^10
units costs nothing to refuse.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..registry import build_model, config_from_dict, lookup
from .layout import CONFIG_NAME


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (CUDA when there is a GPU, else the CPU), ``cpu`` or ``cuda[:N]``."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = str(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def build_from_config(cfg: RunConfig, source: str = CONFIG_NAME) -> torch.nn.Module:
    """The (untrained) model ``cfg`` names, or a CheckpointError naming ``source``.

    Its size is checked first, on the meta device, so a config asking for a huge model
    allocates nothing."""
    _check_size(meta_state(cfg, source), source, "choose smaller layers")
    try:
        return build_model(cfg.model, config_from_dict(cfg.model, dict(cfg.model_config)))
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        raise CheckpointError(f"{source}: cannot build model {cfg.model!r} from its config: {err}") from None


# The largest model a run folder may describe.  aekit's models are a few MB (the largest built-in
# default, the denoiser, is under 2 MB); a config.json edited to ask for more is refused before
# anything is allocated, whatever its weights file holds.
MAX_WEIGHT_BYTES = 1 << 30

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def meta_state(cfg: RunConfig, source: str = CONFIG_NAME) -> dict[str, torch.Tensor]:
    """The model's state dict built on the "meta" device: every name, shape and dtype, no memory."""
    try:
        lookup(cfg.model)
    except ConfigError as err:
        raise CheckpointError(f"{source}: {err}") from None
    try:
        with torch.device("meta"):
            model = build_model(cfg.model, config_from_dict(cfg.model, dict(cfg.model_config)))
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        raise CheckpointError(f"{source}: cannot build model {cfg.model!r} from its config: {err}") from None
    return model.state_dict()


def check_weights(cfg: RunConfig, weights: Path, source: str = CONFIG_NAME) -> None:
    """Check ``weights`` against the model ``cfg`` describes, reading only the file's header.

    In this order, so that nothing large is allocated before the answer is known: the model's
    size from the config alone (built on the meta device), refused over :data:`MAX_WEIGHT_BYTES`;
    the weights file present and a whole safetensors file (its header covers the file exactly:
    a truncated copy is refused); the header's tensor names, shapes and dtypes equal to the
    model's.  Every refusal is one line naming the file.
    """
    expected = meta_state(cfg, source)
    _check_size(expected, source, "the config was edited or is not aekit's")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file; the run folder is incomplete "
                              "(copy it again, or train it with `aekit train`)")
    try:
        with safe_open(str(weights), framework="pt") as f:
            header = {key: (tuple(f.get_slice(key).get_shape()), f.get_slice(key).get_dtype()) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{weights}: not a valid safetensors file ({_one_line(err)}); the file is corrupt, truncated or not aekit's"
        ) from None
    _check_names(weights, expected, header)
    for key, (shape, dtype) in header.items():
        want = expected[key]
        if shape != tuple(want.shape) or not _stored_as(_DTYPES.get(dtype), want.dtype):
            raise CheckpointError(f"{weights}: tensor {key} is {shape} {_DTYPES.get(dtype, dtype)}, "
                                  f"the model needs {tuple(want.shape)} {want.dtype}")


# Weights may be stored in half precision where the model computes in float32 (the shipped
# models are, where that changes no figure: scripts/train_zoo.py); they are widened on loading.
_HALF = (torch.float16, torch.bfloat16)


def _stored_as(stored: torch.dtype | None, wanted: torch.dtype) -> bool:
    """Whether a tensor stored as ``stored`` can be loaded where the model holds ``wanted``."""
    return stored == wanted or (wanted == torch.float32 and stored in _HALF)


def _check_names(path: Path, expected, found) -> None:
    """Refuse weights whose tensor names are not the model's, naming a few of each kind."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path}: weights do not match the model in config.json "
            f"(missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(extra[:3]) or 'none'})"
        )


def _check_size(state: dict[str, torch.Tensor], source: str, fix: str) -> None:
    """Refuse a model whose weights would take more than :data:`MAX_WEIGHT_BYTES`."""
    need = sum(t.numel() * t.element_size() for t in state.values())
    if need > MAX_WEIGHT_BYTES:
        raise CheckpointError(f"{source}: describes a model with {need:,} bytes of weights, above aekit's limit of "
                              f"{MAX_WEIGHT_BYTES:,}; {fix}")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights, checking names, shapes and dtypes before touching the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing weights file")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({err}); the file is corrupt or not aekit's") from None
    expected = model.state_dict()
    _check_names(path, expected, state)
    for key, tensor in state.items():
        want = expected[key]
        if tensor.shape != want.shape or not _stored_as(tensor.dtype, want.dtype):
            raise CheckpointError(
                f"{path}: tensor {key} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"the model needs {tuple(want.shape)} {want.dtype}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
        state[key] = tensor.to(want.dtype)
    model.load_state_dict(state)
