"""Melodies as a dataset: ``melodies`` (the music21 corpus), ``melodies:PATH`` (your own files).

A melody is a monophonic line on a grid of sixteenth notes, encoded as MusicVAE encodes melodies
(Roberts et al. 2018, https://arxiv.org/abs/1803.05428): one of 90 classes per step,

    0        hold: the note sounding goes on (or the silence does)
    1        note off: a rest starts here
    2..89    note on: MIDI pitch 21..108 (A0..C8, the piano) starts here, ending the one before

so a quarter note C4 then an eighth rest is ``[62, 0, 0, 0, 1, 0]`` (60 - 21 + 2 = 41 is
middle C: ``note_class(60) == 41``).

Where the melodies come from:

- ``melodies``: the collections that music21's wheel ships and that are free to use: the
  soprano lines of the Bach chorales (public-domain music; the three Humdrum files under CCARH's
  licence are left out), Ryan's Mammoth Collection (1883), O'Neill's Music of Ireland (1903),
  Aird's Airs (1782-97), two books of American fife and Northumbrian tunes, and a Nottingham
  Music Database sample.  Left out: the Essen folk songs, whose permission covers
  non-commercial use only (see :data:`FREE_COLLECTIONS`).
- ``melodies:PATH``: MIDI, MusicXML, ABC or Humdrum files under PATH; of each file the part
  that lies highest (the tune of a song with accompaniment), chords reduced to their top note.
  Files that cannot be read are skipped and counted, or, with ``strict``, refused in one error.

Parsing is slow (music21 reads about ten tunes a second per core), so the parsed pieces are
kept in aekit's data cache as one ``.npz`` of plain arrays and every later run loads that.
Windows are cut from the pieces at bar lines: 32 steps (2 bars of 4/4) for ``melodies``, 256
steps (16 bars) for ``melodies-16bar``; a window that starts inside a note begins with that
note struck.  The split is by piece (every window of a test piece is a test window), and pieces
that are the same tune in another key or collection are one piece for the split.  Training
batches are transposed at random by up to :data:`TRANSPOSE` semitones (within the piano).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ._files import atomic_write_bytes
from .fetch import cache_dir
from .sets import DatasetSplits, split_indices

log = logging.getLogger(__name__)

# -- the encoding (MusicVAE's melody classes) ---------------------------------------------------

HOLD = 0
NOTE_OFF = 1
FIRST_NOTE = 2  # class of the lowest pitch
MIN_PITCH, MAX_PITCH = 21, 108  # the piano's range, as MusicVAE's melody models use
NUM_CLASSES = FIRST_NOTE + MAX_PITCH - MIN_PITCH + 1  # 90
STEPS_PER_QUARTER = 4  # sixteenth notes
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER  # a bar of 4/4
TRANSPOSE = 5  # training windows move up or down by up to this many semitones
# Bump when the parsed pieces change meaning, so that caches written before are parsed again.
ENCODING_VERSION = 2

DATASET_BARS = {"melodies": 2, "melodies-16bar": 16}
MUSIC_SUFFIXES = (".mid", ".midi", ".xml", ".mxl", ".musicxml", ".abc", ".krn")

# music21's corpus folders that the default dataset reads, and what was left out and why.
FREE_COLLECTIONS = ("bach", "ryansMammoth", "oneills1850", "airdsAirs", "miscFolk", "nottingham-dataset")
LEFT_OUT = {
    "essenFolksong": "its permission covers non-commercial use only (corpus/essenFolksong/license.txt)",
    "bach/*.krn": "three Humdrum encodings carry CCARH's own licence",
}
INSTALL_HINT = 'melodies need music21 and mido: pip install "aekit[music]"'

# A window is kept when it holds at least this many notes per bar and sounds for at least
# this share of its steps: long silences teach the model nothing (MusicVAE drops them too).
MIN_NOTES_PER_BAR = 1
MIN_SOUNDING = 0.5


def note_class(pitch: int) -> int:
    """The note-on class of MIDI ``pitch`` (21..108)."""
    return FIRST_NOTE + int(pitch) - MIN_PITCH


def class_pitch(cls: int) -> int:
    """The MIDI pitch a note-on class starts."""
    return int(cls) - FIRST_NOTE + MIN_PITCH


def encode_notes(notes: list[tuple[int, int, int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Monophonic notes ``(start_step, end_step, pitch)`` (sorted, not overlapping) to classes.

    Returns ``events`` (L,) int8 classes and ``sounding`` (L,) int8: the pitch sounding at each
    step, -1 in silence.  ``length`` defaults to the end of the last note.
    """
    length = max((end for _, end, _ in notes), default=0) if length is None else length
    events = np.zeros(length, dtype=np.int8)
    sounding = np.full(length, -1, dtype=np.int8)
    for i, (start, end, pitch) in enumerate(notes):
        if start >= length:
            break
        if not MIN_PITCH <= pitch <= MAX_PITCH:
            raise DataError(f"pitch {pitch} is outside the piano's range {MIN_PITCH}..{MAX_PITCH}")
        events[start] = note_class(pitch)
        stop = min(end, length)
        sounding[start:stop] = pitch
        following = notes[i + 1][0] if i + 1 < len(notes) else None
        if stop < length and (following is None or following > stop):
            events[stop] = NOTE_OFF  # a rest starts; a note starting right there ends this one itself
    return events, sounding


