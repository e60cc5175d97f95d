"""Melodies as data: the 90-class encoding, parsing, windows, the split by piece, the cache, bad files."""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest
import torch
from _melody_files import abc_tune, write_tunes

from aekit.data import load_dataset
from aekit.data import melodies as md
from aekit.errors import ConfigError, DataError
from aekit.eval import music as em
from aekit.models import music_vae

mido = pytest.importorskip("mido")
pytest.importorskip("music21")
pytestmark = pytest.mark.usefixtures("data_cache")  # conftest.py: parsed melodies in a temporary cache


# A melody with everything the encoding has to say: a rest at the start, repeated notes, a held
# note, a rest in the middle, the highest and lowest piano keys.
NOTES = [(2, 6, 60), (6, 7, 60), (7, 12, 67), (14, 15, 21), (15, 16, 108), (16, 24, 62), (26, 32, 71)]


def test_the_encoding_is_musicvaes_and_every_layer_agrees():
    assert md.NUM_CLASSES == em.NUM_CLASSES == music_vae.NUM_CLASSES == 90
    assert (md.HOLD, md.NOTE_OFF, md.FIRST_NOTE) == (em.HOLD, em.NOTE_OFF, em.FIRST_NOTE) == (0, 1, 2)
    assert md.MIN_PITCH == em.MIN_PITCH == 21 and md.class_pitch(89) == 108
    events, sounding = md.encode_notes([(0, 4, 60), (6, 8, 62)])
    # a quarter C4, an eighth rest, an eighth D4: note on, holds, note off, hold, note on, hold
    assert events.tolist() == [41, 0, 0, 0, 1, 0, 43, 0]
    assert sounding.tolist() == [60, 60, 60, 60, -1, -1, 62, 62]


def test_notes_to_classes_and_back_are_the_same_notes():
    events, _ = md.encode_notes(NOTES, 32)
    assert md.decode_events(events) == NOTES
    assert md.decode_events(torch.from_numpy(events.astype(np.int64))) == NOTES  # tensors too


def test_melody_to_classes_to_midi_to_parse_gives_the_same_notes(tmp_path):
    events, _ = md.encode_notes(NOTES, 32)
    data = md.melody_midi_bytes(events)
    path = tmp_path / "m.mid"
    path.write_bytes(data)
    # mido reads it back: the notes at 120 ticks a sixteenth
    mid = mido.MidiFile(path)
    now, ons = 0, []
    for msg in mid.tracks[0]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            ons.append((now // 120, msg.note))
    assert ons == [(s, p) for s, _, p in NOTES]
    # music21 parses it into the same classes
    (piece,) = md.parse_file(path)
    first = 2  # the file starts with a rest, which music21 keeps as the offset of the first note
    assert md.decode_events(piece.events) == [(s, e, p) for s, e, p in NOTES if s >= first]
    assert piece.events[:32].tolist() == events[:len(piece.events)].tolist()


def test_quantising_keeps_one_line_the_top_of_chords_and_the_piano():
    raw = [(0.0, 1.0, 60), (0.0, 1.0, 64), (0.0, 1.0, 67),  # a chord: its top note
           (1.0, 3.0, 62), (2.0, 2.5, 65),  # an overlap: the first note ends where the next starts
           (2.51, 2.75, 12), (3.0, 3.1, 120)]  # below and above the piano: moved by octaves
    notes = md.quantize_notes(raw)
    assert notes == [(0, 4, 67), (4, 8, 62), (8, 10, 65), (10, 11, 24), (12, 13, 108)]


def test_windows_start_on_bar_lines_and_strike_a_note_held_into_them():
    # a half note across the bar line of bar 2, then quarter notes
    notes = [(0, 4, 60), (4, 8, 62), (8, 12, 64), (12, 20, 65), (20, 24, 67), (24, 28, 69), (28, 32, 71),
             (32, 36, 72), (36, 40, 71), (40, 44, 69), (44, 48, 67)]
    events, sounding = md.encode_notes(notes)
    piece = md.Piece("p", events, sounding, np.array([0, 16, 32], dtype=np.int32))
    windows = md.piece_windows(piece, 32)
    assert windows.shape == (2, 32)  # bars 1-2 and 2-3; bar 3 is too short to start a window
    assert windows[0].tolist() == events[:32].tolist()
    assert windows[1][0] == md.note_class(65)  # F4 sounds from step 12: struck at the window's start
    assert windows[1][1:].tolist() == events[17:48].tolist()
    silent = md.Piece("s", *md.encode_notes([(0, 1, 60), (40, 41, 60)], 48), np.array([0, 16], dtype=np.int32))
    assert len(md.piece_windows(silent, 32)) == 0  # mostly silence: dropped


def test_a_folder_loads_split_by_piece_deterministically(tmp_path):
    write_tunes(tmp_path / "tunes", 12)
    splits = load_dataset(f"melodies:{tmp_path / 'tunes'}", seed=3)
    train, val, test = splits.train, splits.val, splits.test
    assert splits.in_shape == (32,) and splits.classes == []
    assert train.melodies.dtype == torch.int64 and train.melodies.shape[1] == 32
    assert len(train) > 0 and len(val) > 0 and len(test) > 0
    owners = [set(s.pieces.tolist()) for s in (train, val, test)]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])  # no piece in two splits
    assert len(set().union(*owners)) == 12
    # 8-bar tunes of 4/4 from a bar line: 7 windows of 2 bars each
    assert len(train) + len(val) + len(test) == 12 * 7
    again = load_dataset(f"melodies:{tmp_path / 'tunes'}", seed=3)
    assert torch.equal(again.test.melodies, test.melodies)
    other = load_dataset(f"melodies:{tmp_path / 'tunes'}", seed=4)
    assert set(other.test.pieces.tolist()) != owners[2]
    assert train.transpose == md.TRANSPOSE and val.transpose == test.transpose == 0  # only training is augmented


