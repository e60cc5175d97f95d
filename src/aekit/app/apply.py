"""Apply a trained denoise or super-resolution run to the user's own image files.

A model only takes images of its training size (28x28 for MNIST), so a file of any size is
cut into tiles of that size, each tile goes through the model, and the outputs are stitched
back.  Tiles overlap, and every output pixel is a weighted mean of the tiles that cover it,
with a tent-shaped weight that is largest at a tile's centre: a tile's border pixels see the
least context, so they count least, and no seam shows where two tiles meet.  Images smaller
than one tile are padded (mirrored at the border) and the padding is cropped off the result.

For super-resolution the tiles are cut from the small image and their enlarged outputs
stitched at ``scale`` times the positions.  The file's colours are converted to the model's
channels (RGB to grey by ITU-R 601-2 luma, grey to RGB by repetition) on reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import load_image, save_image
from ..errors import ConfigError
from ..run import Run

log = logging.getLogger(__name__)

SHEET_NAME = "sheet.png"
TILE_BATCH = 256  # tiles per forward pass: small tiles, so memory stays low
SHEET_MIN_HEIGHT = 112  # tiny images are enlarged (pixel repetition) to at least this on the sheet
SHEET_MAX_WIDTH = 1600  # wider sheet rows are shrunk to this width
SHEET_GAP = 4  # white pixels between images on the sheet

@dataclass
class ApplyResult:
    outputs: list[Path]  # one per input, same file name, in the output folder
    sheet: Path  # before/after sheet of every input


def load_run_for(command: str, run_dir: str | Path, *, device: str = "cpu"):
    """The model of the run in ``run_dir`` if it was trained for ``command`` ("denoise" or "upscale")."""
    from ..tasks import task_for_command

    needed = task_for_command(command)
    run = Run.open(run_dir, device=device)
    if not isinstance(run.task, needed):
        raise ConfigError(f"{run_dir} is a {run.task.describe()} run (model {run.config.model}); `aekit {command}` "
                          f"needs a {needed.name} run: train one with `{needed.train_hint}` and pass its folder")
    return run.model


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering [0, size), the last flush with the end.

    Consecutive tiles overlap by at least ``overlap`` pixels (more where the last tile is
    pulled back to fit).  ``size`` must be at least ``tile``.
    """
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


def tent(n: int, *, device=None) -> Tensor:
    """Weights 1, 2, ... up to the middle and back down, over n pixels, scaled to peak at 1.  (n,)"""
    i = torch.arange(n, dtype=torch.float32, device=device)
    w = torch.minimum(i + 1, n - i)
    return w / w.max()


@torch.inference_mode()
def apply_tiled(model, image: Tensor, *, overlap: int | None = None, batch_size: int = TILE_BATCH) -> Tensor:
    """Run ``model`` over ``image`` (C, H, W) in tiles of its input size.  (C, H*s, W*s)

    ``s`` is the model's enlargement (1 for a denoiser).  ``overlap`` in input pixels,
    default a quarter of the tile.
    """
    c, th, tw = model.in_shape
    s = model.out_shape[1] // th  # 1 for a denoiser, the enlargement for super-resolution
    if image.dim() != 3 or image.shape[0] != c:
        raise ConfigError(f"expected an image (C, H, W) with C = {c} (the model's channels), got {tuple(image.shape)}")
    overlap = max(th, tw) // 4 if overlap is None else overlap
    if overlap < 0 or overlap >= min(th, tw):
        raise ConfigError(f"--overlap must be between 0 and {min(th, tw) - 1} pixels (below the tile size), got {overlap}")
    device = next(model.parameters()).device
    h, w = image.shape[-2:]
    x = image[None].to(device)
    ph, pw = max(0, th - h), max(0, tw - w)
    if ph or pw:
        # Mirroring needs the pad to be shorter than the side; a tiny image repeats its border.
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    hp, wp = x.shape[-2:]
    ys, xs = tile_starts(hp, th, overlap), tile_starts(wp, tw, overlap)
    corners = [(y, x0) for y in ys for x0 in xs]
    weight = (tent(th * s, device=device)[:, None] * tent(tw * s, device=device)[None, :])  # (th*s, tw*s)
    out = torch.zeros((c, hp * s, wp * s), device=device)
    total = torch.zeros((hp * s, wp * s), device=device)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        tiles = torch.cat([x[:, :, y:y + th, x0:x0 + tw] for y, x0 in chunk])  # (n, C, th, tw)
        outputs = model.reconstruct(tiles)  # (n, C, th*s, tw*s)
        for (y, x0), tile in zip(chunk, outputs):
            out[:, y * s:(y + th) * s, x0 * s:(x0 + tw) * s] += tile * weight
            total[y * s:(y + th) * s, x0 * s:(x0 + tw) * s] += weight
    return (out / total)[:, :h * s, :w * s].cpu()