def decode_events(events) -> list[tuple[int, int, int]]:
    """Classes (T,) to notes ``(start_step, end_step, pitch)``: the inverse of :func:`encode_notes`."""
    notes: list[tuple[int, int, int]] = []
    current: tuple[int, int] | None = None  # (start, pitch) of the note sounding
    values = [int(v) for v in (events.tolist() if hasattr(events, "tolist") else events)]
    for step, cls in enumerate(values):
        if cls == HOLD:
            continue
        if current is not None:
            notes.append((current[0], step, current[1]))
            current = None
        if cls >= FIRST_NOTE:
            current = (step, class_pitch(cls))
    if current is not None:
        notes.append((current[0], len(values), current[1]))
    return notes


def quantize_notes(raw: list[tuple[float, float, int]]) -> list[tuple[int, int, int]]:
    """Notes ``(start, end, pitch)`` in quarter notes to one monophonic line on the sixteenth grid.

    Onsets round to the nearest step; of notes starting on one step the highest is kept (the
    top of a chord, the upper voice); a note ends where the next one starts if it has not
    ended before; pitches outside the piano move by octaves into it.
    """
    by_step: dict[int, tuple[int, int]] = {}
    for start, end, pitch in raw:
        s = round(start * STEPS_PER_QUARTER)
        e = max(round(end * STEPS_PER_QUARTER), s + 1)
        while pitch < MIN_PITCH:
            pitch += 12
        while pitch > MAX_PITCH:
            pitch -= 12
        if s not in by_step or pitch > by_step[s][1]:
            by_step[s] = (e, pitch)
    starts = sorted(by_step)
    notes = []
    for i, s in enumerate(starts):
        e, pitch = by_step[s]
        if i + 1 < len(starts):
            e = min(e, starts[i + 1])
        notes.append((s, e, pitch))
    return notes


# -- parsing with music21 -----------------------------------------------------------------------

def _music21():
    try:
        import music21
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return music21


@dataclass
class Piece:
    """One parsed melody: its classes over the whole piece and where its bars start."""

    name: str
    events: np.ndarray  # (L,) int8 classes
    sounding: np.ndarray  # (L,) int8 pitch sounding at each step, -1 in silence
    bars: np.ndarray  # (K,) int32 steps at which bars start


def _top_line(score):
    """The part of ``score`` whose notes lie highest on average (the soprano, the tune), or None."""
    parts = list(getattr(score, "parts", [])) or [score]
    best, best_height = None, -1.0
    for part in parts:
        pitches = [max(p.midi for p in n.pitches) for n in part.recurse().notes if n.pitches]
        if pitches and sum(pitches) / len(pitches) > best_height:
            best, best_height = part, sum(pitches) / len(pitches)
    return best


