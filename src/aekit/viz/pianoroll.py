"""Piano rolls: melodies drawn as pitch (up) against time (right).

The functions take rolls, (N, P, T) tensors with 2 where a note is struck, 1 where it is held
and 0 in silence (``aekit.eval.music.piano_roll`` makes them from melody classes), and return
matplotlib Figures.  Struck steps are darker than held ones, so a repeated note reads as two.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from .figures import plt  # imported there with the file-only backend selected

# silence, held, struck
ROLL_COLOURS = ListedColormap(["#ffffff", "#7fa7d9", "#1f4e99"])
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """MIDI pitch to a name: 60 -> C4."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _draw_roll(ax, roll: Tensor, low: int, steps_per_bar: int, *, labels: bool) -> None:
    arr = roll.detach().cpu().numpy().astype(np.int64)  # (P, T)
    p, t = arr.shape
    ax.imshow(arr, cmap=ROLL_COLOURS, vmin=0, vmax=2, origin="lower", aspect="auto", interpolation="nearest",
              extent=(-0.5, t - 0.5, low - 0.5, low + p - 0.5))
    for bar in range(steps_per_bar, t, steps_per_bar):  # bar lines
        ax.axvline(bar - 0.5, color="#999999", linewidth=0.6)
    cs = [pitch for pitch in range(low, low + p) if pitch % 12 == 0]
    for pitch in cs:  # a faint line at every C, to read octaves by
        ax.axhline(pitch - 0.5, color="#dddddd", linewidth=0.5, zorder=0)
    ax.set_yticks(cs)
    ax.set_yticklabels([pitch_name(c) for c in cs] if labels else [], fontsize=7)
    ax.set_xticks([])
    ax.tick_params(length=0)


def piano_roll_sheet(rolls: Tensor, low: int, *, titles: list[str] | None = None, cols: int = 4,
                     steps_per_bar: int = 16, title: str | None = None, cell: tuple[float, float] = (2.6, 1.5)) -> Figure:
    """Rolls (N, P, T) from pitch ``low`` up, in a grid of ``cols`` columns, each with its title."""
    n = rolls.shape[0]
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols + 0.4, cell[1] * rows + (0.5 if title else 0.2)),
                             squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= n:
            ax.set_axis_off()
            continue
        _draw_roll(ax, rolls[k], low, steps_per_bar, labels=k % cols == 0)
        if titles:
            ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def roll_pairs_figure(originals: Tensor, outputs: Tensor, low: int, *, steps_per_bar: int = 16,
                      title: str | None = None, names: tuple[str, str] = ("test melody", "reconstruction")) -> Figure:
    """Each original above its model output: two rows of rolls (N, P, T) sharing one pitch axis."""
    n = originals.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n + 0.6, 3.2 + (0.3 if title else 0)), squeeze=False)
    for k in range(n):
        for r, rolls in enumerate((originals, outputs)):
            _draw_roll(axes[r][k], rolls[k], low, steps_per_bar, labels=k == 0)
        axes[0][k].set_title(f"#{k}", fontsize=8)
    axes[0][0].set_ylabel(names[0], fontsize=8)
    axes[1][0].set_ylabel(names[1], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def roll_image(roll: Tensor, *, step_width: int = 2) -> Tensor:
    """One roll (P, T) as a small grey image (1, P, T * step_width) in [0, 1], highest pitch at the
    top and struck steps darkest, for pages that show pixels (the explorer)."""
    arr = roll.detach().cpu().float()
    shade = 1.0 - arr / 2.0 * 0.85  # silence white, held mid grey, struck near black
    return shade.flip(0).repeat_interleave(step_width, dim=1).unsqueeze(0)
