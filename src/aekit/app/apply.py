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

Memory stays bounded whatever the image's shape: the output is stitched one row of tiles at
a time (the tent weights are separable, so no full-size weight map is kept, and a 1-pixel-high
strip is never padded to a tile's height as a whole), and its size is capped
(:data:`MAX_OUTPUT_PIXELS`).  The before/after sheet is a preview, capped in size too.
Nothing the user has is written over: see :func:`apply_to_files`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import MAX_PIXELS, save_image
from ..data.images import check_channels, check_savable, decode_image, open_image, oriented_size
from ..errors import ConfigError
from ..fileio import FileSet, check_outputs
from ..run import Run

log = logging.getLogger(__name__)

SHEET_NAME = "sheet.png"
TILE_BATCH = 256  # tiles per forward pass: small tiles, so memory stays low
# The largest output written: the same limit as on reading, so aekit can read its outputs back;
# at float32 RGB that is 600 MB while it is stitched.
MAX_OUTPUT_PIXELS = MAX_PIXELS
# Decoded inputs kept between checking them all and applying the model; above this they are
# decoded again when their turn comes, so many large files never sit in memory together.
KEEP_DECODED_BYTES = 128 * 2**20

SHEET_MIN_HEIGHT = 112  # small images are enlarged (pixel repetition) towards this height on the sheet ...
SHEET_MAX_ENLARGE = 8  # ... but by at most this factor: a 1-pixel-high strip stays a thin strip
SHEET_MAX_WIDTH = 1600  # wider sheet rows are shrunk to this width (area-averaged)
SHEET_MAX_ROW_HEIGHT = 800  # and taller ones to this height
SHEET_MAX_PIXELS = 4_000_000  # the whole sheet: every row shrunk alike above this
SHEET_MAX_ROWS = 64  # the sheet shows the first this many pairs; every output is still written
SHEET_GAP = 4  # white pixels between images on the sheet


@dataclass
class ApplyResult:
    outputs: list[Path]  # one per input, same file name, in the output folder
    sheet: Path  # before/after sheet of the inputs (the first SHEET_MAX_ROWS of them)
    sheet_pairs: int = 0  # how many inputs the sheet shows


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


def _coverage(starts: list[int], tile: int, s: int, weight: Tensor, size: int) -> Tensor:
    """Sum of the tent weights of every tile over each output pixel along one axis.  (size,)"""
    total = torch.zeros(max(size, (starts[-1] + tile) * s), device=weight.device)
    for start in starts:
        total[start * s:(start + tile) * s] += weight
    return total[:size]


@torch.inference_mode()
def apply_tiled(model, image: Tensor, *, overlap: int | None = None, batch_size: int = TILE_BATCH) -> Tensor:
    """Run ``model`` over ``image`` (C, H, W) in tiles of its input size.  (C, H*s, W*s)

    ``s`` is the model's enlargement (1 for a denoiser).  ``overlap`` in input pixels,
    default a quarter of the tile.  Every output pixel is the tent-weighted mean of the tiles
    over it; the weight of tile (y, x) at a pixel is wy * wx, so the normalising sum is the
    product of one sum per axis, and the output is built one row of tiles at a time.  Memory:
    the output, one row of tiles (C, tile*s, W*s), and one batch of tiles.
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
    x = image.to(device)
    ph, pw = max(0, th - h), max(0, tw - w)
    # An image smaller than a tile is padded tile by tile (never as a whole: a 1 x 100,000 strip
    # would become 28 x 100,000).  Mirroring needs the pad to be shorter than the side; a tiny
    # image repeats its border.
    mode = "reflect" if ph < h and pw < w else "replicate"
    ys, xs = tile_starts(h + ph, th, overlap), tile_starts(w + pw, tw, overlap)
    corners = [(y, x0) for y in ys for x0 in xs]  # row by row
    wy, wx = tent(th * s, device=device), tent(tw * s, device=device)
    H, W = h * s, w * s
    out = torch.zeros((c, H, W), device=device)
    strip, strip_y = None, None  # the current row of tiles, weighted by wx, cropped to the output

    def flush():
        r0 = strip_y * s
        out[:, r0:r0 + strip.shape[1]] += strip * wy[:strip.shape[1], None]

    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        tiles = torch.stack([x[:, y:y + th, x0:x0 + tw] for y, x0 in chunk])  # (n, C, <=th, <=tw)
        if ph or pw:
            tiles = F.pad(tiles, (0, pw, 0, ph), mode=mode)
        outputs = model.reconstruct(tiles)  # (n, C, th*s, tw*s)
        for (y, x0), tile in zip(chunk, outputs):
            if y != strip_y:
                if strip is not None:
                    flush()
                strip, strip_y = torch.zeros((c, min(th * s, H - y * s), W), device=device), y
            c0 = x0 * s
            c1 = min(c0 + tw * s, W)
            strip[:, :, c0:c1] += tile[:, :strip.shape[1], :c1 - c0] * wx[:c1 - c0]
    flush()
    out /= _coverage(ys, th, s, wy, H)[:, None]
    out /= _coverage(xs, tw, s, wx, W)[None, :]
    return out.cpu()


# -- the before/after sheet ------------------------------------------------------------------------

def sheet_panel_sizes(shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(height, width) at which each pair is shown on the sheet, from each output's (H, W).

    Small outputs are enlarged by a whole factor (pixel repetition) towards SHEET_MIN_HEIGHT,
    at most SHEET_MAX_ENLARGE times; a row wider than SHEET_MAX_WIDTH or taller than
    SHEET_MAX_ROW_HEIGHT is shrunk to fit; and if the sheet would still be above
    SHEET_MAX_PIXELS, every row is shrunk by the same factor.  Any image shape gives a sheet
    of a few megapixels at most.
    """
    sizes = []
    for h, w in shapes:
        f = float(min(SHEET_MAX_ENLARGE, max(1, -(-SHEET_MIN_HEIGHT // h))))
        f = min(f, (SHEET_MAX_WIDTH - SHEET_GAP) / (2 * w), SHEET_MAX_ROW_HEIGHT / h)
        f = math.floor(f) if f >= 1 else f
        sizes.append((max(1, round(h * f)), max(1, round(w * f))))

    def area(sizes):
        width = max(2 * pw + SHEET_GAP for _, pw in sizes)
        return width * (sum(ph for ph, _ in sizes) + SHEET_GAP * (len(sizes) - 1))

    if sizes and area(sizes) > SHEET_MAX_PIXELS:
        g = math.sqrt(SHEET_MAX_PIXELS / area(sizes))
        sizes = [(max(1, math.floor(ph * g)), max(1, math.floor(pw * g))) for ph, pw in sizes]
    return sizes


def _panel(img: Tensor, size: tuple[int, int]) -> Tensor:
    """``img`` (C, h, w) shown at ``size`` (H, W) in RGB: area-averaged where it shrinks,
    repeated pixels where it grows.  (3, H, W)"""
    img = img[None].float()
    shrunk = (min(size[0], img.shape[2]), min(size[1], img.shape[3]))
    if shrunk != tuple(img.shape[2:]):
        img = F.adaptive_avg_pool2d(img, shrunk)
    if tuple(size) != tuple(img.shape[2:]):
        img = F.interpolate(img, size=size, mode="nearest")
    img = img[0]
    return img.expand(3, -1, -1) if img.shape[0] == 1 else img


def sheet_row(before: Tensor, after: Tensor, size: tuple[int, int]) -> Tensor:
    """``before`` and ``after`` side by side, each shown at ``size`` (H, W), on white.  (3, H, 2W + gap)"""
    return torch.cat([_panel(before, size), torch.ones(3, size[0], SHEET_GAP), _panel(after, size)], dim=2)


def stack_rows(rows: list[Tensor]) -> Tensor:
    """Rows one above the other, left-aligned on white.  (3, H, W)"""
    width = max(r.shape[2] for r in rows)
    padded = []
    for row in rows:
        padded += [F.pad(row, (0, width - row.shape[2]), value=1.0), torch.ones(3, SHEET_GAP, width)]
    return torch.cat(padded[:-1], dim=1)


def before_after_sheet(pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """One row per (before, after) pair, side by side on white, in RGB.  (3, H, W)

    ``before`` is shown at ``after``'s displayed size, so that an upscaled image is compared
    with its input at the same size; sizes follow :func:`sheet_panel_sizes`.
    """
    sizes = sheet_panel_sizes([tuple(after.shape[-2:]) for _, after in pairs])
    return stack_rows([sheet_row(before, after, size) for (before, after), size in zip(pairs, sizes)])


# -- files -----------------------------------------------------------------------------------------

def _output_paths(paths: list[Path], out_dir: Path, *, overwrite: bool) -> list[Path]:
    """Output file for each input (same name in ``out_dir``), refusing clashes and overwrites.

    Every output, the sheet included, is checked before anything is written: none may be an
    input (not even with ``overwrite``), and none may exist unless ``overwrite``.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir}: a file, not a folder; pass a folder for the results")
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
    inputs = FileSet(paths)
    check_outputs([*((dst, f"the result for {src}") for src, dst in zip(paths, outputs)),
                   (out_dir / SHEET_NAME, "the before/after sheet")], inputs=inputs, overwrite=overwrite)
    return outputs


def _read_input(path: Path, *, channels: int, scale: int) -> Tensor:
    """One input image (C, H, W), refused from its header if its output would be too large."""
    with open_image(path) as image:
        h, w = oriented_size(image)
        if h * scale * w * scale > MAX_OUTPUT_PIXELS:
            raise ConfigError(f"{path}: the x{scale} output would be {w * scale}x{h * scale} = "
                              f"{h * w * scale * scale:,} pixels, above the limit of {MAX_OUTPUT_PIXELS:,}; "
                              "crop or shrink the image first")
        return torch.from_numpy(decode_image(image, channels=channels, size=None, source=str(path)))


def apply_to_files(command: str, run_dir: str | Path, paths: list[str | Path], out_dir: str | Path, *,
                   overlap: int | None = None, device: str = "cpu", overwrite: bool = False) -> ApplyResult:
    """``aekit denoise`` / ``aekit upscale``: the run's model over each image file.

    Writes each result under its own name in ``out_dir`` and a before/after ``sheet.png``,
    each atomically.  Before anything is written, every output is checked (none may be an
    input; none may exist unless ``overwrite``) and every input is read (a bad file is named
    at once, and no output is written).
    """
    if not paths:
        raise ConfigError("no images given; pass one or more PNG or JPEG files")
    model = load_run_for(command, run_dir, device=device)
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    outputs = _output_paths(paths, out_dir, overwrite=overwrite)
    channels = model.in_shape[0]
    check_channels(channels)
    scale = model.out_shape[1] // model.in_shape[1]
    # Read every input first: fail before writing anything.  Small ones are kept for the work below.
    kept: dict[int, Tensor] = {}
    kept_bytes = 0
    shapes = []
    for i, (path, dst) in enumerate(zip(paths, outputs)):
        image = _read_input(path, channels=channels, scale=scale)
        shapes.append((image.shape[1] * scale, image.shape[2] * scale))
        check_savable(dst, shapes[-1])  # a 20,000-pixel-wide result fits no WebP file: say so now
        if kept_bytes + image.nbytes <= KEEP_DECODED_BYTES:
            kept[i] = image
            kept_bytes += image.nbytes
        del image
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = sheet_panel_sizes(shapes[:SHEET_MAX_ROWS])
    rows = []
    for i, (src, dst) in enumerate(zip(paths, outputs)):
        image = kept.pop(i, None)
        if image is None:
            image = _read_input(src, channels=channels, scale=scale)
        result = apply_tiled(model, image, overlap=overlap)
        save_image(result, dst, overwrite=overwrite)
        log.info("%s: %s -> %s (%dx%d -> %dx%d)", command, src, dst, image.shape[2], image.shape[1],
                 result.shape[2], result.shape[1])
        if i < SHEET_MAX_ROWS:
            rows.append(sheet_row(image, result, sizes[i]))
        del image, result
    if len(paths) > SHEET_MAX_ROWS:
        log.info("the before/after sheet shows the first %d of %d images", SHEET_MAX_ROWS, len(paths))
    sheet = out_dir / SHEET_NAME
    save_image(stack_rows(rows), sheet, overwrite=overwrite)
    return ApplyResult(outputs, sheet, len(rows))
