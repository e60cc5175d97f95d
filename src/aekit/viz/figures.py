"""Small figure builders shared by the CLI, the report and the notebook."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..fileio import atomic_write_bytes


def to_display(img: torch.Tensor):
    """(C, H, W) in [0, 1] -> an array imshow understands, plus the colour map to use."""
    img = img.detach().float().clamp(0, 1).cpu()
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


def image_grid(rows: list[torch.Tensor], row_titles: list[str] | None = None, *, title: str | None = None,
               cell: float = 0.9) -> Figure:
    """A grid with one row per tensor (N, C, H, W); every row shows the same number of images."""
    n_cols = max(r.shape[0] for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(cell * n_cols + (1.2 if row_titles else 0), cell * len(rows) + 0.4),
                             squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < images.shape[0]:
                arr, cmap = to_display(images[c])
                ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        if row_titles:
            axes[r][0].set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG atomically: a reader never sees half an image."""
    path = Path(path)
    atomic_write_bytes(path, figure_png(fig, dpi))
    return path