def piece_from_score(score, name: str) -> Piece | None:
    """The top line of a music21 score as a :class:`Piece`; None when it holds no notes."""
    part = _top_line(score)
    if part is None:
        return None
    flat = part.stripTies().flatten()
    raw = []
    for n in flat.notes:
        if n.duration.isGrace or float(n.quarterLength) <= 0 or not n.pitches:
            continue  # grace notes take no time on the grid
        start = float(n.offset)
        raw.append((start, start + float(n.quarterLength), max(p.midi for p in n.pitches)))
    notes = quantize_notes(raw)
    if not notes:
        return None
    events, sounding = encode_notes(notes)
    measures = list(part.getElementsByClass("Measure"))
    bars = sorted({round(float(m.offset) * STEPS_PER_QUARTER) for m in measures})
    if not bars:  # no bar lines in the file (some MIDI): bars of 4/4 from the start
        bars = list(range(0, len(events), STEPS_PER_BAR))
    return Piece(name, events, sounding, np.asarray(bars, dtype=np.int32))


def parse_file(path: str | Path, *, name: str | None = None, four_parts: bool = False) -> list[Piece]:
    """Every piece in one music file (an ABC book holds many), top lines only.

    ``four_parts`` keeps only four-part scores (the chorales among the Bach files).  A file
    music21 cannot read raises DataError naming it.
    """
    music21 = _music21()
    path = Path(path)
    name = name or path.name
    try:
        # forceSource: read the file itself, never music21's pickled cache of it
        parsed = music21.converter.parse(str(path), forceSource=True)
    except Exception as err:  # noqa: BLE001 - music21 raises anything from a malformed file
        raise DataError(f"{path}: music21 cannot read it ({' '.join(str(err).split())[:160]})") from None
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    pieces = []
    for i, score in enumerate(scores):
        if four_parts and len(getattr(score, "parts", [])) != 4:
            continue
        title = getattr(score.metadata, "title", None) if score.metadata is not None else None
        label = f"{name}#{i + 1}" if len(scores) > 1 else name
        try:
            piece = piece_from_score(score, f"{label} {title}" if title else label)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - a score music21 parsed but cannot walk
            raise DataError(f"{path}: piece {i + 1} cannot be read ({' '.join(str(err).split())[:160]})") from None
        if piece is not None:
            pieces.append(piece)
    return pieces


def _parse_job(job: tuple[str, str, bool]) -> tuple[list[Piece], str | None]:
    """One file in a worker process: its pieces, or the reason it was skipped."""
    path, name, four_parts = job
    try:
        pieces = parse_file(path, name=name, four_parts=four_parts)
    except DataError as err:
        return [], str(err)
    if not pieces and not four_parts:  # a file of scores that are not chorales is left out, not bad
        return [], f"{path}: no notes in it"
    return pieces, None


# Parsing is spread over processes when there are this many files or more; below, starting
# the processes (each imports music21, about a second) costs more than it saves.
PARALLEL_FROM = 32


