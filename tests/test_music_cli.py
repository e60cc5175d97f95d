"""Melody runs through the command line: train, evaluate, sample, interpolate, report, errors."""

from __future__ import annotations

import json

import mido
import pytest
from _melody_files import TINY_MELODY_MODEL, melody_run, write_tunes
from click.testing import CliRunner

from aekit.cli import main
from aekit.data import melodies as md

pytest.importorskip("music21")
pytestmark = pytest.mark.usefixtures("data_cache")  # conftest.py: parsed melodies in a temporary cache


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_cache):
    return melody_run(tmp_path_factory)


def read_notes(path) -> list[tuple[int, int]]:
    """(onset in sixteenths, pitch) of every note in a MIDI file, read back with mido."""
    mid = mido.MidiFile(path)
    step = mid.ticks_per_beat // 4
    now, notes = 0, []
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            notes.append((now // step, msg.note))
    return notes


@pytest.mark.slow
def test_training_from_the_command_line_prints_the_melody_figures(tmp_path):
    folder = tmp_path / "tunes"
    write_tunes(folder, 10)
    settings = [arg for k, v in TINY_MELODY_MODEL.items() for arg in ("--set", f"model.{k}={v}")]
    result = cli("train", "--dataset", f"melodies:{folder}", "--epochs", "1", "--batch-size", "16", *settings,
                 "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    for text in ("accuracy, free-running", "accuracy, teacher-forced", "repeat the last note", "markov chain",
                 "NLL per step", "music statistics", "interpolation midpoints"):
        assert text in result.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["model"], cfg["data"]["task"], cfg["in_shape"]) == ("music-vae", "melody", [32])
    report = (tmp_path / "run" / "report.html").read_text()
    assert "piano rolls of test melodies and reconstructions" in report and "piano rolls of samples" in report
    assert "class=\"section-error\"" not in report


def test_evaluate_gives_accuracies_baselines_likelihood_and_music_statistics(run):
    result = cli("evaluate", run, "--json", "--nll", "--nll-samples", "8")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    for key in ("accuracy", "accuracy_note_on", "teacher_forced_accuracy", "teacher_forced_accuracy_note_on",
                "elbo", "kl", "nll", "nll_per_step", "nll_negative_elbo_per_step"):
        assert isinstance(metrics[key], float), key
    assert metrics["steps"] == 32 and metrics["nll_per_step"] == pytest.approx(metrics["nll"] / 32)
    repeat, markov = metrics["baselines"]["repeat the last note"], metrics["baselines"]["markov chain"]
    assert 0.4 < repeat["accuracy"] < 0.95  # the share of holds in these tunes
    assert markov["nll_per_step"] > 0 and 0 <= markov["accuracy_note_on"] <= 1
    assert repeat["melodies"] == markov["melodies"] == metrics["melodies"]
    music = metrics["music"]
    assert music["training windows"]["pitch_class_distance"] == 0.0
    assert music["training windows"]["in_key"] == 1.0  # the written tunes are all in C major
    for row in ("samples (temperature 1)", "interpolation midpoints", "markov chain samples"):
        assert 0 <= music[row]["pitch_class_distance"] <= 1 and 0 < music[row]["in_key"] <= 1
    table = cli("evaluate", run)
    assert table.exit_code == 0, table.output
    assert "baselines on the same data" in table.output and "this model" in table.output


def test_the_likelihood_is_compared_with_the_chain_on_the_same_melodies_paired(run):
    from aekit.app.evaluation import evenly_spread
    from aekit.run import Run
    from aekit.tasks.melody import fit_chain

    result = cli("evaluate", run, "--json", "--nll-samples", "4", "--nll-images", "5")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    splits = Run.open(run).splits()
    picked = splits.test.melodies[evenly_spread(len(splits.test.melodies), 5)]
    chain_nll = -float(fit_chain(splits).log_prob(picked).double().mean()) / 32
    assert metrics["markov_nll_per_step"] == pytest.approx(chain_nll)  # the five estimated melodies, not all
    assert metrics["markov_nll_per_step"] != pytest.approx(metrics["baselines"]["markov chain"]["nll_per_step"])
    # the mean of the paired differences is the difference of the means; positive: the model is better
    assert metrics["nll_gain_over_markov_per_step"] == pytest.approx(chain_nll - metrics["nll_per_step"])
    assert metrics["nll_gain_over_markov_se"] > 0
    table = cli("evaluate", run, "--nll-samples", "4", "--nll-images", "5")
    assert "gain over the chain per step (nats, paired by melody)" in table.output


def test_a_melody_runs_figures_are_per_melody_in_the_report_and_the_comparison(run):
    from aekit.app.compare import render_comparison
    from aekit.app.report import render_report

    stored = cli("evaluate", run, "--nll-samples", "4", "--nll-images", "5")
    assert stored.exit_code == 0, stored.output
    page = render_report(run)
    for text in ("ELBO (nats per melody)", "one posterior sample per melody", "nats per melody",
                 "5 test melodies of melodies:"):
        assert text in page, text
    assert "per image" not in page and "images of" not in page
    assert "ELBO (nats per melody)" in render_comparison([run])


def test_evaluate_labels_a_melody_runs_figures_per_melody(run):
    table = cli("evaluate", run, "--nll-samples", "4", "--nll-images", "5")
    assert table.exit_code == 0, table.output
    assert "ELBO (nats per melody)" in table.output and "NLL, importance-sampled (nats per melody)" in table.output
    assert "per image" not in table.output


def test_sample_writes_midi_files_mido_reads_and_a_piano_roll(run, tmp_path):
    out = tmp_path / "samples"
    result = cli("sample", run, "-n", "3", "-o", out, "--temperature", "0.5", "--seed", "2")
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.mid"))
    assert [f.name for f in files] == ["sample-01.mid", "sample-02.mid", "sample-03.mid"]
    for f in files:
        notes = read_notes(f)
        assert all(0 <= step < 32 and md.MIN_PITCH <= pitch <= md.MAX_PITCH for step, pitch in notes)
    assert (out / "pianoroll.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = cli("sample", run, "-n", "3", "-o", tmp_path / "again", "--temperature", "0.5", "--seed", "2")
    assert again.exit_code == 0
    assert [(tmp_path / "again" / f.name).read_bytes() for f in files] == [f.read_bytes() for f in files]  # seeded
    refused = cli("sample", run, "-n", "3", "-o", out)
    assert refused.exit_code == 1 and "already exists; pass --overwrite" in refused.output


def test_interpolate_between_files_and_between_test_melodies(run, tmp_path):
    import torch

    from aekit.run import Run

    a, b = write_tunes(tmp_path / "ends", 2, seed=5)
    result = cli("interpolate", run, a, b, "--steps", "5", "-o", tmp_path / "between")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "between").glob("step-*.mid"))
    assert len(files) == 5 and (tmp_path / "between" / "pianoroll.png").is_file()
    # the first step is the first file, encoded and decoded: what the model makes of it
    model = Run.open(run).model
    first = torch.from_numpy(md.read_melody(a, 32))[None]
    with torch.no_grad():
        decoded = model.reconstruct(first)[0]
    assert read_notes(files[0]) == [(s, p) for s, _, p in md.decode_events(decoded)]
    by_index = cli("interpolate", run, "--between", "0", "1", "--steps", "3", "--spherical", "-o", tmp_path / "test")
    assert by_index.exit_code == 0, by_index.output
    assert len(list((tmp_path / "test").glob("*.mid"))) == 3


