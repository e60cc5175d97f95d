"""The figures of ``aekit plot``, ``aekit sample`` and the run report.

Each function takes tensors (images (N, C, H, W) in [0, 1], codes, errors) and returns a
matplotlib Figure; none of them loads a run or runs a model (that is :mod:`aekit.latent.views`).
Grids of images are drawn as one mosaic in one axes rather than one axes per image: a 10x10
manifold then renders in a fraction of a second instead of several.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .figures import plt  # imported there with the file-only backend selected

PAD = 2  # pixels of background between cells of a mosaic
BACKGROUND = 1.0  # white, like the page: the gaps read as grid lines between dark digits


def mosaic(rows: list[Tensor], *, pad: int = PAD) -> np.ndarray:
    """Rows of images (each (N_r, C, H, W), same C, H, W) as one picture, ragged rows padded.

    Returns (R*(H+pad)-pad, N*(W+pad)-pad) for grey images, with a trailing axis of 3 for RGB.
    """
    c, h, w = rows[0].shape[1:]
    n_cols = max(r.shape[0] for r in rows)
    out = np.full((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad, c), BACKGROUND, dtype=np.float32)
    for r, images in enumerate(rows):
        arr = images.detach().float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        for k in range(arr.shape[0]):
            out[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = arr[k]
    return out[..., 0] if c == 1 else out


def _show(ax, picture: np.ndarray) -> None:
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    for spine in ax.spines.values():
        spine.set_visible(False)


def _centres(count: int, size: int, pad: int = PAD) -> list[float]:
    return [k * (size + pad) + (size - 1) / 2 for k in range(count)]


def tile_figure(rows: list[Tensor], row_titles: list[str] | None = None, *, title: str | None = None,
                col_titles: list[str] | None = None, cell: float = 0.7) -> Figure:
    """A grid of images, one row per tensor, with optional titles for rows and columns."""
    picture = mosaic(rows)
    h, w = rows[0].shape[-2:]
    n_cols = max(r.shape[0] for r in rows)
    label_width = 0.09 * max((len(t) for t in row_titles), default=0) if row_titles else 0.0
    fig = plt.figure(figsize=(cell * n_cols + label_width + 0.3, cell * len(rows) + 0.5 + (0.3 if col_titles else 0)))
    ax = fig.add_subplot()
    _show(ax, picture)
    ax.set_yticks(_centres(len(rows), h) if row_titles else [])
    if row_titles:
        ax.set_yticklabels(row_titles, fontsize=9)
    ax.tick_params(length=0)
    ax.set_xticks(_centres(n_cols, w) if col_titles else [])
    if col_titles:
        ax.xaxis.tick_top()
        ax.set_xticklabels(col_titles, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10, pad=18 if col_titles else 6)
    fig.tight_layout(pad=0.3)
    return fig


def reconstructions_figure(rows: dict[str, Tensor], *, title: str) -> Figure:
    """Originals above what the model made of them (and its input, for denoising and SR)."""
    return tile_figure(list(rows.values()), list(rows), title=title)


def panels_figure(panels: dict[str, Tensor], *, title: str | None = None, cols: int | None = None,
                  cell: float = 0.45) -> Figure:
    """Side-by-side grids of images, each under its own caption.  ``cols`` images a row."""
    n = max(p.shape[0] for p in panels.values())
    cols = cols or math.ceil(math.sqrt(n))
    rows_per_panel = math.ceil(n / cols)
    width = max(cell * cols, 3.2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels) + 0.3 * (len(panels) - 1),
                                                      cell * rows_per_panel + 0.9 + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")  # constrained: leaves room for the suptitle
    for ax, (caption, images) in zip(axes[0], panels.items()):
        grid = [images[r * cols:(r + 1) * cols] for r in range(math.ceil(images.shape[0] / cols))]
        _show(ax, mosaic(grid))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("\n".join(textwrap.wrap(caption, width=max(int(width * 11), 24))), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def scatter_figure(points: Tensor, labels: Tensor | None = None, classes: list[str] | None = None, *,
                   title: str, xlabel: str = "", ylabel: str = "") -> Figure:
    """Codes in the plane, coloured by class with a legend when labels are given."""
    pts = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    size = 4 if len(pts) > 2000 else 9
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=0.6, linewidths=0, color="tab:blue")
    else:
        lab = labels.cpu().numpy()
        present = sorted(set(lab.tolist()))
        cmap = plt.get_cmap("tab10" if max(present, default=0) < 10 else "tab20")
        for k in present:
            mask = lab == k
            name = classes[k] if classes and k < len(classes) else str(k)
            ax.scatter(pts[mask, 0], pts[mask, 1], s=size, alpha=0.6, linewidths=0, color=cmap(k % cmap.N),
                       label=name)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2.5, frameon=False,
                  title="class", title_fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    fig.tight_layout()
    return fig


def _tick_labels(values: Tensor) -> list[str]:
    return [f"{v:.2g}" for v in values.tolist()]


def manifold_figure(images: Tensor, xs: Tensor, ys: Tensor, *, title: str, xlabel: str = "", ylabel: str = "",
                    cell: float = 0.55) -> Figure:
    """Decodes of a grid of latent points, laid out where the points are.

    ``images`` is (len(ys) * len(xs), C, H, W) row by row, the top row first (largest y).
    """
    nx, ny = len(xs), len(ys)
    h, w = images.shape[-2:]
    picture = mosaic([images[r * nx:(r + 1) * nx] for r in range(ny)])
    fig, ax = plt.subplots(figsize=(cell * nx + 1.0, cell * ny + 1.0))
    _show(ax, picture)
    every = 1 if max(nx, ny) <= 12 else math.ceil(max(nx, ny) / 10)
    ax.set_xticks(_centres(nx, w)[::every])
    ax.set_xticklabels(_tick_labels(xs)[::every], fontsize=7)
    ax.set_yticks(_centres(ny, h)[::every])
    ax.set_yticklabels(_tick_labels(ys)[::every], fontsize=7)
    ax.tick_params(length=2)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    fig.tight_layout()
    return fig


def interpolation_figure(rows: dict[str, Tensor], *, title: str) -> Figure:
    steps = max(r.shape[0] for r in rows.values())
    cols = [f"{t:.2f}".rstrip("0").rstrip(".") if steps <= 12 else "" for t in np.linspace(0, 1, steps)]
    return tile_figure(list(rows.values()), list(rows), title=title, col_titles=cols if steps <= 12 else None)


def latent_noise_figure(rows: Tensor, levels: tuple[float, ...], scale: float, *, title: str) -> Figure:
    """Rows (L, N, C, H, W): row l decodes the codes plus noise of std levels[l] * scale."""
    titles = [f"\u03c3 = {level:g}\u00b7s" for level in levels]
    return tile_figure(list(rows), titles, title=f"{title}\n(s = {scale:.3g}, the codes' std per axis)")


def label_sweep_figure(originals: Tensor, sweep: Tensor, classes: list[str], *, title: str) -> Figure:
    """Each row: an input image, then its code decoded under every label."""
    rows = [torch.cat([originals[i:i + 1], sweep[i]]) for i in range(originals.shape[0])]
    names = [classes[k] if k < len(classes) else str(k) for k in range(sweep.shape[1])]
    return tile_figure(rows, None, title=title, col_titles=["input", *names])


def loss_series(history: list[dict]) -> tuple[list[int], dict[str, dict[str, list[float]]]]:
    """Epochs and {part: {"train": [...], "val": [...]}} from metrics.jsonl rows."""
    def losses(row: dict, split: str) -> dict:
        value = row.get(split)
        return value if isinstance(value, dict) else {}

    def number(value) -> float:  # a missing or unreadable value (null for NaN) leaves a gap
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan

    epochs = [int(r["epoch"]) for r in history]
    names = dict.fromkeys(name for r in history for split in ("train", "val") for name in losses(r, split))
    parts = {name: {split: [number(losses(r, split).get(name)) for r in history] for split in ("train", "val")}
             for name in names}
    if "total" in parts and len(parts) == 2:  # one part: its total is the same curve
        del parts["total"]
    return epochs, parts


def curves_figure(epochs: list[int], parts: dict[str, dict[str, list[float]]], *, title: str) -> Figure:
    """One panel per loss part: training (solid) and validation (dashed) by epoch."""
    n = max(len(parts), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 0.4, 3.0), squeeze=False)
    for ax, (name, series) in zip(axes[0], parts.items()):
        ax.plot(epochs, series["train"], "-o", color="tab:blue", markersize=3, label="train")
        ax.plot(epochs, series["val"], "--o", color="tab:orange", markersize=3, label="validation")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
    if not parts:
        axes[0][0].text(0.5, 0.5, "no epochs recorded", ha="center", va="center")
        axes[0][0].set_axis_off()
    else:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ood_figure(errors_in: Tensor, errors_out: Tensor, *, name_in: str, name_out: str, auc: float,
               title: str) -> Figure:
    """Histograms of per-image reconstruction error on two datasets, on shared bins."""
    a = errors_in.detach().double().cpu().numpy()
    b = errors_out.detach().double().cpu().numpy()
    both = np.concatenate([a, b])
    # Bins up to the 99.5th percentile: a few huge errors would otherwise squash both shapes.
    top = float(np.quantile(both, 0.995)) if len(both) > 1 else float(both.max(initial=1.0))
    bins = np.linspace(float(both.min(initial=0.0)), max(top, float(both.min(initial=0.0)) + 1e-9), 50)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.hist(np.clip(a, None, top), bins=bins, alpha=0.55, density=True, color="tab:blue",
            label=f"{name_in} (in distribution, n={len(a)})")
    ax.hist(np.clip(b, None, top), bins=bins, alpha=0.55, density=True, color="tab:red",
            label=f"{name_out} (out of distribution, n={len(b)})")
    ax.set_xlabel("squared error per image (clipped at the 99.5th percentile)", fontsize=9)
    ax.set_ylabel("density", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}\nROC-AUC of reconstruction error as an OOD score: {auc:.4f}", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = [
    "curves_figure",
    "interpolation_figure",
    "label_sweep_figure",
    "latent_noise_figure",
    "loss_series",
    "manifold_figure",
    "mosaic",
    "ood_figure",
    "panels_figure",
    "reconstructions_figure",
    "scatter_figure",
    "tile_figure",
]