def parse_files(jobs: list[tuple[str, str, bool]], *, strict: bool = False,
                workers: int | None = None) -> tuple[list[Piece], list[str]]:
    """Parse ``(path, name, four_parts)`` jobs: (pieces in job order, reasons for skipped files).

    With ``strict`` the first unreadable file is a DataError.  A progress bar shows on a
    terminal: parsing the corpus takes minutes, once, deep inside whichever command first loads
    the dataset, so the bar is drawn here rather than threaded through every command.
    """
    import multiprocessing

    from tqdm import tqdm

    if workers is None:
        # fork (Linux): the workers run music21 alone, pure Python, so a parent holding torch's
        # threads is no hazard to them; spawn would run the caller's script again in every worker.
        # Elsewhere one process parses.
        workers = min(os.cpu_count() or 1, 4) if sys.platform == "linux" else 1
    results: list[tuple[list[Piece], str | None]] = [([], None)] * len(jobs)
    bar = tqdm(total=len(jobs), desc="parsing melodies (once; then cached)", unit="file", leave=False,
               file=sys.stderr, disable=None)
    try:
        if workers > 1 and len(jobs) >= PARALLEL_FROM:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with warnings.catch_warnings(), \
                    ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12's note on forking a threaded process
                # the largest files first (an ABC book of 200 tunes takes a worker 15 s), so none is left for last
                order = sorted(range(len(jobs)), key=lambda i: -os.path.getsize(jobs[i][0]))
                futures = {pool.submit(_parse_job, jobs[i]): i for i in order}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
                    if strict and results[futures[future]][1]:
                        for other in futures:
                            other.cancel()
                        break
        else:
            for i, job in enumerate(jobs):
                results[i] = _parse_job(job)
                bar.update(1)
                if strict and results[i][1]:
                    break
    finally:
        bar.close()
    skipped = [reason for _, reason in results if reason]
    if strict and skipped:
        raise DataError(f"{skipped[0]} (strict: remove the file, or load without --strict to skip it)")
    return [piece for pieces, _ in results for piece in pieces], skipped


# -- the cache ----------------------------------------------------------------------------------

def _pack(pieces: list[Piece], skipped: list[str]) -> bytes:
    """Pieces as one .npz of plain arrays (no pickles: the cache never runs code when read)."""
    lengths = np.array([len(p.events) for p in pieces], dtype=np.int64)
    bar_counts = np.array([len(p.bars) for p in pieces], dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        version=np.array(ENCODING_VERSION),
        names=np.array([p.name for p in pieces], dtype=np.str_),
        lengths=lengths,
        events=np.concatenate([p.events for p in pieces]) if pieces else np.zeros(0, np.int8),
        sounding=np.concatenate([p.sounding for p in pieces]) if pieces else np.zeros(0, np.int8),
        bar_counts=bar_counts,
        bars=np.concatenate([p.bars for p in pieces]) if pieces else np.zeros(0, np.int32),
        skipped=np.array(skipped, dtype=np.str_),
    )
    return buf.getvalue()


def _unpack(data: bytes, source: str) -> tuple[list[Piece], list[str]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["version"]) != ENCODING_VERSION:
                raise ValueError("written by another version of aekit")
            names, lengths, bar_counts = z["names"], z["lengths"], z["bar_counts"]
            events, sounding, bars = z["events"], z["sounding"], z["bars"]
            skipped = [str(s) for s in z["skipped"]]
    except Exception as err:  # noqa: BLE001 - any unreadable cache is parsed again
        raise DataError(f"{source}: unreadable cache ({err})") from None
    if lengths.sum() != len(events) or bar_counts.sum() != len(bars) or len(names) != len(lengths):
        raise DataError(f"{source}: inconsistent cache")
    ends, bar_ends = np.cumsum(lengths), np.cumsum(bar_counts)
    pieces = [Piece(str(names[i]), events[ends[i] - lengths[i]:ends[i]], sounding[ends[i] - lengths[i]:ends[i]],
                    bars[bar_ends[i] - bar_counts[i]:bar_ends[i]]) for i in range(len(names))]
    return pieces, skipped


def cached_pieces(key: str, jobs: list[tuple[str, str, bool]], *, strict: bool = False) -> list[Piece]:
    """The pieces of ``jobs``, parsed once and then read from ``<data cache>/melodies/<key>.npz``.

    Skipped files are remembered with the pieces, so a later load reports them (and refuses
    them under ``strict``) without parsing again.
    """
    path = cache_dir("melodies") / f"{key}.npz"
    if path.is_file():
        try:
            pieces, skipped = _unpack(path.read_bytes(), str(path))
        except DataError as err:
            log.warning("%s; parsing again", err)
        else:
            _report_skipped(skipped, strict)
            log.info("melodies: %d pieces from the cache %s", len(pieces), path)
            return pieces
    pieces, skipped = parse_files(jobs, strict=strict)
    _report_skipped(skipped, strict)
    try:
        atomic_write_bytes(path, _pack(pieces, skipped))
    except OSError as err:  # a read-only cache: the data is still good for this run
        log.warning("could not cache the parsed melodies in %s (%s); they will be parsed again next time", path,
                    err.strerror)
    return pieces


