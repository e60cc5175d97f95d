"""Melody runs: samples and interpolations as MIDI files with a piano-roll sheet, and their figures.

The Python side of ``aekit sample`` (for a run of the melody task), ``aekit interpolate``, the
report's piano rolls and the explorer's melodies.  Melodies are (N, T) class tensors
(:mod:`aekit.data.melodies`); MIDI files are written at 120 beats per minute, one step a
sixteenth note.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..data.melodies import STEPS_PER_BAR, decode_events, melody_midi_bytes, read_melody
from ..errors import ConfigError
from ..eval import music as em
from ..fileio import FileSet, atomic_write_bytes, check_outputs
from ..latent import interpolate as interpolate_codes
from ..run import Run
from ..viz.figures import figure_png
from ..viz.pianoroll import piano_roll_sheet, roll_pairs_figure

log = logging.getLogger(__name__)

SHEET_NAME = "pianoroll.png"
MAX_SAMPLES = 1024
MAX_STEPS = 64  # interpolation steps: each is a MIDI file and a roll on the sheet


def _rolls(melodies: Tensor) -> tuple[Tensor, int]:
    """Piano rolls of melodies (N, T) over the pitches they use: ((N, P, T), lowest pitch)."""
    low, high = em.pitch_span(melodies)
    return em.piano_roll(melodies, low, high), low


def require_melody_run(run: Run, command: str) -> None:
    if run.task.data_kind != "melody":
        raise ConfigError(f"`aekit {command}` writes melodies; {run.path} was trained for {run.task.describe()}"
                          + ("; for images use `aekit plot RUN interpolate`" if command == "interpolate" else ""))


# -- figures ----------------------------------------------------------------------------------------

@torch.inference_mode()
def reconstructions_figure(model, test, *, n: int = 8, title: str | None = None) -> Figure:
    """The first ``n`` test melodies above their reconstructions (posterior mean, greedy decoding)."""
    model.eval()
    originals = test.melodies[:n]
    device = next(model.parameters()).device
    outputs = model.reconstruct(originals.to(device)).cpu()
    low, high = em.pitch_span(torch.cat([originals, outputs]))
    return roll_pairs_figure(em.piano_roll(originals, low, high), em.piano_roll(outputs, low, high), low,
                             steps_per_bar=STEPS_PER_BAR, title=title)


@torch.inference_mode()
def draw_samples(model, n: int, *, temperature: float = 1.0, seed: int = 0) -> Tensor:
    """``n`` melodies from the model's prior, each step drawn at ``temperature``.  (n, T) on the CPU"""
    model.eval()
    return model.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(seed)).cpu()


def samples_figure(melodies: Tensor, *, title: str | None = None, cols: int = 4) -> Figure:
    rolls, low = _rolls(melodies)
    return piano_roll_sheet(rolls, low, titles=[f"sample {i + 1}" for i in range(len(melodies))], cols=cols,
                            steps_per_bar=STEPS_PER_BAR, title=title)


# -- writing files ----------------------------------------------------------------------------------

