"""``aekit compare RUN RUN ...``: several runs on one self-contained HTML page.

The page holds the runs' table (:mod:`aekit.app.runs`), their test and final losses side by
side with the best value of each row marked, the settings in which they differ, and one figure
per loss part with every run's training and validation curves overlaid
(:func:`aekit.viz.curves.overlaid_curves_figure`).  Like the run report (:mod:`aekit.app.report`,
whose style it shares) everything is inlined: figures as base64 PNG, the CSS in the page; it
fetches nothing.  It reads only config.json, metrics.jsonl and test_metrics.json: no model is
loaded and no data, so comparing many runs takes seconds.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import to_plain
from ..errors import AekitError, ConfigError
from ..fileio import atomic_write_text, check_outputs
from ..run import Run
from . import runs as run_table

DPI = 100
# Which way is better, for marking each row's best; rows in neither set are not marked (a KL,
# an image count).  Training losses are not marked: lower is not better when it means overfitting.
HIGHER_IS_BETTER = {"elbo", "psnr_db", "ssim", "gain"}
LOWER_IS_BETTER = {"bce_per_pixel", "bce_per_image", "mse_per_pixel", "sse_per_image", "elbo_recon", "nll",
                   "nll_negative_elbo", "val total", "val recon", "time"}
NOT_COMPARED = {"n", "nll_samples", "nll_images"}  # the same for every run, or a setting rather than a result

EXTRA_CSS = """
.scroll { overflow-x: auto; }
td.best { font-weight: 700; background: #e7f3ea; }
td.status-broken, td.status-interrupted { color: #a33; }
"""


@dataclass
class _Compared:
    label: str  # unique on the page
    run: Run
    row: dict[str, Any]  # aekit.app.runs.run_row
    history: list[dict]
    metrics: dict[str, Any]
    note: str | None  # why its test metrics are missing, when they are unreadable


def write_comparison(paths: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the page for the runs in ``paths`` to ``out`` atomically; an existing ``out`` is
    refused unless ``overwrite``, before any run is read."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"-o {out}: the comparison is an HTML page; end the name in .html")
    if not out.parent.is_dir():
        raise ConfigError(f"-o {out}: folder {out.parent} does not exist; create it first")
    check_outputs([(out, "-o")], overwrite=overwrite)
    atomic_write_text(out, render_comparison(paths), overwrite=overwrite)
    return out


def render_comparison(paths: Sequence[str | Path]) -> str:
    """The page as a string (see :func:`write_comparison`)."""
    if not paths:
        raise ConfigError("name at least one run folder to compare")
    compared = _load(paths)
    sections = [
        ("runs", "Runs", _runs_table(compared)),
        ("metrics", "Metrics side by side", _metrics_table(compared)),
        ("settings", "Settings that differ", _settings_table(compared)),
        ("curves", "Loss curves", _curves(compared)),
    ]
    links = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>' for sid, title, content in sections)
    names = ", ".join(c.label for c in compared)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    from .report import CSS

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>aekit compare: {_e(names)}</title><style>{CSS}{EXTRA_CSS}</style></head>\n<body><main>"
        f"<header><h1>Comparing {len(compared)} run{'s' if len(compared) != 1 else ''}</h1>"
        f"<p>{_e(names)}</p></header><nav>{links}</nav>{body}"
        f"<footer>Written by aekit {_e(__version__)} on {stamp}. "
        "Self-contained: every image is inlined, nothing is fetched.</footer>"
        "</main></body></html>\n"
    )


def _load(paths: Sequence[str | Path]) -> list[_Compared]:
    compared = []
    for path in paths:
        path = Path(path)
        try:
            run = Run.open(path)
        except AekitError as err:
            raise type(err)(f"{err}; fix the run or leave it out of the comparison") from None
        try:
            metrics, note = run.test_metrics() or {}, None
        except AekitError as err:
            metrics, note = {}, str(err)
        # run.path: the folder itself, also for a model named by its source (pretrained:NAME)
        compared.append(_Compared("", run, run_table.run_row(run.path), run.history(), metrics, note))
    for c, label in zip(compared, _labels([c.run.path for c in compared]), strict=True):
        c.label = label
    return compared


def _labels(paths: list[Path]) -> list[str]:
    """Short unique names: the folder's name, with its parent's where two share it, numbered if still equal."""
    names = [p.resolve().name or str(p) for p in paths]
    names = [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]
    seen: dict[str, int] = {}
    labels = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        labels.append(n if names.count(n) == 1 else f"{n} #{seen[n]}")
    return labels


# -- the tables -------------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else _e(value)
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return _e(value)
        if abs(value) >= 1e5 or (value != 0 and abs(value) < 10 ** -digits):
            return f"{value:.4g}"
        return f"{value:.{digits}f}"
    return _e(value)


def _table(head: list[str], rows: list[str]) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<div class="scroll"><table><tr>{cells}</tr>{"".join(rows)}</table></div>'


def _runs_table(compared: list[_Compared]) -> str:
    rows = []
    for c in compared:
        r = c.row
        epochs = "" if r["epochs"] is None else f"{r['epochs']} of {r['epochs_planned']}"
        status = r["status"] + (f": {r['reason']}" if r["reason"] and r["status"] != "finished" else "")
        duration = "" if r["time"] is None else run_table.format_duration(r["time"], style="long")
        rows.append(f"<tr><td>{_e(c.label)}</td><td>{_e(r['model'])}</td><td>{_e(r['dataset'])}</td>"
                    f"<td>{_e(r['task'])}</td><td class=\"num\">{_e(epochs)}</td>"
                    f"<td class=\"num\">{_e(duration)}</td>"
                    f"<td class=\"status-{_e(r['status'])}\">{_e(status)}</td></tr>")
    notes = "".join(f'<p class="note">{_e(c.label)}: no test metrics shown: {_e(c.note)}</p>'
                    for c in compared if c.note)
    return _table(["run", "model", "dataset", "task", "epochs", "training time", "status"], rows) + notes


def _metric_rows(compared: list[_Compared]) -> list[tuple[str, str, list[Any]]]:
    """(key, label, one value per run) for every test metric, the gain over the baselines, the
    last epoch's losses, and the training time."""
    from ..eval.evaluate import METRIC_LABELS
    from .evaluation import per_item

    keys = list(dict.fromkeys(k for c in compared for k, v in c.metrics.items()
                              if run_table.is_number(v) and k not in NOT_COMPARED))
    keys = [k for k in METRIC_LABELS if k in keys] + [k for k in keys if k not in METRIC_LABELS]
    rows = [(k, per_item(METRIC_LABELS.get(k, k), *_per(compared)).strip(), [c.metrics.get(k) for c in compared])
            for k in keys]
    if any(c.row["gain"] is not None for c in compared):
        rows.append(("gain", "PSNR over the best baseline (dB)", [c.row["gain"] for c in compared]))
    for split, name in (("val", "validation"), ("train", "training")):
        last = [c.history[-1].get(split, {}) if c.history else {} for c in compared]
        parts = list(dict.fromkeys(p for losses in last if isinstance(losses, dict) for p in losses))
        rows += [(f"{split} {p}", f"{name} {p} (last epoch)", [losses.get(p) if isinstance(losses, dict) else None
                                                                for losses in last]) for p in parts]
    rows.append(("time", "training time (s)", [c.row["time"] for c in compared]))
    return rows


def _best(key: str, values: list[Any]) -> float | None:
    numbers = [v for v in values if run_table.is_number(v) and math.isfinite(v)]
    if len(numbers) < 2 or len(set(numbers)) < 2:  # nothing to choose between
        return None
    if key in HIGHER_IS_BETTER:
        return max(numbers)
    if key in LOWER_IS_BETTER:
        return min(numbers)
    return None


def _metrics_table(compared: list[_Compared]) -> str:
    rows = []
    for key, label, values in _metric_rows(compared):
        best = _best(key, values)
        cells = []
        for v in values:
            marked = best is not None and v == best
            attributes = ' class="num best" title="best"' if marked else ' class="num"'
            cells.append(f"<td{attributes}>{_number(v)}</td>")
        rows.append(f"<tr><td>{_e(label)}</td>{''.join(cells)}</tr>")
    note = ('<p class="note">Test metrics from each run\'s test_metrics.json, on its own dataset\'s test split; '
            "the best of each row in bold (higher is better for the ELBO, PSNR, SSIM and the gain over the "
            "baselines; lower for losses and errors and training time; rows such as the KL are not marked).</p>")
    return _table(["", *[c.label for c in compared]], rows) + note


def _flat_settings(run: Run) -> dict[str, Any]:
    cfg = to_plain(run.config)
    flat = {"model": cfg["model"]}
    flat.update({f"model.{k}": v for k, v in cfg["model_config"].items()})
    for section in ("data", "train"):
        flat.update({f"{section}.{k}": v for k, v in cfg[section].items()})
    flat["aekit version"] = cfg.get("aekit_version")
    return flat


def _settings_table(compared: list[_Compared]) -> str:
    settings = [_flat_settings(c.run) for c in compared]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    differ = [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]
    if len(compared) < 2 or not differ:
        return '<p class="note">The runs share every setting.</p>' if len(compared) > 1 else \
            '<p class="note">One run: nothing to compare its settings with.</p>'
    rows = []
    for k in differ:
        cells = "".join(f"<td>{_setting(s.get(k, ''))}</td>" for s in settings)
        rows.append(f"<tr><td>{_e(k)}</td>{cells}</tr>")
    return _table(["", *[c.label for c in compared]], rows)


def _setting(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return _e(", ".join(str(v) for v in value))
    return _number(value, 6) if isinstance(value, float) else _e(value)


# -- the curves -------------------------------------------------------------------------------------

def _curves(compared: list[_Compared]) -> str:
    from ..viz.curves import overlaid_curves_figure
    from ..viz.figures import figure_png

    series = {c.label: _loss_series(c.history) for c in compared}
    if not any(c.history for c in compared):
        return '<p class="note">No run has finished an epoch: there are no curves yet.</p>'
    parts = list(dict.fromkeys(p for _, by_part in series.values() for p in by_part))
    parts.sort(key=lambda p: p != "total")  # the objective first: every run has one
    figures = []
    for part in parts:
        runs = {label: (epochs, by_part[part]) if part in by_part else None
                for label, (epochs, by_part) in series.items()}
        png = figure_png(overlaid_curves_figure(runs, title=f"{part} per {_per(compared)[0]}"), dpi=DPI)
        data = base64.b64encode(png).decode("ascii")
        figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(part)} curves">'
                       f"<figcaption>{_e(part)}: training (solid, the mean over each epoch) and validation "
                       "(dashed, at the end of each epoch), one colour per run.</figcaption></figure>")
    missing = [c.label for c in compared if not c.history]
    note = (f'<p class="note">No epochs recorded yet for: {_e(", ".join(missing))}.</p>' if missing else "")
    return "".join(figures) + note


def _per(compared: list[_Compared]) -> tuple[str, str]:
    """What the runs' figures are per, in words: ("image", "images"), ("melody", "melodies"), or
    for runs of both kinds ("image or melody", "images or melodies")."""
    tasks = {c.run.task.data_kind: c.run.task for c in compared}
    return " or ".join(tasks), " or ".join(t.data_plural for t in tasks.values())


def _loss_series(history: list[dict]):
    """:func:`aekit.viz.plots.loss_series`, keeping "total" for a one-part loss (where it equals
    the part, and the single-run figure leaves it out): here it lines runs of any model up."""
    from ..viz.plots import loss_series

    epochs, parts = loss_series(history)
    if "total" not in parts and len(parts) == 1:
        parts["total"] = next(iter(parts.values()))
    return epochs, parts
