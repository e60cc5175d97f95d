"""A run folder's files: their names, and reading the JSON ones back.

Layout of a run folder::

    config.json            RunConfig: model name + config, data, training settings, versions
    model.safetensors      the latest weights (replaced atomically after every epoch)
    metrics.jsonl          one JSON object per epoch
    test_metrics.json      the test-split metrics printed at the end of training
    evaluations.json       what `aekit evaluate` measured later (likelihood, sample scores), by key
    reconstructions.png    test originals above their reconstructions
    report.html            the self-contained run report
    checkpoints/ckpt-E-S/  the resume point: model.safetensors, optimizers.pt, state.json

Only :mod:`aekit.train` writes these (and :mod:`aekit.app` the report and the evaluations); everything else reads
them through :class:`aekit.run.Run`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import CheckpointError
from ..registry import fill_absent_model_config

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.jsonl"
TEST_METRICS_NAME = "test_metrics.json"
EVALUATIONS_NAME = "evaluations.json"
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
    cfg = RunConfig.from_dict(read_json(path, "an aekit config"), source=str(path))
    cfg.model_config = fill_absent_model_config(cfg.model, cfg.model_config)  # as it was trained
    return cfg


# config.json and test_metrics.json are a few KB; anything far larger is not aekit's, and is
# refused before it is read into memory.
MAX_JSON_BYTES = 1 << 20


def read_json(path: Path, what: str, *, strict_text: bool = True) -> Any:
    """A run's JSON file, parsed; every way it can be unreadable is one CheckpointError naming it.

    ``strict_text`` also refuses lone surrogates in its strings (a config names files and
    models with them); metrics are cleaned instead (:func:`clean_record`)."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path}: {size:,} bytes is too large to be {what}")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
        if strict_text:  # JSON may spell lone surrogates ("\ud800"), which no file name or answer can hold
            json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeError as err:
        raise CheckpointError(f"{path}: not valid UTF-8 text ({err.reason})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply to be {what}") from None
    except ValueError as err:  # JSONDecodeError, and integers too long to convert
        raise CheckpointError(f"{path}: not valid JSON ({' '.join(str(err).split())[:160]})") from None
    return raw


# An epoch's record is a few hundred bytes; a longer line is not aekit's and is skipped unread.
MAX_METRICS_LINE = 64 * 1024
# {"train": {"recon": 1.0}}: an epoch's record nests one level; test metrics' baselines two
MAX_NESTING = 3


def clean_record(value: Any, depth: int = 0) -> Any:
    """A metrics value as aekit writes them: finite numbers (NaN and infinities become None,
    as a diverged run's losses), short strings, booleans, and objects of those nested at most
    :data:`MAX_NESTING` deep.  Anything else (lists, deeper objects) is dropped, so a hand-edited
    file can never put a value into a table or a JSON answer that aekit would not write itself."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _valid_text(value[:200])
    if isinstance(value, dict) and depth < MAX_NESTING:
        out = {}
        for key, item in value.items():
            cleaned = clean_record(item, depth + 1)
            if cleaned is not _DROP:
                out[_valid_text(str(key)[:100])] = cleaned
        return out
    return _DROP


_DROP = object()


def _valid_text(text: str) -> str:
    # JSON can spell lone surrogates ("\ud800"), which are not text: each becomes "?"
    return text.encode("utf-8", errors="replace").decode("utf-8")


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs recorded in ``metrics.jsonl``, oldest first; [] when there are none.

    A line cut short by a kill ends the history (everything before it is whole); lines that are
    not an epoch's record (not JSON objects, no whole-number ``epoch``, too long) are skipped;
    values are cleaned by :func:`clean_record`.  Bytes that are not UTF-8 are replaced.  Memory
    stays bounded whatever the file holds: it is read a line at a time, each line at most
    :data:`MAX_METRICS_LINE` bytes.
    """
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    rows = []
    with open(path, "rb") as f:
        while True:
            raw = f.readline(MAX_METRICS_LINE + 1)
            if not raw:
                break
            if len(raw) > MAX_METRICS_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of an overlong line unread
                    raw = f.readline(MAX_METRICS_LINE)
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if not raw.endswith(b"\n"):
                    break  # the last line, cut short by a kill
                continue
            except (ValueError, RecursionError):  # integers too long to convert; nesting too deep
                continue
            row = clean_record(row)
            if isinstance(row, dict) and isinstance(row.get("epoch"), int) and not isinstance(row["epoch"], bool):
                rows.append(row)
    return rows


def read_test_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """``test_metrics.json`` (metric -> value, plus "baselines" for task runs), or None if absent."""
    path = Path(run_dir) / TEST_METRICS_NAME
    if not path.is_file():
        return None
    metrics = read_json(path, "aekit's test metrics", strict_text=False)
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: expected a JSON object of metrics, got {type(metrics).__name__}")
    return clean_record(metrics)


def read_evaluations(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``evaluations.json``: {key: record} of the measurements `aekit evaluate` stored (empty if none).

    A key names what was measured and how ("nll test K=5000 N=10000"), so measuring the same
    thing again replaces its record and different measurements sit side by side."""
    path = Path(run_dir) / EVALUATIONS_NAME
    if not path.is_file():
        return {}
    records = read_json(path, "aekit's stored evaluations", strict_text=False)
    if not isinstance(records, dict) or not all(isinstance(v, dict) for v in records.values()):
        raise CheckpointError(f"{path}: expected a JSON object of records; delete it and run `aekit evaluate` again")
    return {str(key): clean_record(record) for key, record in records.items()}


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (complete or not: see the trainer's checks)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))
