"""Melody files the music tests write themselves (no corpus parsing, no network), and one tiny
melody run shared by the test files that need a trained model."""

from __future__ import annotations

import random
from pathlib import Path

# ABC note names of C major from G3 to E5, lowest first; "z" is a rest.
SCALE = ["G,", "A,", "B,", "C", "D", "E", "F", "G", "A", "B", "c", "d", "e"]
# Options small enough that a few epochs take seconds on one core (2 bars: the flat decoder).
TINY_MELODY_MODEL = {"latent_dim": 4, "embed_dim": 8, "encoder_hidden": 24, "decoder_hidden": 24,
                     "decoder_layers": 1, "conductor_hidden": 16, "free_bits": 0.0, "beta_rate": 0.99,
                     "sampling_rate": 200.0}


def abc_tune(index: int, *, bars: int = 8, seed: int = 0, key_shift: int = 0) -> str:
    """A made-up 4/4 tune: ``bars`` bars of quarter and eighth notes (and the odd rest), a step or
    a leap at a time, different for every ``index``; ``key_shift`` moves it up the scale."""
    rng = random.Random(seed * 10_007 + index)
    degree = rng.randrange(3, 9)
    body = []
    for bar in range(bars):
        left, notes = 8, []  # eighths left in the bar (L:1/8)
        while left:
            length = rng.choice([1, 1, 2, 2, 2, 4]) if left >= 4 else rng.choice([1, 2][:left])
            degree = min(len(SCALE) - 1 - key_shift, max(0, degree + rng.choice([-2, -1, -1, 0, 1, 1, 2])))
            name = "z" if rng.random() < 0.05 else SCALE[degree + key_shift]
            notes.append(name + (str(length) if length > 1 else ""))
            left -= length
        body.append(" ".join(notes))
    return (f"X:{index + 1}\nT:Test tune {index}\nM:4/4\nL:1/8\nK:C\n"
            + " | ".join(body[:4]) + " |\n" + " | ".join(body[4:]) + " |]\n")


def write_tunes(folder: Path, n: int = 12, *, bars: int = 8, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"tune{i:02d}.abc"
        path.write_text(abc_tune(i, bars=bars, seed=seed), encoding="utf-8")
        paths.append(path)
    return paths


_RUNS: dict[str, Path] = {}


def melody_run(tmp_path_factory, *, epochs: int = 3) -> Path:
    """A music-vae trained (once per session) on 16 written tunes, through the library."""
    key = f"run-{epochs}"
    if key not in _RUNS:
        from aekit.app import training

        root = tmp_path_factory.mktemp("melody-run")
        write_tunes(root / "tunes", 16)
        training.train(model="music-vae", dataset=f"melodies:{root / 'tunes'}", epochs=epochs, batch_size=16,
                       out=root / "run", model_options=dict(TINY_MELODY_MODEL), seed=0, lr=3e-3)
        _RUNS[key] = root / "run"
    return _RUNS[key]
