"""Writing a run folder atomically: weights, and resumable checkpoints.

The trainer's side of the run folder (reading it is :mod:`aekit.run`)::

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

import io
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_text, atomic_write_with, fsync_dir
from ..run.layout import (
    CHECKPOINT_PREFIX,
    CHECKPOINTS_DIR,
    CONFIG_NAME,
    METRICS_NAME,
    RECONSTRUCTIONS_NAME,
    TEST_METRICS_NAME,
    WEIGHTS_NAME,
    list_checkpoints,
)

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2  # the newest, and one before it in case the newest is being replaced


# What a failed write raises: the OS's own error, or safetensors' wrapping of it ("I/O error:
# No space left on device").  Neither reaches the user as a traceback: see _cannot_write.
WRITE_ERRORS = (OSError, SafetensorError)


def _write_safetensors(model: torch.nn.Module, path: str | Path) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))


def _cannot_write(path: str | Path, err: BaseException) -> str:
    if isinstance(err, OSError):
        reason = err.strerror or str(err)
    else:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"cannot write {path} ({reason})"


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Write the model's weights as safetensors, atomically: ``path`` holds the old file or the new one."""
    path = Path(path)
    try:
        _write_safetensors(model, path)
    except WRITE_ERRORS as err:
        raise CheckpointError(f"{_cannot_write(path, err)}; the file there before, if any, is unchanged: "
                              "free disk space or choose a writable folder, then try again") from None
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # earlier writes of this file, killed midway
        stale.unlink(missing_ok=True)


# -- resumable checkpoints -----------------------------------------------------------------

def check_free_space(run_dir: str | Path, model: torch.nn.Module) -> None:
    """Refuse to start when the disk under ``run_dir`` cannot hold this model's checkpoints.

    At the fullest moment of a save the folder holds KEEP_CHECKPOINTS checkpoints plus the one
    being written (weights, and Adam's two moments per weight) and the run's weights plus their
    replacement.  Space the run folder already uses for these is counted as available.
    """


    run_dir = Path(run_dir)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    need = (KEEP_CHECKPOINTS + 1) * 3 * weights + 2 * weights
    have = sum(p.stat().st_size for p in run_dir.glob(f"{CHECKPOINTS_DIR}/ckpt-*/*") if p.is_file())
    if (run_dir / WEIGHTS_NAME).is_file():
        have += (run_dir / WEIGHTS_NAME).stat().st_size
    free = shutil.disk_usage(run_dir).free
    if free + have < need:
        raise ConfigError(
            f"{run_dir}: {free / 1e6:,.1f} MB free on its disk, but this model's checkpoints need about "
            f"{(need - have) / 1e6:,.1f} MB more; free some space or choose another --out"
        )


def _ckpt_name(epoch: int, step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:05d}-{step:09d}"


