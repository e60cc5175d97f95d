"""Yardsticks for melodies, as pure functions of class tensors (MusicVAE's 90 classes per step).

- Accuracy per step, over all steps and over note-on steps only: holds are most of a melody's
  steps and easy to predict, so plain accuracy flatters any model (and any baseline).
- Two baselines scored on the same windows as a model: "repeat the last note" (the window's
  first note goes on for the whole window) and a first-order Markov chain over the classes,
  fitted on the training windows in every transposition the model was trained on, scored by
  its per-step negative log-likelihood and by the accuracy of melodies it samples from each
  window's first step.
- Music statistics of a set of melodies against training data: the distance between their
  pitch-class histograms, the share of notes that fit one major/minor scale, notes per bar,
  and the range of pitches.

The class layout repeats :mod:`aekit.data.melodies` (this layer may not import data); a test
checks that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

HOLD, NOTE_OFF, FIRST_NOTE = 0, 1, 2
MIN_PITCH = 21
NUM_CLASSES = 90
STEPS_PER_BAR = 16
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # its twelve rotations are every major and natural-minor key


# -- accuracy -------------------------------------------------------------------------------------

def accuracy_counts(predicted: Tensor, target: Tensor) -> Tensor:
    """(correct steps, steps, correct note-on steps, note-on steps) for melodies (N, T).  (4,) float64

    Counts rather than means, so that batches add up exactly; note-on steps are those where the
    *target* starts a note.
    """
    correct = predicted == target
    on = target >= FIRST_NOTE
    return torch.tensor([float(correct.sum()), float(correct.numel()), float((correct & on).sum()),
                         float(on.sum())], dtype=torch.float64)


def accuracies(counts: Tensor, prefix: str = "") -> dict[str, float]:
    """``accuracy`` and ``accuracy_note_on`` from :func:`accuracy_counts` (summed over batches)."""
    c = counts.tolist()
    return {f"{prefix}accuracy": c[0] / max(c[1], 1.0), f"{prefix}accuracy_note_on": c[2] / max(c[3], 1.0)}


def sequence_nats(logits: Tensor, target: Tensor) -> Tensor:
    """-log p(target) under per-step categorical ``logits`` (N, T, C), summed over steps.  (N,)"""
    return F.cross_entropy(logits.float().transpose(1, 2), target, reduction="none").sum(dim=1)


# -- baselines ------------------------------------------------------------------------------------

def repeat_last_note(melodies: Tensor) -> Tensor:
    """The baseline that lets the window's first step go on: that step, then holds.  (N, T)

    Its plain accuracy is the share of holds, its note-on accuracy (beyond the first step) nil:
    the floor any model has to clear, and the reason for reporting note-on accuracy.
    """
    out = torch.zeros_like(melodies)
    out[:, 0] = melodies[:, 0]
    return out


def transpositions(melodies: Tensor, semitones: int) -> Tensor:
    """Every melody moved by -semitones..semitones, those that would leave the piano left out.  (M, T)"""
    notes = melodies >= FIRST_NOTE
    lowest = torch.where(notes, melodies, torch.full_like(melodies, NUM_CLASSES)).amin(dim=1)
    highest = torch.where(notes, melodies, torch.full_like(melodies, -1)).amax(dim=1)
    out = []
    for shift in range(-semitones, semitones + 1):
        fits = (lowest + shift >= FIRST_NOTE) & (highest + shift <= NUM_CLASSES - 1) | ~notes.any(dim=1)
        moved = torch.where(notes, melodies + shift, melodies)
        out.append(moved[fits])
    return torch.cat(out)


@dataclass
class MarkovChain:
    """A first-order Markov chain over the classes: p(x_0) and p(x_t | x_{t-1}), add-alpha smoothed."""

    log_initial: Tensor  # (C,)
    log_transition: Tensor  # (C, C): row = previous class
    alpha: float

    @classmethod
    def fit(cls, melodies: Tensor, alpha: float = 0.1) -> MarkovChain:
        """Counts over ``melodies`` (N, T), each cell given ``alpha`` more."""
        c = NUM_CLASSES
        initial = torch.bincount(melodies[:, 0], minlength=c).double() + alpha
        pairs = melodies[:, :-1] * c + melodies[:, 1:]
        transition = torch.bincount(pairs.flatten(), minlength=c * c).double().view(c, c) + alpha
        return cls((initial / initial.sum()).log(), (transition / transition.sum(dim=1, keepdim=True)).log(), alpha)

    def log_prob(self, melodies: Tensor) -> Tensor:
        """log p(melody) in nats.  (N,)"""
        first = self.log_initial[melodies[:, 0]]
        steps = self.log_transition[melodies[:, :-1], melodies[:, 1:]].sum(dim=1)
        return first + steps

    def most_likely_next(self, melodies: Tensor) -> Tensor:
        """Each step predicted from the true step before it (teacher forcing); the first as given.  (N, T)"""
        out = melodies.clone()
        out[:, 1:] = self.log_transition.argmax(dim=1)[melodies[:, :-1]]
        return out

    def sample(self, first: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """Melodies that start with ``first`` (N,) and continue with draws from the chain.  (N, steps)"""
        probs = self.log_transition.exp()
        out = [first]
        for _ in range(steps - 1):
            out.append(torch.multinomial(probs[out[-1]], 1, generator=generator)[:, 0])
        return torch.stack(out, dim=1)

    def sample_free(self, n: int, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` melodies drawn from the chain from their first step on.  (n, steps)"""
        first = torch.multinomial(self.log_initial.exp(), n, replacement=True, generator=generator)
        return self.sample(first, steps, generator)


