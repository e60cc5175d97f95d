"""A run folder's files: their names, and reading the JSON ones back.

Layout of a run folder::

    config.json            RunConfig: model name + config, data, training settings, versions
    model.safetensors      the latest weights (replaced atomically after every epoch)
    metrics.jsonl          one JSON object per epoch
    test_metrics.json      the test-split metrics printed at the end of training
    reconstructions.png    test originals above their reconstructions
    report.html            the self-contained run report
    checkpoints/ckpt-E-S/  the resume point: model.safetensors, optimizers.pt, state.json

Only :mod:`aekit.train` writes these (and :mod:`aekit.app` the report); everything else reads
them through :class:`aekit.run.Run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.jsonl"
TEST_METRICS_NAME = "test_metrics.json"
RECONSTRUCTIONS_NAME = "reconstructions.png"
REPORT_NAME = "report.html"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "ckpt-"


def read_config(run_dir: str | Path) -> RunConfig:
    """The run's ``config.json``, checked; a missing folder or file is named with the fix."""
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
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be an aekit config") from None
    return RunConfig.from_dict(raw, source=str(path))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs recorded in ``metrics.jsonl``, oldest first; [] when there are none.

    A line cut short by a kill ends the history (everything before it is whole); lines that are
    not an epoch's record are skipped.
    """
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        except RecursionError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def read_test_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """``test_metrics.json`` (metric -> value, plus "baselines" for task runs), or None if absent."""
    path = Path(run_dir) / TEST_METRICS_NAME
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be aekit's metrics") from None
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    return metrics


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (complete or not: see the trainer's checks)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))