def write_checkpoint(run_dir: Path, model: torch.nn.Module, trainer_state: dict[str, Any],
                     optimizer_state: dict[str, Any]) -> Path:
    """Write a complete resume point, then rename it into place; prune older ones.

    A failed write (a full disk, say) raises CheckpointError and leaves the checkpoints that
    were there before untouched.
    """
    root = run_dir / CHECKPOINTS_DIR
    final = root / _ckpt_name(trainer_state["epoch"], trainer_state["step"])
    if final.is_dir() and _is_complete(final):
        # The same point again (Ctrl-C right after an epoch): its training state is the same, and
        # replacing the folder would leave a moment with no copy of it at all.
        return final
    tmp = None
    try:
        root.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0o700 would hide the checkpoint from other users
        _write_safetensors(model, tmp / WEIGHTS_NAME)
        buffer = io.BytesIO()  # serialised first, so that a failed write is the OS's error (errno), not torch's
        torch.save(optimizer_state, buffer)
        with open(tmp / "optimizers.pt", "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_text(tmp / "state.json", json.dumps(trainer_state, indent=2))
        if final.exists():  # an incomplete folder under the final name: nothing in it to keep
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, WRITE_ERRORS):
            good = list_checkpoints(run_dir)
            last = f"the last good one, {good[-1].name}, is untouched" if good else "no earlier checkpoint exists"
            raise CheckpointError(
                f"{_cannot_write(root / final.name, err)}; {last}: free disk space or fix the folder, "
                f"then continue with `aekit train --resume {run_dir}`"
            ) from None
        raise
    for old in list_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        # Out of the ckpt- names first (a rename is atomic), so that a kill while the folder is
        # being deleted never leaves half a checkpoint under a checkpoint's name.
        trash = root / f".old-{old.name}"
        try:
            os.rename(old, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
    remove_stale_temp_files(run_dir)
    return final


# The files of a run folder that only `aekit train` writes (report.html is not one of them:
# `aekit report` may be rewriting it at any moment).
TRAINER_FILES = (CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME, TEST_METRICS_NAME, RECONSTRUCTIONS_NAME)


def remove_stale_temp_files(run_dir: str | Path) -> list[str]:
    """Delete what a killed `aekit train` left half written or half deleted: temporary files beside
    TRAINER_FILES, and checkpoint folders being written (``.tmp-*``) or pruned (``.old-*``).

    Every write goes to a temporary name and is renamed into place when complete, so none of
    these is ever read; this only keeps a folder that survived many kills from filling up.  Call
    it from the run's one trainer (rank 0), when it is writing none of them.
    """
    run_dir = Path(run_dir)
    removed = []
    for name in TRAINER_FILES:
        for stale in run_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
            removed.append(stale.name)
    root = run_dir / CHECKPOINTS_DIR
    for stale in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(f"{CHECKPOINTS_DIR}/{stale.name}")
    return removed


def _is_complete(path: Path) -> bool:
    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return (path / WEIGHTS_NAME).is_file()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trainer state and optimiser state of a checkpoint folder (weights read separately).

    ``optimizers.pt`` is read with torch's tensor-only unpickler: a file that names any other
    Python object (which a plain ``pickle.load`` would call) is refused, and nothing in it runs.
    """
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        optim = torch.load(path / "optimizers.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: incomplete checkpoint ({Path(err.filename).name} missing)") from None
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it names {found.group(1)}, but" if found else "it holds more than"
        raise CheckpointError(
            f"{path / 'optimizers.pt'}: refused to unpickle: {what} aekit writes only tensors and plain values "
            "(it may carry code; nothing in it was run); delete this checkpoint folder"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch.load's errors for bad files have no common type
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {first})") from None
    if (not isinstance(state, dict) or not isinstance(optim, dict)
            or not isinstance(optim.get("optimizers"), dict) or not isinstance(optim.get("extra"), dict)
            or not all(isinstance(v, dict) for v in optim["optimizers"].values())):
        raise CheckpointError(f"{path}: checkpoint files have the wrong structure")
    for key in ("epoch", "step", "batch_in_epoch"):
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"{path}: state.json: {key} must be a whole number >= 0, got {value!r}")
    return state, optim


def check_optimizer_states(optimizers: dict[str, torch.optim.Optimizer], saved: dict[str, Any],
                           path: str | Path) -> None:
    """Refuse an optimiser state that was not written for these optimisers.

    ``Optimizer.load_state_dict`` checks group sizes only with a bare ValueError, and a moment
    buffer of the wrong shape surfaces much later as a shape error inside ``step()``; checking
    names, groups and every state tensor's shape here turns each into one line naming the file.
    """
    where = Path(path) / "optimizers.pt"
    if set(saved) != set(optimizers):
        raise CheckpointError(f"{where}: holds optimiser(s) {sorted(saved)}, this model trains {sorted(optimizers)}; "
                              "the checkpoint belongs to another model: delete it or resume the right run")
    for name, opt in optimizers.items():
        sd = saved[name]
        groups, states = sd.get("param_groups"), sd.get("state")
        if not isinstance(groups, list) or not isinstance(states, dict) or not all(
                isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
            raise CheckpointError(f"{where}: optimiser {name!r} has the wrong structure")
        sizes = [len(g["params"]) for g in groups]
        expected = [len(g["params"]) for g in opt.param_groups]
        if sizes != expected:
            raise CheckpointError(f"{where}: optimiser {name!r} has parameter groups of sizes {sizes}, "
                                  f"this model's are {expected}; the checkpoint belongs to another model")
        params = [p for g in opt.param_groups for p in g["params"]]
        ids = [i for g in groups for i in g["params"]]
        by_id = dict(zip(ids, params))
        for key, entry in states.items():
            if key not in by_id or not isinstance(entry, dict):
                raise CheckpointError(f"{where}: optimiser {name!r} holds state for unknown parameter {key!r}")
            for field, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != by_id[key].shape:
                    raise CheckpointError(
                        f"{where}: optimiser {name!r}: {field} of parameter {key} has shape {tuple(value.shape)}, "
                        f"the parameter has {tuple(by_id[key].shape)}; the checkpoint belongs to another model")
