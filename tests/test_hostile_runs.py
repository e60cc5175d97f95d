"""Run folders as a hostile user leaves them: copied half-way, edited by hand, junk in the logs.

Each case damages a copy of a good run and runs the real CLI in a subprocess under a 2 GiB
address-space cap: the answer is one ``Error:`` line naming the file (exit status 1), or the
command works where it can be made to; never a traceback, never the memory cap, and no file
of the run changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MEMORY_CAP = 2 * 2**30


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def aekit(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "aekit", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, preexec_fn=cap_memory, timeout=300, check=False)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def edit_config(run: Path, change) -> None:
    raw = json.loads((run / "config.json").read_text())
    change(raw)
    (run / "config.json").write_text(json.dumps(raw))


def remove_weights(run: Path) -> None:
    (run / "model.safetensors").unlink()
    shutil.rmtree(run / "checkpoints")


def deeply_nested(run: Path) -> None:
    (run / "config.json").write_text('{"model": ' + "[" * 100_000 + "]" * 100_000 + "}")


def huge_model_without_weights(run: Path) -> None:
    edit_config(run, lambda c: c["model_config"].update(hidden=[60_000, 60_000]))
    remove_weights(run)


def truncate_weights(run: Path) -> None:
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    shutil.rmtree(run / "checkpoints")


def set_model_config(**values):
    return lambda run: edit_config(run, lambda c: c["model_config"].update(values))


def set_train(**values):
    return lambda run: edit_config(run, lambda c: c["train"].update(values))


# case -> (damage, command after RUN, expected: the error's text, or None where the command must work)
CASES = {
    "huge model, weights missing": (huge_model_without_weights, ["evaluate"], "above aekit's limit"),
    "weights missing": (remove_weights, ["evaluate"], "model.safetensors: missing weights file"),
    "weights truncated": (truncate_weights, ["sample", "-n", "4", "-o", "s.png"], "not a valid safetensors file"),
    "weights for another size": (set_model_config(latent_dim=3), ["evaluate"], "is (64, 2) torch.float32, the model needs (64, 3)"),
    "seed -5": (set_train(seed=-5), ["evaluate"], "config.json: train: seed must be at least 0, got -5"),
    "seed 2**70": (set_train(seed=2**70), ["evaluate"], "seed must be at most 4,294,967,295"),
    "nested 100,000 deep": (deeply_nested, ["evaluate"], "config.json: nested too deeply"),
    "latent_dim a string": (set_model_config(latent_dim="2"), ["evaluate"], "latent_dim must be a whole number"),
    "unknown reconstruction loss": (set_model_config(recon_loss="l1"), ["evaluate"],
                                    "recon_loss must be one of bce, mse, got 'l1'"),
    "in_shape not a shape": (lambda run: edit_config(run, lambda c: c.update(in_shape="abc")), ["evaluate"],
                             "config.json: in_shape must be a list of whole numbers"),
    "data section a list": (lambda run: edit_config(run, lambda c: c.update(data=[1])), ["evaluate"],
                            "config.json: data must be a JSON object"),
    "no format version": (lambda run: edit_config(run, lambda c: c.pop("format_version")), ["evaluate"],
                          "format_version None is not 1"),
    "metrics with junk, NaN and bad bytes": (
        lambda run: (run / "metrics.jsonl").write_bytes(
            (run / "metrics.jsonl").read_bytes() + b'\xff\xfe\n[1, 2]\n{"epoch": 2, "train": {"recon": NaN}}\n"x"\n'),
        ["plot", "curves", "-o", "c.png"], None),
    "test metrics not an object": (lambda run: (run / "test_metrics.json").write_text("[1, 2]"),
                                   ["evaluate"], None),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_run_folder_is_one_line_or_works(case, make_run, tmp_path):
    damage, command, expected = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    damage(run)
    before = digests(run)
    result = aekit(command[0], run, *command[1:], cwd=tmp_path)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr
    if expected is None:
        assert result.returncode == 0, result.stderr
    else:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.stderr
        assert str(run) in lines[0]  # names the file or folder
    assert digests(run) == before  # nothing of the run changed


def test_resume_of_a_run_whose_config_asks_for_a_huge_model_is_refused_before_building(make_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    edit_config(run, lambda c: c["model_config"].update(hidden=[60_000, 60_000]))
    before = digests(run)
    result = aekit("train", "--resume", run, "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 1 and "above aekit's limit" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    before.pop("config.json"), digests(run).pop("config.json")
    assert {k: v for k, v in digests(run).items() if k != "config.json"} == before