def test_overwriting_with_fewer_steps_removes_only_the_earlier_step_files(run, tmp_path):
    out = tmp_path / "out"
    a, b = write_tunes(out, 2, seed=5)  # the two ends live in -o themselves, named as a user names files
    (out / "notes.txt").write_text("mine")
    (out / "step-99.mid.bak").write_text("mine too")
    first = cli("interpolate", run, a, b, "--steps", "10", "-o", out)
    assert first.exit_code == 0, first.output
    assert len(list(out.glob("step-*.mid"))) == 10
    refused = cli("interpolate", run, a, b, "--steps", "4", "-o", out)
    assert refused.exit_code == 1 and "already exists; pass --overwrite" in refused.output
    assert len(list(out.glob("step-*.mid"))) == 10  # a refused call removes nothing

    again = cli("interpolate", run, a, b, "--steps", "4", "-o", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert "removed 6 step files left by an earlier call (step-05.mid ... step-10.mid)" in again.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "pianoroll.png", "step-01.mid", "step-02.mid",
                                                     "step-03.mid", "step-04.mid", "step-99.mid.bak",
                                                     "tune00.abc", "tune01.abc"]


def test_an_input_named_like_a_step_file_is_never_removed(run, tmp_path):
    out = tmp_path / "out"
    assert cli("interpolate", run, "--between", "0", "1", "--steps", "6", "-o", out).exit_code == 0
    last = out / "step-06.mid"  # the user goes on from the last step, writing into the same folder
    (other,) = write_tunes(tmp_path / "other", 1)
    result = cli("interpolate", run, last, other, "--steps", "2", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("step-*.mid")) == ["step-01.mid", "step-02.mid", "step-06.mid"]