def _prepare_folder(out_dir: Path, names: list[str], *, overwrite: bool, inputs=()) -> list[Path]:
    """The files a command writes in ``out_dir`` (made if missing), checked before any work:
    none may be one of ``inputs``, none may exist unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir}: a file, not a folder; pass a folder for the MIDI files")
    paths = [out_dir / name for name in names]
    check_outputs([(p, "") for p in paths], inputs=inputs, overwrite=overwrite)
    return paths


def _write_melodies(melodies: Tensor, paths: list[Path], sheet: Path, figure: Figure, *, overwrite: bool,
                    prefix: str, inputs=()) -> list[Path]:
    """Write one MIDI file per melody and the sheet; with ``overwrite``, then remove what an
    earlier call left beside them (:func:`_remove_leftovers`).  Returns the files removed."""
    sheet.parent.mkdir(parents=True, exist_ok=True)
    for melody, path in zip(melodies, paths):
        atomic_write_bytes(path, melody_midi_bytes(melody), overwrite=overwrite)
    atomic_write_bytes(sheet, figure_png(figure), overwrite=overwrite)
    return _remove_leftovers(sheet.parent, prefix, keep=paths, inputs=inputs) if overwrite else []


def _remove_leftovers(out_dir: Path, prefix: str, *, keep: list[Path], inputs=()) -> list[Path]:
    """Remove the files of an earlier call that this one did not write over: after 10 steps and
    then 4 with --overwrite, step-05.mid ... step-10.mid would otherwise sit beside the new files
    as if they belonged to the new sheet.

    Only names aekit itself gives (``{prefix}-`` and two or more digits, ``.mid``: any width an
    earlier ``-n`` gave) are removed, and never one of the call's ``inputs``; other files in the
    folder are the user's and stay.  The folder is not swapped for a fresh one instead, because
    -o may well be a folder of the user's own (it may even hold the two melodies interpolated).
    They are removed only after the new files are written: a call that fails part-way removes nothing."""
    pattern = re.compile(rf"{re.escape(prefix)}-\d{{2,}}\.mid")
    kept = {p.name for p in keep}
    inputs = FileSet(inputs)
    removed = []
    for path in sorted(out_dir.iterdir()):
        if (pattern.fullmatch(path.name) and path.name not in kept and not os.path.isdir(path)
                and inputs.find(path) is None):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d %s files left in %s by an earlier call", len(removed), prefix, out_dir)
    return removed


@dataclass
class Written:
    midi: list[Path]
    sheet: Path
    removed: list[Path] = field(default_factory=list)  # an earlier call's files, gone with --overwrite


def write_samples(run_dir: str | Path, out_dir: str | Path, *, n: int = 8, temperature: float = 1.0, seed: int = 0,
                  device: str = "auto", overwrite: bool = False) -> Written:
    """``n`` samples of a melody run as ``sample-01.mid``... and ``pianoroll.png`` in ``out_dir``.

    MusicVAE's sampling: codes from N(0, I), each step drawn from the decoder's softmax at
    ``temperature`` (0.5 gives tidier tunes, 1.0 the model's own spread).  With ``overwrite``,
    sample files of an earlier, larger call are removed (:func:`_remove_leftovers`)."""
    if not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(f"-n must be in 1..{MAX_SAMPLES}, got {n}")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be a positive number, got {temperature}")
    run = Run.open(run_dir, device=device)
    require_melody_run(run, "sample")
    out_dir = Path(out_dir)
    width = max(2, len(str(n)))
    *paths, sheet = _prepare_folder(out_dir, [f"sample-{i + 1:0{width}d}.mid" for i in range(n)] + [SHEET_NAME],
                                    overwrite=overwrite)
    melodies = draw_samples(run.model, n, temperature=temperature, seed=seed)
    figure = samples_figure(melodies, title=f"{n} samples from {run.config.model} ({run.name}), temperature "
                                            f"{temperature:g}")
    removed = _write_melodies(melodies, paths, sheet, figure, overwrite=overwrite, prefix="sample")
    log.info("wrote %d samples to %s", n, out_dir)
    return Written(paths, sheet, removed)


def _end(run: Run, source: str | Path | int, test) -> tuple[Tensor, str]:
    """One end of an interpolation: a music file (its first T steps) or a test melody's index."""
    steps = int(run.model.in_shape[0])
    if isinstance(source, int):
        if test is None:
            raise ConfigError("a test melody by index needs the run's dataset")
        if not 0 <= source < len(test):
            raise ConfigError(f"--between: no test melody {source}; indices run 0..{len(test) - 1}")
        return test.melodies[source], f"test melody {source}"
    path = Path(source)
    return torch.from_numpy(read_melody(path, steps)), path.name


def interpolate_melodies(run_dir: str | Path, out_dir: str | Path, *, files: tuple[str | Path, ...] = (),
                         between: tuple[int, int] | None = None, steps: int = 8, spherical: bool = False,
                         device: str = "auto", overwrite: bool = False) -> Written:
    """MusicVAE's demo: two melodies encoded (posterior means), the codes between them decoded.

    The ends are two music files (``files``: MIDI, MusicXML, ABC; their first T steps) or two
    test melodies (``between``: indices into the run's test split).  Writes ``step-01.mid``...
    and ``pianoroll.png`` (one roll per step, the ends first and last) in ``out_dir``; with
    ``overwrite``, the step files of an earlier call with more steps are removed
    (:func:`_remove_leftovers`), so the folder holds exactly the steps on the sheet.
    """
    run = Run.open(run_dir, device=device)  # a broken run folder is the first thing to report
    require_melody_run(run, "interpolate")
    if not 2 <= steps <= MAX_STEPS:
        raise ConfigError(f"--steps must be in 2..{MAX_STEPS}, got {steps}")
    if (len(files) == 2) == (between is not None) or len(files) not in (0, 2):
        raise ConfigError("give two melodies: two files (A.mid B.mid) or two test melodies (--between I J)")
    out_dir = Path(out_dir)
    width = max(2, len(str(steps)))
    *paths, sheet = _prepare_folder(out_dir, [f"step-{i + 1:0{width}d}.mid" for i in range(steps)] + [SHEET_NAME],
                                    overwrite=overwrite, inputs=files)
    test = run.splits().test if between is not None else None
    ends = [_end(run, source, test) for source in (between if between is not None else files)]
    model = run.model
    device_ = next(model.parameters()).device
    with torch.inference_mode():
        codes = model.encode(torch.stack([m for m, _ in ends]).to(device_)).mode().float().cpu()  # (2, D)
        path = interpolate_codes(codes[0], codes[1], steps, spherical=spherical)  # (steps, D)
        melodies = model.decode(path.to(device_)).cpu()
    rolls, low = _rolls(melodies)
    titles = [f"{ends[0][1]} (decoded)"] + [f"step {i + 1}" for i in range(1, steps - 1)] + [f"{ends[1][1]} (decoded)"]
    figure = piano_roll_sheet(rolls, low, titles=titles, cols=min(steps, 4), steps_per_bar=STEPS_PER_BAR,
                              title=f"{run.config.model} ({run.name}): from {ends[0][1]} to {ends[1][1]}")
    removed = _write_melodies(melodies, paths, sheet, figure, overwrite=overwrite, prefix="step", inputs=files)
    return Written(paths, sheet, removed)


# -- for the explorer ------------------------------------------------------------------------------

def notes_json(melody: Tensor) -> list[list[int]]:
    """A melody (T,) as [[start_step, end_step, midi_pitch], ...] for the page to play."""
    return [list(note) for note in decode_events(melody)]


def pitch_span(melodies: Tensor) -> tuple[int, int]:
    """The pitches a roll of these melodies shows (their range, a little more, two octaves at least)."""
    return em.pitch_span(melodies)


def roll_images(melodies: Tensor, low: int, high: int) -> Tensor:
    """Melodies (N, T) as small grey piano-roll images (N, 1, P, 2T) in [0, 1], highest pitch on top."""
    from ..viz.pianoroll import roll_image

    rolls = em.piano_roll(melodies.cpu(), low, high)
    return torch.stack([roll_image(r) for r in rolls]) if len(rolls) else torch.zeros(0, 1, high - low + 1, 0)