def _report_skipped(skipped: list[str], strict: bool) -> None:
    if not skipped:
        return
    if strict:
        raise DataError(f"{skipped[0]} (strict: remove the file, or load without --strict to skip it)")
    log.warning("skipped %d file(s) that hold no readable melody, e.g. %s", len(skipped), skipped[0])


def corpus_jobs(collections: tuple[str, ...] = FREE_COLLECTIONS) -> list[tuple[str, str, bool]]:
    """The files of music21's corpus ``collections`` as parse jobs, in a fixed order."""
    music21 = _music21()
    root = Path(music21.__file__).parent / "corpus"
    jobs = []
    for collection in collections:
        folder = root / collection
        if not folder.is_dir():
            raise DataError(f"music21's corpus has no {collection} folder at {folder}; reinstall music21 "
                            '(pip install --force-reinstall "aekit[music]")')
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in MUSIC_SUFFIXES or path.name.startswith("."):
                continue
            if collection == "bach" and path.suffix.lower() == ".krn":
                continue  # see LEFT_OUT
            jobs.append((str(path), f"{collection}/{path.relative_to(folder)}", collection == "bach"))
    return jobs


def folder_jobs(root: Path) -> list[tuple[str, str, bool]]:
    """The music files under ``root`` (sorted; hidden ones left out) as parse jobs."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass melodies:PATH with PATH a folder of MIDI, MusicXML or ABC files")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MUSIC_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"{root} holds no music files ({', '.join(MUSIC_SUFFIXES)}); put MIDI, MusicXML or ABC "
                        "files in it")
    return [(str(p), str(p.relative_to(root)), False) for p in files]


def _cache_key(prefix: str, jobs: list[tuple[str, str, bool]], extra: str = "") -> str:
    """A name for the parsed form of ``jobs``: changes whenever a file, its size or its time does."""
    h = hashlib.sha256(f"v{ENCODING_VERSION}|{extra}".encode())
    for path, name, four_parts in jobs:
        st = os.stat(path)
        h.update(f"{name}|{four_parts}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"{prefix}-{h.hexdigest()[:16]}"


# -- windows, the split, the set -----------------------------------------------------------------

def piece_windows(piece: Piece, steps: int) -> np.ndarray:
    """Windows of ``steps`` starting at the piece's bar lines.  (K, steps) int8

    A window that starts while a note sounds begins by striking it (a hold in the first step
    would read as silence); windows with too few notes or too much silence are dropped.
    """
    out = []
    bars = max(1, steps // STEPS_PER_BAR)
    for start in piece.bars:
        start = int(start)
        if start < 0 or start + steps > len(piece.events):
            continue
        window = piece.events[start:start + steps].copy()
        sounding = piece.sounding[start:start + steps]
        if window[0] == HOLD and sounding[0] >= 0:
            window[0] = note_class(int(sounding[0]))
        if (window >= FIRST_NOTE).sum() < MIN_NOTES_PER_BAR * bars or (sounding >= 0).mean() < MIN_SOUNDING:
            continue
        out.append(window)
    return np.stack(out) if out else np.zeros((0, steps), dtype=np.int8)


def tune_fingerprint(piece: Piece, steps: int = 4 * STEPS_PER_BAR) -> bytes:
    """The opening of a piece, rhythm and intervals only: the same tune in another key (or from
    another collection) has the same fingerprint, so the split keeps its copies together."""
    head = piece.events[:steps].astype(np.int16)
    first = next((int(v) for v in head if v >= FIRST_NOTE), FIRST_NOTE)
    return np.where(head >= FIRST_NOTE, head - first + 200, head).tobytes()


@dataclass
class MelodySet:
    """Melody windows ready for a model: ``melodies`` (N, T) int64 classes in 0..89.

    ``pieces`` (N,) says which piece (an index into ``names``) each window comes from.
    ``transpose`` > 0 makes :meth:`draw` move each training batch by a random number of
    semitones up to that many, within the piano's range (MusicVAE's augmentation).
    """

    melodies: torch.Tensor
    pieces: torch.Tensor
    names: list[str] = field(default_factory=list)
    transpose: int = 0
    labels = None  # melodies have no classes

    def __post_init__(self) -> None:
        m = self.melodies
        if not isinstance(m, torch.Tensor) or m.ndim != 2 or m.dtype != torch.int64:
            raise DataError("MelodySet.melodies must be an int64 tensor (N, steps)")
        if m.numel() and (int(m.min()) < 0 or int(m.max()) >= NUM_CLASSES):
            raise DataError(f"melody classes must lie in 0..{NUM_CLASSES - 1}")

    def __len__(self) -> int:
        return self.melodies.shape[0]

    @property
    def items(self) -> torch.Tensor:
        """What the trainer slices batches from: the melodies."""
        return self.melodies

    @property
    def item_shape(self) -> tuple[int]:
        return (int(self.melodies.shape[1]),)

    def draw(self, batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A training batch (B, T) as the model should see it: transposed at random.  (B, T)"""
        if not self.transpose:
            return batch
        return transpose_randomly(batch, self.transpose, generator)


