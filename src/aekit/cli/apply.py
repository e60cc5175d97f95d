"""``aekit denoise`` and ``aekit upscale``: a trained run over the user's own image files."""

from __future__ import annotations

from pathlib import Path

import click

from . import main

_TILING = ("Images of any size are cut into tiles of the model's input size that overlap by "
           "--overlap pixels (default: a quarter of a tile); overlapping outputs are blended with a "
           "tent-shaped weight, so no seams show. Images smaller than a tile are padded (mirrored, or "
           "edge-repeated when tiny) and cropped back. Colour files are converted to the model's "
           "channels (grey or RGB).\n\nEach result is written atomically under its input's name in the -o folder, "
           "with a before/after sheet.png; no input is ever written over, and an existing file only with "
           "--overwrite.")


def _apply_command(command: str, run_dir: Path, images: tuple[Path, ...], out_dir: Path, overlap, device,
                   overwrite: bool) -> None:
    from ..app.apply import apply_to_files

    result = apply_to_files(command, run_dir, list(images), out_dir, overlap=overlap, device=device,
                            overwrite=overwrite)
    for path in result.outputs:
        click.echo(f"wrote {path}")
    shown = "" if result.sheet_pairs == len(result.outputs) else f" (the first {result.sheet_pairs} images)"
    click.echo(f"before/after sheet: {result.sheet}{shown}")


_options = [
    click.argument("run_dir", type=click.Path(path_type=Path)),
    click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path)),
    click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path),
                 help="Folder for the results (same file names) and sheet.png."),
    click.option("--overlap", type=click.IntRange(min=0), default=None,
                 help="Overlap of neighbouring tiles, in input pixels  [default: a quarter of a tile]"),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
    click.option("--overwrite", is_flag=True,
                 help="Replace results (and sheet.png) already in the -o folder; inputs are never replaced."),
]


def _with_options(fn):
    for option in reversed(_options):
        fn = option(fn)
    return fn


@main.command(help="Denoise image files with a run trained with --task denoise.\n\n" + _TILING)
@_with_options
def denoise(run_dir, images, out_dir, overlap, device, overwrite):
    _apply_command("denoise", run_dir, images, out_dir, overlap, device, overwrite)


@main.command(help="Enlarge image files with a run trained with --task super-resolution: each side grows by "
                   "the run's --scale.\n\n" + _TILING.replace("model's input size", "model's (small) input size"))
@_with_options
def upscale(run_dir, images, out_dir, overlap, device, overwrite):
    _apply_command("upscale", run_dir, images, out_dir, overlap, device, overwrite)
