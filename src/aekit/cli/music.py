"""``aekit interpolate``: MusicVAE's demo, from one melody to another through the latent space.

(``aekit sample`` on a melody run writes MIDI files too: see ``cli/inspect.py``.)
"""

from __future__ import annotations

from pathlib import Path

import click

from . import main


@main.command(short_help="Melody runs: decode the way from one melody to another, as MIDI files.")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("melodies", nargs=-1, type=click.Path(path_type=Path))
@click.option("--between", type=click.IntRange(min=0), nargs=2, default=None, metavar="I J",
              help="Interpolate between test melodies I and J instead of two files.")
@click.option("--steps", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Melodies along the way, both ends included.")
@click.option("--spherical", is_flag=True, help="Follow the great circle (slerp) instead of the straight line.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for step-01.mid ... and pianoroll.png (made if missing).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True,
              help="Replace files already in the -o folder, and remove the step-NN.mid files of an earlier, "
                   "longer interpolation there (other files are left alone).")
def interpolate(run_dir, melodies, between, steps, spherical, out_dir, device, overwrite):
    """Encode two melodies (MIDI, MusicXML or ABC files: their first bars, as long as the run's
    windows; or two test melodies with --between I J) and decode the codes between them.

    Writes one MIDI file per step and a piano-roll sheet.  For image runs, see
    `aekit plot RUN interpolate`.
    """
    from ..app.music import interpolate_melodies

    written = interpolate_melodies(run_dir, out_dir, files=tuple(melodies), between=tuple(between) if between else None,
                                   steps=steps, spherical=spherical, device=device, overwrite=overwrite)
    click.echo(f"wrote {len(written.midi)} MIDI files ({written.midi[0].name} ... {written.midi[-1].name}) "
               f"and {written.sheet}")
    if written.removed:
        click.echo(f"removed {len(written.removed)} step files left by an earlier call ({written.removed[0].name} "
                   f"... {written.removed[-1].name})")