def test_sixteen_bar_windows_come_from_the_same_pieces(tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    for i in range(4):
        (folder / f"t{i}.abc").write_text(abc_tune(i, bars=18), encoding="utf-8")
    splits = load_dataset(f"melodies-16bar:{folder}")
    assert splits.in_shape == (256,)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 4 * 3  # starts at bars 1, 2 and 3


def test_the_same_tune_in_another_key_stays_in_one_split(tmp_path):
    folder = tmp_path / "copies"
    write_tunes(folder, 9)
    (original,) = md.parse_file(folder / "tune04.abc")
    up = np.where(original.events >= md.FIRST_NOTE, original.events + 2, original.events)  # a tone up
    (folder / "copy.mid").write_bytes(md.melody_midi_bytes(up))
    pieces = md.load_pieces(f"melodies:{folder}")
    by_name = {p.name.split()[0]: p for p in pieces}
    assert md.tune_fingerprint(by_name["copy.mid"]) == md.tune_fingerprint(by_name["tune04.abc"])
    for seed in range(4):
        splits = load_dataset(f"melodies:{folder}", seed=seed)
        names = [{splits.train.names[i].split()[0] for i in s.pieces.tolist()} for s in (splits.train, splits.val,
                                                                                          splits.test)]
        assert sum("copy.mid" in n and "tune04.abc" in n for n in names) == 1


def test_the_second_load_reads_the_cache_and_a_changed_file_is_parsed_again(tmp_path, monkeypatch):
    paths = write_tunes(tmp_path / "tunes", 6)
    name = f"melodies:{tmp_path / 'tunes'}"
    first = md.load_pieces(name)
    cached = list((md.cache_dir("melodies")).glob("folder-*.npz"))
    assert cached, "the parsed pieces were not cached"

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(md, "parse_files", no_parsing)
    second = md.load_pieces(name)
    assert [p.name for p in second] == [p.name for p in first]
    assert all(np.array_equal(a.events, b.events) and np.array_equal(a.bars, b.bars) for a, b in zip(first, second))
    paths[0].write_text(abc_tune(99), encoding="utf-8")  # new content: a new cache entry
    with pytest.raises(AssertionError, match="parsed again"):
        md.load_pieces(name)


def test_a_corrupt_cache_is_parsed_again(tmp_path, caplog):
    write_tunes(tmp_path / "tunes", 3)
    name = f"melodies:{tmp_path / 'tunes'}"
    md.load_pieces(name)
    for path in md.cache_dir("melodies").glob("folder-*.npz"):
        path.write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="aekit.data.melodies"):
        assert len(md.load_pieces(name)) == 3
    assert "unreadable cache" in caplog.text


