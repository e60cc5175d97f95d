"""Curves of several runs on shared axes, for ``aekit compare``.

Plain data in (epochs and values per run, as :func:`aekit.viz.plots.loss_series` gives them for
one run), a matplotlib Figure out; nothing here opens a run.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .figures import plt  # imported there with the file-only backend selected

Series = tuple[list[int], dict[str, list[float]]]  # (epochs, {"train": [...], "val": [...]})


def overlaid_curves_figure(runs: dict[str, Series | None], *, title: str) -> Figure:
    """One quantity (a loss part) of several runs: one colour per run, training solid and
    validation dashed, by epoch.  Missing values (NaN, a diverged epoch) leave gaps.

    A run's colour is fixed by its place in ``runs``, so that it keeps its colour across the
    figures of one page; a run without this quantity is given as None and left out.
    """
    colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.6, 3.4))
    handles = []
    last_epoch = 1
    for i, (name, series) in enumerate(runs.items()):
        if series is None:
            continue
        epochs, values = series
        last_epoch = max([last_epoch, *epochs])
        colour = colours(i % colours.N)
        one_epoch = len(epochs) == 1  # a lone point draws no line: show it as a marker
        for split, style, face in (("train", "-", colour), ("val", "--", "none")):
            ys = values.get(split, [])
            if ys and any(not math.isnan(y) for y in ys):
                ax.plot(epochs, ys, style, color=colour, linewidth=1.4, marker="o" if one_epoch else None,
                        markersize=4, markerfacecolor=face)
        handles.append(Line2D([], [], color=colour, linewidth=2, label=name))
    handles += [Line2D([], [], color="0.3", linestyle="-", marker="o", markersize=4, label="training"),
                Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=4, markerfacecolor="none",
                       label="validation")]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if last_epoch == 1:  # matplotlib would spread one epoch's points over a range of fractions
        ax.set_xlim(0.5, 1.5)
        ax.set_xticks([1])
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


__all__ = ["Series", "overlaid_curves_figure"]
