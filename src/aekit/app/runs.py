"""The runs in a folder as a table: ``aekit runs``, the explorer's run picker and ``aekit compare``.

Plain data: one dict of plain values per run (:func:`run_row`), built only through the run
layer's readers (:class:`aekit.run.Run`, which checks config.json; ``read_metrics`` and
``read_test_metrics``, which bound and clean what they read; the weights' header check).  A
folder that cannot be read is a row too, with status "broken" and a one-line reason, never an
exception: one bad folder must not hide the others.

A row's keys (None where a value does not apply or is not known)::

    name, path, model, dataset, task
    epochs          epochs finished (metrics.jsonl); epochs_planned: what the config asks for
    elbo, psnr, ssim, bce   test metrics (test_metrics.json): ELBO in nats per image (per melody
                    for melody runs), PSNR in dB, SSIM, BCE per pixel
    gain            test PSNR minus the best baseline's on the same images (denoise, super-resolution)
    time            training seconds, summed over the finished epochs
    status          finished | training | interrupted | broken
    reason          why a run is broken or unfinished, one line (None when finished)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AekitError, ConfigError
from ..run import CHECKPOINTS_DIR, CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """A test metric shown as a column: its key in a row, in test_metrics.json, and which way is better."""

    key: str
    source: str
    label: str
    higher_is_better: bool
    digits: int


METRICS = (
    Metric("elbo", "elbo", "ELBO", True, 2),
    Metric("psnr", "psnr_db", "PSNR", True, 2),
    Metric("ssim", "ssim", "SSIM", True, 4),
    Metric("bce", "bce_per_pixel", "BCE/px", False, 4),
)
GAIN = Metric("gain", "", "vs baseline", True, 2)  # dB over the best classical baseline
SORT_KEYS = ("name", "model", "dataset", "task", "epochs", *(m.key for m in METRICS), GAIN.key, "time", "status")
STATUSES = ("finished", "training", "interrupted", "broken")
MAX_REASON = 200
# Names that mark a folder as a run (or what is left of one), so that other folders beside the
# runs (plots, exports) are not listed as broken runs.
RUN_MARKERS = (CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, CHECKPOINTS_DIR)


def find_run_folders(folder: str | Path) -> list[Path]:
    """``folder`` itself if it is a run folder, else the run folders directly inside it, by name."""
    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"{folder}: no such folder; pass the folder that holds your runs "
                          "(`aekit train` writes them to runs/)")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; pass a run folder or the folder that holds runs")
    if (folder / CONFIG_NAME).is_file():
        return [folder]
    found = []
    for child in sorted(folder.iterdir()):
        try:
            if child.name.startswith(".") or not child.is_dir():
                continue
            if any(os.path.lexists(child / marker) for marker in RUN_MARKERS):
                found.append(child)
        except OSError:  # a folder that cannot even be looked into: shown as broken, not skipped
            found.append(child)
    return found


def list_runs(folder: str | Path = "runs", *, sort: str | None = None) -> list[dict[str, Any]]:
    """One row per run in ``folder`` (see the module's docstring), sorted by ``sort`` (:func:`sort_rows`)."""
    key = check_sort_key(sort)
    return sort_rows([run_row(path) for path in find_run_folders(folder)], key)


def run_row(path: str | Path) -> dict[str, Any]:
    """One run folder as a row; a folder that cannot be read is a row with status "broken"."""
    path = Path(path)
    row: dict[str, Any] = {"name": path.name or str(path), "path": str(path), "model": None, "dataset": None,
                           "task": None, "epochs": None, "epochs_planned": None,
                           **{m.key: None for m in METRICS}, GAIN.key: None, "time": None,
                           "status": "broken", "reason": None}
    # Absolute, so that a folder named like a model source ("pretrained:NAME") is read as a folder.
    folder = path.absolute()
    try:
        _fill_row(row, folder)
        return row
    except (AekitError, OSError, ValueError) as err:
        reason = _short(err, folder)
    except Exception as err:  # last resort: one unreadable run must not stop the listing
        log.exception("%s: unexpected error while reading the run", path)
        reason = f"cannot be read (internal error: {type(err).__name__})"
    # What identifies the run stays; its results do not count (they may not be this model's).
    row.update({m.key: None for m in (*METRICS, GAIN)}, status="broken", reason=reason)
    return row


def _fill_row(row: dict[str, Any], path: Path) -> None:
    run = Run.open(path)
    cfg = run.config
    row.update(model=cfg.model, dataset=cfg.data.dataset, task=cfg.data.task, epochs_planned=cfg.train.epochs)
    history = run.history()
    row["epochs"] = max((r["epoch"] for r in history), default=0)
    seconds = [r["seconds"] for r in history if is_number(r.get("seconds"))]
    row["time"] = round(sum(seconds), 3) if seconds else None
    metrics = run.test_metrics() or {}
    for m in METRICS:
        value = metrics.get(m.source)
        row[m.key] = value if is_number(value) else None
    row[GAIN.key] = _baseline_gain(metrics)
    if row["epochs"] or run.weights_path().exists():
        run.check()  # config.json against the weights' header: the explorer and `aekit.load` need both
    if _being_trained(path):
        row["status"], row["reason"] = "training", "being trained now"
    elif row["epochs"] >= cfg.train.epochs:
        row["status"] = "finished"
    else:
        row["status"] = "interrupted"
        row["reason"] = f"{row['epochs']} of {cfg.train.epochs} epochs done"


def _baseline_gain(metrics: dict[str, Any]) -> float | None:
    psnr, baselines = metrics.get("psnr_db"), metrics.get("baselines")
    if not is_number(psnr) or not isinstance(baselines, dict):
        return None
    theirs = [b.get("psnr") for b in baselines.values() if isinstance(b, dict) and is_number(b.get("psnr"))]
    return psnr - max(theirs) if theirs else None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(err: BaseException, path: Path) -> str:
    """An error as one short line, its file named relative to the run folder (the row names the run)."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = text.replace(f"{path}{os.sep}", "").replace(str(path), "the folder")
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def _being_trained(path: Path) -> bool:
    """Whether a trainer holds the run's lock (:mod:`aekit.run.lock`), asked without touching it.

    Linux lists every flock in /proc/locks; taking the lock, even shared and for an instant,
    could make a trainer starting at that moment refuse the run.  Elsewhere: False.
    """
    from ..run.lock import LOCK_NAME

    try:
        st = os.stat(path / LOCK_NAME)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            table = fh.read(1 << 20)
    except OSError:
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    # "1: FLOCK  ADVISORY  WRITE 22737 fe:00:5308432 0 EOF"; waiting requests are marked "->"
    return any(len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted
               for fields in (line.split() for line in table.splitlines() if "->" not in line))


# -- cells -------------------------------------------------------------------------------------------

# A duration's three ranges in each style: seconds (under a minute), minutes and seconds (under an
# hour), hours and minutes.  "long" reads well on a page, "short" keeps a terminal table narrow.
DURATION_FORMATS = {
    "long": ("{:.1f} s", "{} min {:02d} s", "{} h {:02d} min"),   # 42.0 s, 2 min 05 s, 1 h 02 min
    "short": ("{:.1f}s", "{}m{:02d}s", "{}h{:02d}m"),              # 42.0s, 2m05s, 1h02m
}


def format_duration(seconds: float, *, style: str = "long") -> str:
    """``seconds`` as text in ``style`` ("long" or "short", see :data:`DURATION_FORMATS`).

    Under a minute to a tenth of a second; from a minute on, rounded to the second, then shown
    as minutes and seconds or, from an hour on, as hours and (whole) minutes.  A missing value
    (None) is the caller's to show: a page leaves the cell empty, a terminal table prints "-".
    """
    try:
        under_a_minute, under_an_hour, hours = DURATION_FORMATS[style]
    except KeyError:
        raise ValueError(f"style {style!r}: expected one of {', '.join(DURATION_FORMATS)}") from None
    if seconds < 60:
        return under_a_minute.format(seconds)
    minutes, secs = divmod(round(seconds), 60)
    return under_an_hour.format(minutes, secs) if minutes < 60 else hours.format(minutes // 60, minutes % 60)


# -- sorting -----------------------------------------------------------------------------------------

def check_sort_key(sort: str | None) -> str | None:
    """``sort`` if it names a column (``psnr``, or ``-psnr`` for largest first), else one ConfigError."""
    if sort is None or sort == "":
        return None
    if sort.removeprefix("-") not in SORT_KEYS:
        raise ConfigError(f"--sort {sort!r}: no such column; sort by one of {', '.join(SORT_KEYS)} "
                          "(a leading - sorts largest first, e.g. --sort -psnr)")
    return sort


def sort_rows(rows: list[dict[str, Any]], sort: str | None) -> list[dict[str, Any]]:
    """Rows by name, or by column ``sort`` (smallest first; ``-key``: largest first), ties by
    name; rows without a value (a broken run's metrics, a metric that does not apply) always last."""
    rows = sorted(rows, key=lambda r: r["name"])
    key = check_sort_key(sort)
    if key is None:
        return rows
    name, descending = key.removeprefix("-"), key.startswith("-")

    def value(row: dict[str, Any]):
        v = row[name]
        if name == "status":
            return STATUSES.index(v)
        return v.casefold() if isinstance(v, str) else v

    known = [r for r in rows if r.get(name) is not None]
    return sorted(known, key=value, reverse=descending) + [r for r in rows if r.get(name) is None]


def applicable_metrics(rows: list[dict[str, Any]]) -> list[Metric]:
    """The metric columns at least one row has a value for, in table order."""
    return [m for m in (*METRICS, GAIN) if any(r.get(m.key) is not None for r in rows)]