def transpose_randomly(batch: torch.Tensor, semitones: int, generator: torch.Generator | None) -> torch.Tensor:
    """Each melody of ``batch`` (B, T) moved by its own draw from -semitones..semitones, the draw
    clipped so that every note stays on the piano.  (B, T)"""
    notes = batch >= FIRST_NOTE
    big = NUM_CLASSES
    lowest = torch.where(notes, batch, torch.full_like(batch, big)).amin(dim=1)  # (B,)
    highest = torch.where(notes, batch, torch.full_like(batch, -1)).amax(dim=1)
    device = batch.device if generator is None else generator.device
    shift = torch.randint(-semitones, semitones + 1, (batch.shape[0],), generator=generator, device=device)
    shift = shift.to(batch.device)
    shift = torch.maximum(torch.minimum(shift, (NUM_CLASSES - 1) - highest), FIRST_NOTE - lowest)
    shift = torch.where(notes.any(dim=1), shift, torch.zeros_like(shift))
    return torch.where(notes, batch + shift.unsqueeze(1), batch)


def parse_name(name: str) -> tuple[int, Path | None]:
    """``melodies[-16bar][:PATH]`` -> (bars per window, folder or None for the corpus)."""
    base, sep, path = name.partition(":")
    if base not in DATASET_BARS:
        raise ConfigError(f"unknown melody dataset {name!r}; use melodies, melodies-16bar or melodies:PATH")
    if sep and not path.strip():
        raise ConfigError(f"{name}: name a folder after the colon (melodies:PATH)")
    return DATASET_BARS[base], (Path(path).expanduser() if sep else None)


def is_melody_dataset(name: str) -> bool:
    return name.partition(":")[0] in DATASET_BARS


def load_pieces(name: str, *, strict: bool = False) -> list[Piece]:
    """The parsed pieces behind dataset ``name`` (from the cache after the first time)."""
    _, folder = parse_name(name)
    if folder is None:
        jobs = corpus_jobs()
        key = _cache_key("corpus", jobs, extra=_music21().__version__)
    else:
        jobs = folder_jobs(folder)
        key = _cache_key("folder", jobs, extra=str(folder.resolve()))
    pieces = cached_pieces(key, jobs, strict=strict)
    if not pieces:
        raise DataError(f"{name}: no melody could be read from {folder or 'the corpus'}")
    return pieces