def test_bad_files_are_skipped_and_counted_or_refused_with_strict(tmp_path, caplog):
    folder = tmp_path / "mixed"
    write_tunes(folder, 4)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "empty.abc").write_text("X:1\nT:no notes\nK:C\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="aekit.data.melodies"):
        pieces = md.load_pieces(f"melodies:{folder}")
    assert len(pieces) == 4
    assert "skipped 2 file(s)" in caplog.text
    with pytest.raises(DataError, match=r"broken\.mid.*strict") as raised:
        md.load_pieces(f"melodies:{folder}", strict=True)  # also from the cache: the skips are remembered
    assert "\n" not in str(raised.value)
    (folder / "broken.mid").unlink()
    (folder / "empty.abc").unlink()
    assert len(md.load_pieces(f"melodies:{folder}", strict=True)) == 4


def test_folders_without_music_and_too_few_pieces_are_clear_errors(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="holds no music files"):
        load_dataset(f"melodies:{tmp_path / 'nothing'}")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(f"melodies:{tmp_path / 'missing'}")
    write_tunes(tmp_path / "two", 2)
    with pytest.raises(DataError, match="at least 3 are needed"):
        load_dataset(f"melodies:{tmp_path / 'two'}")
    with pytest.raises(ConfigError, match="melodies:PATH"):
        load_dataset("melodies:")
    with pytest.raises(ConfigError, match="apply to images"):
        load_dataset(f"melodies:{tmp_path / 'two'}", image_size=28)


def test_a_missing_music21_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "music21", None)  # import music21 now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "aekit\[music\]"'):
        md.parse_file(tmp_path / "x.abc")
    monkeypatch.setitem(sys.modules, "mido", None)
    with pytest.raises(ConfigError, match=r'pip install "aekit\[music\]"'):
        md.melody_midi_bytes(np.zeros(4, dtype=np.int64))


def test_the_corpus_default_leaves_out_what_is_not_free_to_use():
    jobs = md.corpus_jobs()
    collections = {name.split("/")[0] for _, name, _ in jobs}
    assert collections == set(md.FREE_COLLECTIONS)
    assert "essenFolksong" not in collections
    assert not any(name.endswith(".krn") for _, name, _ in jobs)
    assert all(four for _, name, four in jobs if name.startswith("bach/"))  # chorales only
    assert len(jobs) > 1000


def test_one_bach_chorale_gives_its_soprano():
    job = next(j for j in md.corpus_jobs(("bach",)) if j[1] == "bach/bwv269.mxl")
    (piece,) = md.parse_file(job[0], name=job[1], four_parts=True)
    notes = md.decode_events(piece.events)
    pitches = [p for _, _, p in notes]
    assert 60 <= min(pitches) and max(pitches) <= 81  # a soprano's range
    assert piece.bars[0] == 0 and len(piece.bars) > 8