@pytest.mark.parametrize("args, message", [
    (["--between", "0", "99999"], "no test melody 99999"),
    ([], "give two melodies"),
    (["missing.mid", "other.mid"], "missing.mid: no such file"),
])
def test_interpolate_errors_are_one_line(run, tmp_path, args, message):
    result = cli("interpolate", run, *args, "-o", tmp_path / "out")
    assert result.exit_code == 1 and message in result.output
    assert result.output.count("\n") == 1


def test_image_runs_and_image_options_are_refused_clearly(run, make_run, tmp_path):
    image_run = make_run("dense-ae")
    result = cli("interpolate", image_run, "--between", "0", "1", "-o", tmp_path / "x")
    assert result.exit_code == 1 and "aekit plot RUN interpolate" in result.output
    result = cli("sample", run, "--label", "1", "-o", tmp_path / "y")
    assert result.exit_code == 1 and "--label is for conditional image models" in result.output
    result = cli("train", "--dataset", "melodies", "--model", "conv-vae", "--out", tmp_path / "z")
    assert result.exit_code == 1 and "conv-vae reads images, but --dataset melodies holds melodies" in result.output


@pytest.mark.slow
def test_a_folder_with_a_broken_file_is_skipped_or_refused_with_strict(tmp_path, caplog):
    folder = tmp_path / "tunes"
    write_tunes(folder, 8)
    (folder / "broken.mid").write_bytes(b"MThd not really")
    settings = [arg for k, v in TINY_MELODY_MODEL.items() for arg in ("--set", f"model.{k}={v}")]
    common = ["--dataset", f"melodies:{folder}", "--epochs", "1", "--batch-size", "16", *settings, "--no-progress"]
    strict = cli("train", *common, "--strict", "--out", tmp_path / "strict")
    assert strict.exit_code == 1
    assert "broken.mid" in strict.output and "strict" in strict.output and strict.output.count("\n") == 1
    with caplog.at_level("WARNING", logger="aekit.data.melodies"):  # the CLI prints warnings on stderr
        skipped = cli("train", *common, "--out", tmp_path / "lenient")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 file(s)" in caplog.text and "broken.mid" in caplog.text


def test_the_datasets_are_listed():
    result = cli("datasets")
    assert "melodies " in result.output and "melodies:PATH" in result.output and "melodies-16bar" in result.output


def test_plots_of_images_are_refused_and_codes_can_be_written(run, tmp_path):
    import numpy as np

    result = cli("plot", run, "scatter", "-o", tmp_path / "s.png")
    assert result.exit_code == 1 and "holds melodies" in result.output
    assert cli("plot", run, "curves", "-o", tmp_path / "c.png").exit_code == 0
    embedded = cli("embed", run, "-o", tmp_path / "codes.npz")
    assert embedded.exit_code == 0, embedded.output
    with np.load(tmp_path / "codes.npz") as z:
        assert z["codes"].shape[1] == TINY_MELODY_MODEL["latent_dim"] and "labels" not in z


@pytest.mark.slow
def test_a_stopped_melody_run_resumes_with_its_schedules(tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "tunes"
    write_tunes(folder, 8)
    settings = [arg for k, v in TINY_MELODY_MODEL.items() for arg in ("--set", f"model.{k}={v}")]
    out = tmp_path / "run"
    first = cli("train", "--dataset", f"melodies:{folder}", "--epochs", "2", "--batch-size", "8", *settings,
                "--stop-after-epoch", "1", "--out", out, "--no-progress")
    assert first.exit_code == 0, first.output
    steps_one = int(load_file(str(out / "model.safetensors"))["steps_trained"])
    resumed = cli("train", "--resume", out, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert int(load_file(str(out / "model.safetensors"))["steps_trained"]) == history[-1]["step"] == 2 * steps_one


def test_tables_after_the_scalars_use_the_labels_they_are_given(capsys):
    from aekit.cli import _print_metrics

    labels = {"elbo": "ELBO (nats per melody)", "nll_per_step": "NLL per step (nats, per melody)"}
    _print_metrics({"elbo": -3.0, "nll_per_step": 2.0,
                    "baselines": {"markov chain": {"nll_per_step": 2.1}}}, labels=labels)
    out = capsys.readouterr().out
    assert "NLL per step (nats, per melody)" in out and "markov chain" in out