def fit_markov(train: Tensor, tuning: Tensor, *, alphas: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)) -> MarkovChain:
    """The chain fitted on ``train`` (N, T) with the smoothing that gives ``tuning`` (M, T) the
    lowest negative log-likelihood: the baseline gets its best shot, never tuned on scored data."""
    best = None
    for alpha in alphas:
        chain = MarkovChain.fit(train, alpha)
        nll = -float(chain.log_prob(tuning).double().mean()) if len(tuning) else 0.0
        if best is None or nll < best[0]:
            best = (nll, chain)
    return best[1]


# -- music statistics ---------------------------------------------------------------------------

def note_pitches(melodies: Tensor) -> Tensor:
    """MIDI pitch of every note-on step, -1 elsewhere.  (N, T)"""
    return torch.where(melodies >= FIRST_NOTE, melodies - FIRST_NOTE + MIN_PITCH, torch.full_like(melodies, -1))


def pitch_class_histogram(melodies: Tensor) -> Tensor:
    """How many notes of each pitch class (C, C#, ... B) the melodies strike.  (12,) float64"""
    pitches = note_pitches(melodies)
    return torch.bincount(pitches[pitches >= 0] % 12, minlength=12).double()


def histogram_distance(p: Tensor, q: Tensor) -> float:
    """Total-variation distance between two histograms, normalised: 0 same shape .. 1 disjoint."""
    if float(p.sum()) == 0 or float(q.sum()) == 0:
        return float("nan")
    return 0.5 * float((p / p.sum() - q / q.sum()).abs().sum())


def in_key_shares(melodies: Tensor) -> Tensor:
    """Per melody, the share of its notes inside the one major (or relative minor) scale that
    holds most of them; NaN for a melody without notes.  (N,) float64"""
    pitches = note_pitches(melodies)
    counts = torch.zeros(melodies.shape[0], 12, dtype=torch.float64)
    valid = pitches >= 0
    rows = torch.arange(melodies.shape[0]).unsqueeze(1).expand_as(pitches)
    counts.index_put_((rows[valid], pitches[valid] % 12), torch.ones(int(valid.sum()), dtype=torch.float64),
                      accumulate=True)
    scales = torch.zeros(12, 12, dtype=torch.float64)  # (key, pitch class)
    for key in range(12):
        scales[key, [(key + degree) % 12 for degree in MAJOR_SCALE]] = 1.0
    inside = (counts @ scales.T).amax(dim=1)  # (N,)
    total = counts.sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1.0), torch.full_like(total, float("nan")))


def music_statistics(melodies: Tensor, reference_histogram: Tensor) -> dict[str, float]:
    """Simple statistics of melodies (N, T), to hold samples against training data.

    ``pitch_class_distance``: total variation between their pitch-class histogram and
    ``reference_histogram`` (0..1); ``in_key``: mean share of notes in each melody's best
    major/minor scale (a random melody scores about 0.7, a tune near 1); ``notes_per_bar``;
    ``pitch_range``: mean semitones between a melody's lowest and highest note;
    ``silent``: share of melodies without a note.
    """
    pitches = note_pitches(melodies).double()
    has_notes = (pitches >= 0).any(dim=1)
    high = torch.where(pitches >= 0, pitches, torch.full_like(pitches, -math.inf)).amax(dim=1)
    low = torch.where(pitches >= 0, pitches, torch.full_like(pitches, math.inf)).amin(dim=1)
    shares = in_key_shares(melodies)
    n = max(int(has_notes.sum()), 1)
    return {
        "pitch_class_distance": histogram_distance(pitch_class_histogram(melodies), reference_histogram),
        "in_key": float(shares[has_notes].sum()) / n,
        "notes_per_bar": float((melodies >= FIRST_NOTE).double().sum(dim=1).mean()) * STEPS_PER_BAR
        / melodies.shape[1],
        "pitch_range": float((high - low)[has_notes].sum()) / n,
        "silent": float((~has_notes).double().mean()),
        "melodies": int(melodies.shape[0]),
    }


# -- piano rolls ----------------------------------------------------------------------------------

def piano_roll(melodies: Tensor, low: int, high: int) -> Tensor:
    """Melodies (N, T) as rolls (N, high - low + 1, T): 2 where a note is struck, 1 where it is
    held, 0 elsewhere; row 0 is the lowest pitch ``low``.  Notes outside low..high are left out."""
    n, t = melodies.shape
    roll = torch.zeros(n, high - low + 1, t, dtype=torch.uint8)
    for i in range(n):
        current = -1
        for step, cls in enumerate(melodies[i].tolist()):
            if cls >= FIRST_NOTE:
                current = cls - FIRST_NOTE + MIN_PITCH
                if low <= current <= high:
                    roll[i, current - low, step] = 2
                continue
            if cls == NOTE_OFF:
                current = -1
            elif current >= 0 and low <= current <= high:
                roll[i, current - low, step] = 1
    return roll


def pitch_span(melodies: Tensor, *, margin: int = 2, minimum: int = 24) -> tuple[int, int]:
    """The pitches a piano roll of ``melodies`` should show: their range plus ``margin``, at
    least ``minimum`` semitones tall (C4 up two octaves when there are no notes)."""
    pitches = note_pitches(melodies)
    if not bool((pitches >= 0).any()):
        return 60, 60 + minimum
    low, high = int(pitches[pitches >= 0].min()) - margin, int(pitches.max()) + margin
    if high - low < minimum:
        extra = minimum - (high - low)
        low, high = low - extra // 2, high + extra - extra // 2
    return max(low, MIN_PITCH), min(high, MIN_PITCH + NUM_CLASSES - FIRST_NOTE - 1)