def before_after_sheet(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """One row per (before, after) pair, side by side on white, in RGB.  (3, H, W)

    ``before`` is enlarged to ``after``'s size by pixel repetition, so that an upscaled image
    is compared with its input at the same displayed size; tiny rows are enlarged and very
    wide rows shrunk so the sheet stays readable.
    """
    rows = []
    for before, after in pairs:
        before = F.interpolate(before[None], size=after.shape[-2:], mode="nearest")[0]
        row = torch.cat([_rgb(before), torch.ones(3, after.shape[1], SHEET_GAP), _rgb(after)], dim=2)
        k = max(1, -(-SHEET_MIN_HEIGHT // row.shape[1]))
        if k > 1:
            row = row.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
        if row.shape[2] > SHEET_MAX_WIDTH:
            size = (max(1, round(row.shape[1] * SHEET_MAX_WIDTH / row.shape[2])), SHEET_MAX_WIDTH)
            row = F.interpolate(row[None], size=size, mode="area")[0]
        rows.append(row)
    width = max(r.shape[2] for r in rows)
    padded = []
    for row in rows:
        padded += [F.pad(row, (0, width - row.shape[2]), value=1.0), torch.ones(3, SHEET_GAP, width)]
    return torch.cat(padded[:-1], dim=1)


def _rgb(img: Tensor) -> Tensor:
    return img.expand(3, -1, -1) if img.shape[0] == 1 else img


def _output_paths(paths: list[Path], out_dir: Path) -> list[Path]:
    """Output file for each input (same name in ``out_dir``), refusing clashes and overwrites."""
    outputs = [out_dir / p.name for p in paths]
    seen: dict[str, Path] = {}
    for src, dst in zip(paths, outputs):
        if dst.name in seen:
            raise ConfigError(f"{seen[dst.name]} and {src} have the same name, so both would be written to {dst}; "
                              "rename one or run them separately")
        seen[dst.name] = src
        if dst.name == SHEET_NAME:
            raise ConfigError(f"{src}: an output named {SHEET_NAME} would be overwritten by the before/after "
                              "sheet; rename the file")
        if dst.resolve() == src.resolve():
            raise ConfigError(f"{src}: the output would overwrite the input; pass another -o folder")
    return outputs


def apply_to_files(command: str, run_dir: str | Path, paths: list[str | Path], out_dir: str | Path, *,
                   overlap: int | None = None, device: str = "cpu") -> ApplyResult:
    """``aekit denoise`` / ``aekit upscale``: the run's model over each image file.

    Writes each result under its own name in ``out_dir`` and a before/after ``sheet.png``.
    """
    if not paths:
        raise ConfigError("no images given; pass one or more PNG or JPEG files")
    model = load_run_for(command, run_dir, device=device)
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    outputs = _output_paths(paths, out_dir)
    images = [load_image(p, channels=model.in_shape[0]) for p in paths]  # read all first: fail early
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for src, dst, image in zip(paths, outputs, images):
        result = apply_tiled(model, image, overlap=overlap)
        save_image(result, dst)
        log.info("%s: %s -> %s (%dx%d -> %dx%d)", command, src, dst, image.shape[2], image.shape[1],
                 result.shape[2], result.shape[1])
        pairs.append((image, result))
    sheet = out_dir / SHEET_NAME
    save_image(before_after_sheet(pairs), sheet)
    return ApplyResult(outputs, sheet)
