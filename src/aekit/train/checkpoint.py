"""Run folders: writing them atomically and reading them back without running any code.

Layout of a run folder::

    config.json          RunConfig: model name + config, data, training settings, versions
    model.safetensors    the latest weights (replaced atomically after every epoch)
    metrics.jsonl        one JSON object per epoch
    checkpoints/ckpt-E-S/  the resume point: model.safetensors, optimizers.pt, state.json

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the old one, and a checkpoint folder is renamed into place only when all its files are
complete, so a kill at any moment leaves the previous checkpoint whole.  Weights are
safetensors; optimiser state is a tensor-only ``torch.save`` read back with
``weights_only=True``: neither format can carry code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import RunConfig
from ..errors import CheckpointError
from ..fileio import atomic_write_text, atomic_write_with, fsync_dir
from ..registry import build_model, config_from_dict, lookup

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2  # the newest, and one before it in case the newest is being replaced


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))


# -- reading -----------------------------------------------------------------------------

def read_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: expected a run folder (with config.json and model.safetensors), got a file")
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; is {run_dir} a run folder written by `aekit train`?")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    return RunConfig.from_dict(raw, source=str(path))


def build_from_config(cfg: RunConfig, source: str = CONFIG_NAME) -> torch.nn.Module:
    lookup(cfg.model)  # unknown names -> a clear error listing the known ones
    values = dict(cfg.model_config)
    try:
        model_cfg = config_from_dict(cfg.model, values)
        return build_model(cfg.model, model_cfg)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        raise CheckpointError(f"{source}: cannot build model {cfg.model!r} from its config: {err}") from None


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


def resolve_device(name: str | torch.device | None) -> torch.device:
    from ..errors import ConfigError

    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = str(name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def load(run_dir: str | Path, *, device: str | torch.device | None = "cpu", weights: str | Path | None = None):
    """Rebuild a trained model from a run folder: ``config.json`` plus ``model.safetensors``.

    Returns the model in eval mode on ``device`` ("cpu", "cuda", or "auto"), with its
    :class:`~aekit.config.RunConfig` attached as ``model.run_config``.
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    model = build_from_config(cfg, str(run_dir / CONFIG_NAME))
    load_weights(model, weights or run_dir / WEIGHTS_NAME)
    model.run_config = cfg
    return model.to(resolve_device(device)).eval()


# -- resumable checkpoints -----------------------------------------------------------------

def _ckpt_name(epoch: int, step: int) -> str:
    return f"ckpt-{epoch:05d}-{step:09d}"


def write_checkpoint(run_dir: Path, model: torch.nn.Module, trainer_state: dict[str, Any],
                     optimizer_state: dict[str, Any]) -> Path:
    """Write a complete resume point, then rename it into place; prune older ones."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(exist_ok=True)
    final = root / _ckpt_name(trainer_state["epoch"], trainer_state["step"])
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_weights(model, tmp / WEIGHTS_NAME)
        with open(tmp / "optimizers.pt", "wb") as fh:
            torch.save(optimizer_state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_text(tmp / "state.json", json.dumps(trainer_state, indent=2))
        if final.exists():  # same point written twice (e.g. Ctrl-C right after an epoch)
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-write
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("ckpt-"))


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trainer state and optimiser state of a checkpoint folder (weights read separately)."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        optim = torch.load(path / "optimizers.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: incomplete checkpoint ({Path(err.filename).name} missing)") from None
    except Exception as err:  # noqa: BLE001 - torch.load's errors for bad files have no common type
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not isinstance(optim, dict):
        raise CheckpointError(f"{path}: checkpoint files have the wrong structure")
    return state, optim