TEST_FRACTION = 0.1


def load_melodies(name: str, *, seed: int = 0, val_fraction: float = 0.1, strict: bool = False) -> DatasetSplits:
    """Dataset ``name`` (``melodies``, ``melodies-16bar``, or either with ``:PATH``) as train /
    val / test :class:`MelodySet` s, split by piece with ``seed``; only training is transposed."""
    bars, _ = parse_name(name)
    steps = bars * STEPS_PER_BAR
    pieces = load_pieces(name, strict=strict)
    windows = [piece_windows(p, steps) for p in pieces]
    # the same tune twice (another key, another book) is one unit of the split
    groups: dict[bytes, int] = {}
    group_of = np.array([groups.setdefault(tune_fingerprint(p), len(groups)) for p in pieces])
    usable = sorted({int(g) for g, w in zip(group_of, windows) if len(w)})
    if len(usable) < 3:
        raise DataError(f"{name}: {len(usable)} piece(s) are long enough for {bars}-bar windows; at least 3 are "
                        "needed (one each for training, validation and testing)")
    train_g, val_g, test_g = split_indices(len(usable), val_fraction=val_fraction, test_fraction=TEST_FRACTION,
                                           seed=seed)
    names = [p.name for p in pieces]

    def make(group_idx: np.ndarray, transpose: int) -> MelodySet:
        chosen = {usable[i] for i in group_idx}
        picked = [i for i in range(len(pieces)) if int(group_of[i]) in chosen and len(windows[i])]
        melodies = np.concatenate([windows[i] for i in picked]) if picked else np.zeros((0, steps), np.int8)
        owner = np.concatenate([np.full(len(windows[i]), i) for i in picked]) if picked else np.zeros(0, np.int64)
        return MelodySet(torch.from_numpy(melodies.astype(np.int64)), torch.from_numpy(owner.astype(np.int64)),
                         names, transpose)

    train, val, test = make(np.sort(train_g), TRANSPOSE), make(np.sort(val_g), 0), make(np.sort(test_g), 0)
    log.info("%s: %d pieces, %d / %d / %d windows of %d steps (train / val / test)", name, len(usable),
             len(train), len(val), len(test), steps)
    return DatasetSplits(name=name, train=train, val=val, test=test, classes=[])


# -- reading one file, writing MIDI -------------------------------------------------------------

def read_melody(path: str | Path, steps: int) -> np.ndarray:
    """The first ``steps`` of the top line of a music file (MIDI, MusicXML, ABC), as classes.
    A shorter melody is padded with rests.  (steps,) int64"""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    pieces = parse_file(path)
    if not pieces:
        raise DataError(f"{path}: holds no notes")
    piece = pieces[0]
    first = int(np.argmax(piece.events >= FIRST_NOTE))  # from its first note: a leading rest says nothing
    window = piece.events[first:first + steps].astype(np.int64)
    if len(window) < steps:
        pad = np.zeros(steps - len(window), dtype=np.int64)
        if len(window) and piece.sounding[first + len(window) - 1] >= 0:
            pad[0] = NOTE_OFF  # the last note ends with the piece
        window = np.concatenate([window, pad])
    return window


TEMPO_BPM = 120  # MusicVAE's tempo for its samples
TICKS_PER_BEAT = 480


def melody_midi_bytes(events, *, tempo_bpm: float = TEMPO_BPM, program: int = 0) -> bytes:
    """A one-track standard MIDI file of melody classes (T,): notes at velocity 80, piano by default."""
    try:
        import mido
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    ticks_per_step = TICKS_PER_BEAT // STEPS_PER_QUARTER
    mid = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    timed = []
    for start, end, pitch in decode_events(events):
        timed += [(start * ticks_per_step, 1, pitch), (end * ticks_per_step, 0, pitch)]  # offs before ons
    now = 0
    for tick, on, pitch in sorted(timed):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=80 if on else 0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
