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
    """The (untrained) model ``cfg`` names, or a CheckpointError naming ``source``."""
    lookup(cfg.model)  # unknown names -> a clear error listing the known ones
    try:
        return build_model(cfg.model, config_from_dict(cfg.model, dict(cfg.model_config)))
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        raise CheckpointError(f"{source}: cannot build model {cfg.model!r} from its config: {err}") from None


def check_size_against_weights(cfg: RunConfig, weights: Path, source: str = CONFIG_NAME) -> None:
    """Refuse a config whose model needs more weight bytes than ``weights`` holds, before building it."""
    try:
        have = weights.stat().st_size
    except OSError:
        return  # load_weights names the missing file
    try:  # a file that is not safetensors at all (a pickle, say) is named as such first
        with safe_open(str(weights), framework="pt"):
            pass
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{weights}: not a valid safetensors file ({err}); the file is corrupt or not aekit's"
        ) from None
    try:
        with torch.device("meta"):
            meta = build_model(cfg.model, config_from_dict(cfg.model, dict(cfg.model_config)))
    except Exception:  # noqa: BLE001 - the real build reports what is wrong with the config
        return
    need = sum(t.numel() * t.element_size() for t in meta.state_dict().values())
    if need > have:
        raise CheckpointError(
            f"{source}: describes a model with {need:,} bytes of weights, but {weights} holds {have:,} bytes; "
            "the two files do not belong together"
        )


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
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path}: weights do not match the model in config.json "
            f"(missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(extra[:3]) or 'none'})"
        )
    for key, tensor in state.items():
        want = expected[key]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: tensor {key} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"the model needs {tuple(want.shape)} {want.dtype}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values")
    model.load_state_dict(state)
