"""Commands over many runs: ``aekit runs`` (a table of a folder's runs) and ``aekit compare`` (one HTML page)."""

from __future__ import annotations

import json
import shlex
import unicodedata
from pathlib import Path

import click

from . import main

NAME_WIDTH = 40  # longer names and datasets are cut, with an ellipsis; --json has them whole
TEXT_WIDTH = 24


@main.command(short_help="A table of the runs in a folder: model, data, epochs, test metrics, time, status.")
@click.argument("folder", type=click.Path(path_type=Path), default=None, required=False)
@click.option("--sort", "sort", default=None, metavar="[-]KEY",
              help="Sort by a column: name, model, dataset, task, epochs, elbo, psnr, ssim, bce, gain, time, status; "
                   "-KEY sorts largest first (--sort -psnr)  [default: name]")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON (every value whole).")
def runs(folder, sort, as_json):
    """List the runs in FOLDER (default: runs/) with their test metrics.

    Status: finished, training (a trainer holds the run now), interrupted (fewer epochs than
    asked for; `aekit train --resume RUN` continues it) or broken (a file cannot be read; the
    reason is printed below the table).  Metrics columns appear where a run has them: ELBO
    (nats per image, or per melody), PSNR (dB), SSIM, BCE per pixel, and for denoising and super-resolution
    the PSNR gained over the best classical baseline.
    """
    from ..app.runs import applicable_metrics, format_duration, list_runs

    if folder is None:
        folder = Path("runs")
        if not folder.is_dir():  # nothing trained here yet: an answer, not an error
            click.echo("[]" if as_json else "no runs/ folder here yet; `aekit train` writes its runs there")
            return
    rows = list_runs(folder, sort=sort)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no runs in {folder}; train one with `aekit train --out {folder / 'NAME'}`")
        return
    metrics = applicable_metrics(rows)
    head = ["name", "model", "dataset", "task", "epochs", *(m.label for m in metrics), "time", "status"]
    right = {"epochs", "time", *(m.label for m in metrics)}
    table = [[_cut(r["name"], NAME_WIDTH), _cut(r["model"], TEXT_WIDTH), _cut(r["dataset"], NAME_WIDTH),
              _cut(r["task"], TEXT_WIDTH), _epochs(r), *(_number(r[m.key], m.digits) for m in metrics),
              "-" if r["time"] is None else format_duration(r["time"], style="short"), r["status"]]
             for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(cells, widths, head)).rstrip()

    click.echo(line(head))
    for cells in table:
        click.echo(line(cells))
    for r in rows:
        if r["status"] == "broken":
            click.echo(f"broken: {_safe(r['name'])}: {_safe(r['reason'])}")
        elif r["status"] == "interrupted":
            click.echo(f"interrupted: {_safe(r['name'])}: {_safe(r['reason'])}; continue with: "
                       f"aekit train --resume {shlex.quote(_safe(r['path']))}")


@main.command(short_help="One HTML page comparing runs: curves overlaid, metrics side by side.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("compare.html"), show_default=True,
              help="HTML page to write.")
@click.option("--overwrite", "--force", "overwrite", is_flag=True,
              help="Replace the page if it exists (without it, an existing file is refused).")
def compare(run_dirs, out, overwrite):
    """Compare runs on one self-contained page: their loss curves overlaid (one figure per loss
    part), test metrics and last losses side by side with the best of each row marked, and the
    settings in which they differ.  Reads only the runs' JSON files: no model or data is loaded.
    """
    from ..app.compare import write_comparison

    path = write_comparison(run_dirs, out, overwrite=overwrite)
    click.echo(f"wrote {path}")


# -- cells ------------------------------------------------------------------------------------------

def _safe(text) -> str:
    """Text for a terminal: control characters (a folder named with escape codes) become '?'."""
    if text is None:
        return "-"
    return "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in str(text))


def _cut(text, width: int) -> str:
    text = _safe(text)
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _epochs(row) -> str:
    if row["epochs"] is None:
        return "-"
    return str(row["epochs"]) if row["status"] == "finished" else f"{row['epochs']}/{row['epochs_planned']}"


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

