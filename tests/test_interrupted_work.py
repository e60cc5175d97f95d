"""Stopped and resumed work: SIGTERM saves like Ctrl-C, one trainer per run folder, --resume
--epochs extends a run, and options that would change a resumed run are refused by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from aekit.cli import main
from aekit.models.dense_ae import DenseAE
from aekit.run import list_checkpoints
from aekit.run.lock import LOCK_NAME, RunLock

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = ["--model", "dense-ae", "--image-size", "14", "--batch-size", "128", "--no-progress",
         "--set", "model.hidden=16", "--set", "model.latent_dim=3"]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (load_file(str(p / "model.safetensors")) for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def epochs_in(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def without_timing(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    assert cli("train", *SMALL, "--epochs", "2", "--out", full).exit_code == 0
    original, calls = DenseAE.training_step, {"n": 0}

    def step_then_sigterm(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 40:  # inside the second epoch (32 steps each): what a scheduler sends
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DenseAE, "training_step", step_then_sigterm)
    result = cli("train", *SMALL, "--epochs", "2", "--out", stopped)
    assert result.exit_code == 143, result.output  # 128 + SIGTERM, as a shell reports it
    assert f"continue with: aekit train --resume {stopped}" in result.output
    assert "Traceback" not in result.output
    assert list_checkpoints(stopped)[-1].name == "ckpt-00001-000000040"  # saved at the step it stopped on
    monkeypatch.setattr(DenseAE, "training_step", original)
    assert cli("train", "--resume", stopped, "--no-progress").exit_code == 0
    assert same_weights(full, stopped)
    assert without_timing(full) == without_timing(stopped)


def test_a_second_trainer_of_the_same_run_is_refused_and_a_killed_ones_lock_is_not_stale(tmp_path):
    run = tmp_path / "run"
    assert cli("train", *SMALL, "--epochs", "1", "--out", run).exit_code == 0
    hold = ("import sys, time; from aekit.run.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run / "metrics.jsonl").read_bytes()
        result = cli("train", "--resume", run, "--epochs", "2", "--no-progress")
        assert result.exit_code == 1
        assert result.output.strip() == f"Error: {run} is being trained by process {holder.pid}; wait for it to end " \
                                        "(or stop it) before training this run"
        assert (run / "metrics.jsonl").read_bytes() == before
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    assert (run / LOCK_NAME).exists()
    assert cli("train", "--resume", run, "--epochs", "2", "--no-progress").exit_code == 0
    assert epochs_in(run) == [1, 2]


def test_two_resumes_at_once_one_trains_and_the_other_is_refused(tmp_path):
    run = tmp_path / "run"
    assert cli("train", *SMALL, "--epochs", "1", "--out", run).exit_code == 0
    command = [sys.executable, "-m", "aekit", "train", "--resume", str(run), "--epochs", "4", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    statuses = sorted(status for status, _, _ in outcomes)
    assert statuses == [0, 1], outcomes
    refused = next(err for status, _, err in outcomes if status == 1)
    assert "is being trained by process" in refused and "Traceback" not in refused
    assert epochs_in(run) == [1, 2, 3, 4]  # each epoch once


def test_resume_with_more_epochs_extends_the_run_and_records_it(tmp_path):
    run, full = tmp_path / "run", tmp_path / "full"
    assert cli("train", *SMALL, "--epochs", "2", "--out", run).exit_code == 0
    result = cli("train", "--resume", run, "--epochs", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    assert epochs_in(run) == [1, 2, 3]
    # The third epoch follows the 3-epoch schedule: its learning rate is that schedule's, not the 2-epoch floor.
    assert cli("train", *SMALL, "--epochs", "3", "--out", full).exit_code == 0
    extended, planned = without_timing(run)[2], without_timing(full)[2]
    assert extended["lr"] == pytest.approx(planned["lr"])
    assert extended["lr"] > without_timing(run)[1]["lr"] * 0.1


@pytest.mark.parametrize(("flag", "value"), [("--lr", "0.1"), ("--batch-size", "32"), ("--seed", "3"),
                                             ("--dataset", "mnist"), ("--image-size", "28")])
def test_options_that_would_change_a_resumed_run_are_refused_by_name(flag, value, tmp_path):
    run = tmp_path / "run"
    assert cli("train", *SMALL, "--epochs", "1", "--out", run).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = cli("train", "--resume", run, flag, value)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {flag} cannot change when resuming {run} (the run keeps its own); drop it, or train a new run"]
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_an_empty_out_is_refused_rather_than_training_into_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("train", *SMALL, "--epochs", "1", "--out", "")
    assert result.exit_code == 2
    assert result.output.strip() == "Error: Invalid value for '--out': is empty; name a folder for the run " \
                                    "(see: aekit train --help)"
    assert list(tmp_path.iterdir()) == []


def test_the_lock_file_is_released_by_the_trainer(tmp_path):
    run = tmp_path / "run"
    assert cli("train", *SMALL, "--epochs", "1", "--out", run).exit_code == 0
    RunLock(run).acquire().release()  # free again once training has ended


def test_a_report_section_that_fails_is_one_line_and_the_report_is_still_written(make_run, tmp_path, monkeypatch,
                                                                                  caplog):
    import shutil

    from aekit.app import report

    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    (run / "report.html").unlink()

    def broken(ctx):
        raise RuntimeError("a figure that cannot be drawn\nwith a second line")

    sections = [(sid, heading, broken if sid == "manifold" else build, needs)
                for sid, heading, build, needs in report._SECTIONS]
    monkeypatch.setattr(report, "_SECTIONS", sections)
    with caplog.at_level("DEBUG", logger="aekit"):
        result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    shown = [r for r in caplog.records if r.levelname == "WARNING" and "could not be drawn" in r.getMessage()]
    assert len(shown) == 1 and shown[0].exc_info is None  # what a user sees: one line, no traceback
    assert "\n" not in shown[0].getMessage()
    assert "RuntimeError: a figure that cannot be drawn with a second line" in shown[0].getMessage()
    page = (run / "report.html").read_text()
    assert "This section could not be drawn" in page and "Reconstructions" in page
