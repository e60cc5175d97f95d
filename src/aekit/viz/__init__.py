"""Figures from tensors.  Every function takes tensors and returns a matplotlib Figure."""

from .figures import image_grid, save_figure

__all__ = ["image_grid", "save_figure"]