def test_training_batches_are_transposed_within_the_piano():
    low = torch.tensor(md.encode_notes([(0, 4, 22), (4, 8, 30), (8, 32, 26)], 32)[0].astype(np.int64))  # A#0 lowest
    high = torch.tensor(md.encode_notes([(0, 4, 100), (4, 32, 106)], 32)[0].astype(np.int64))  # A#7 highest
    batch = torch.stack([low] * 200 + [high] * 200)
    gen = torch.Generator().manual_seed(0)
    moved = md.transpose_randomly(batch, 5, gen)
    assert int(moved.min()) >= 0 and int(moved.max()) < md.NUM_CLASSES
    shifts = (moved - batch).amax(dim=1) + (moved - batch).amin(dim=1)  # the one non-zero shift of each melody
    assert ((moved - batch) == shifts[:, None] * (batch >= md.FIRST_NOTE)).all()  # one shift per melody, notes only
    assert set(shifts[:200].tolist()) <= set(range(-1, 6)) and len(set(shifts[:200].tolist())) >= 5
    assert set(shifts[200:].tolist()) <= set(range(-5, 3)) and len(set(shifts[200:].tolist())) >= 5
    assert torch.equal(md.transpose_randomly(batch, 5, torch.Generator().manual_seed(0)), moved)  # seeded
    rests = torch.zeros(2, 32, dtype=torch.long)
    assert torch.equal(md.transpose_randomly(rests, 5, gen), rests)


def test_accuracies_baselines_and_statistics_are_what_they_say():
    target = torch.tensor([[41, 0, 0, 0, 43, 0, 1, 0]])
    predicted = torch.tensor([[41, 0, 0, 0, 44, 0, 1, 1]])
    counts = em.accuracy_counts(predicted, target)
    assert counts.tolist() == [6.0, 8.0, 1.0, 2.0]
    assert em.accuracies(counts) == {"accuracy": 0.75, "accuracy_note_on": 0.5}
    assert em.repeat_last_note(target).tolist() == [[41, 0, 0, 0, 0, 0, 0, 0]]
    chain = em.MarkovChain.fit(torch.cat([target, target]), alpha=0.0 + 1e-9)
    # log p = log p(41 first) + log p(0|41) + 2 log p(0|0) + log p(43|0) + log p(0|43) + log p(1|0) + log p(0|1)
    # after a hold, 4 transitions: 0->0 twice, 0->43 and 0->1; every other class has one successor
    expected = 2 * np.log(2 / 4) + np.log(1 / 4) + np.log(1 / 4)
    assert float(chain.log_prob(target)[0]) == pytest.approx(expected, abs=1e-6)
    assert chain.most_likely_next(target)[0, 1:].tolist() == [0, 0, 0, 0, 0, 0, 0]
    drawn = chain.sample(torch.tensor([41, 41]), 8, torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 8) and (drawn[:, 0] == 41).all()
    scale = torch.tensor([[md.note_class(p) for p in (60, 62, 64, 65, 67, 69, 71, 72)]])  # C major
    chromatic = torch.tensor([[md.note_class(p) for p in range(60, 72)]])
    reference = em.pitch_class_histogram(scale)
    stats = em.music_statistics(scale, reference)
    assert stats["in_key"] == 1.0 and stats["pitch_class_distance"] == 0.0 and stats["pitch_range"] == 12
    assert stats["notes_per_bar"] == 16.0 and stats["silent"] == 0.0
    assert em.music_statistics(chromatic, reference)["in_key"] == pytest.approx(7 / 12)
    roll = em.piano_roll(target, 59, 63)
    assert roll.shape == (1, 5, 8) and roll[0, 1].tolist() == [2, 1, 1, 1, 0, 0, 0, 0]  # C4 struck, held
    assert roll[0, 3].tolist() == [0, 0, 0, 0, 2, 1, 0, 0]  # D4 until the note off


def test_midi_of_a_melody_is_a_valid_file_mido_reads(tmp_path):
    events, _ = md.encode_notes([(0, 2, 60), (2, 4, 60), (8, 16, 67)], 16)
    mid = mido.MidiFile(file=io.BytesIO(md.melody_midi_bytes(events)))
    assert mid.ticks_per_beat == md.TICKS_PER_BEAT and abs(mid.length - 16 * 0.125) < 1e-6
    messages = [m for m in mid.tracks[0] if m.type in ("note_on", "note_off")]
    assert [(m.type, m.note) for m in messages] == [("note_on", 60), ("note_off", 60), ("note_on", 60),
                                                    ("note_off", 60), ("note_on", 67), ("note_off", 67)]
