"""`aekit train` / `aekit evaluate` end to end, resume equivalence, the NaN stop, error messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _faults import poison_dense_ae_loss
from click.testing import CliRunner
from safetensors.torch import load_file

import aekit
from aekit.app import training
from aekit.cli import main
from aekit.errors import DataError, TrainingError
from aekit.run import list_checkpoints
from aekit.train.loop import Callbacks

TINY_VAE = {"hidden": (32,), "latent_dim": 2}


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def metrics_without_timing(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
        row.pop("images_per_second")
    return rows


def test_train_evaluate_load_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--model", "dense-ae", "--latent-dim", "8", "--epochs", "1", "--batch-size", "256",
                     "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "test metrics" in result.output and f"run folder: {out}" in result.output
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "reconstructions.png", "test_metrics.json"):
        assert (out / name).is_file(), name
    assert list_checkpoints(out), "no resumable checkpoint"
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "dense-ae" and config["model_config"]["latent_dim"] == 8
    assert config["data"]["dataset"] == "mnist-5k" and config["in_shape"] == [1, 28, 28]
    assert config["train"]["seed"] == 0 and config["aekit_version"] == aekit.__version__
    assert config["torch_version"] == torch.__version__ and config["format_version"] == 1
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["epoch"] == 1 and row["step"] == 16 and row["train"]["recon"] > 0 and row["val"]["recon"] > 0

    evaluated = run_cli("evaluate", str(out), "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output)
    assert metrics["n"] == 500
    assert 0 < metrics["bce_per_pixel"] < 0.7 and 0 < metrics["mse_per_pixel"] < 0.25 and metrics["psnr_db"] > 5
    assert metrics == json.loads((out / "test_metrics.json").read_text())
    table = run_cli("evaluate", str(out))
    assert "PSNR (dB)" in table.output and "ELBO" not in table.output

    model = aekit.load(out)
    x = torch.rand(3, 1, 28, 28)
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    assert model.encode(x).mode().shape == (3, 8)


def test_vae_evaluation_reports_the_elbo_and_its_parts(make_run):
    run = make_run("vae")
    metrics = aekit.evaluate(run, device="cpu")
    assert metrics["elbo"] < 0
    assert metrics["elbo"] == pytest.approx(-(metrics["elbo_recon"] + metrics["kl"]), rel=1e-9)
    assert metrics["kl"] > 0


def test_same_command_twice_gives_identical_metrics_and_weights(tmp_path):
    runs = []
    for name in ("a", "b"):
        training.train(model="vae", epochs=2, batch_size=256, out=tmp_path / name, model_options=TINY_VAE,
                  evaluate_test=False)
        runs.append(tmp_path / name)
    assert metrics_without_timing(runs[0]) == metrics_without_timing(runs[1])
    assert_same_weights(*runs)


def test_resume_after_an_epoch_equals_an_uninterrupted_run(tmp_path):
    # A VAE, so the resumed run must also replay the sampling noise exactly.
    full, split2 = tmp_path / "full", tmp_path / "split"
    training.train(model="vae", epochs=2, batch_size=256, out=full, model_options=TINY_VAE, evaluate_test=False)
    training.train(model="vae", epochs=2, batch_size=256, out=split2, model_options=TINY_VAE, stop_after_epoch=1,
              evaluate_test=False)
    assert len(metrics_without_timing(split2)) == 1
    resumed = run_cli("train", "--resume", str(split2), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(full, split2)
    assert metrics_without_timing(full) == metrics_without_timing(split2)


def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    training.train(model="vae", epochs=2, batch_size=256, out=full, model_options=TINY_VAE, evaluate_test=False)
    steps = {"n": 0}

    def stop_after_five():
        steps["n"] += 1
        return steps["n"] > 21  # 16 steps per epoch: stops inside the second epoch

    run = training.train(model="vae", epochs=2, batch_size=256, out=split, model_options=TINY_VAE,
                    callbacks=Callbacks(should_stop=stop_after_five), evaluate_test=False)
    assert run.result.interrupted and run.result.steps == 21
    training.train(resume=split, evaluate_test=False)
    assert_same_weights(full, split)
    assert metrics_without_timing(full) == metrics_without_timing(split)


@pytest.mark.parametrize("checks", ["at once", "deferred every 3 steps", "deferred to the epoch's end"])
def test_a_nan_loss_stops_training_naming_the_step_and_the_last_checkpoint(tmp_path, monkeypatch, checks):
    from aekit.train import loop

    # deferred: as on a GPU, where the checks wait for the device only every few steps
    if checks != "at once":
        monkeypatch.setattr(loop.Trainer, "defer_finite_checks", True)
        monkeypatch.setattr(loop, "FINITE_CHECK_EVERY", 3 if "3" in checks else 1000)

    poison_dense_ae_loss(monkeypatch)
    with pytest.raises(TrainingError, match=r"step 19 \(epoch 2\).*not finite.*last good checkpoint: .*ckpt-00001"):
        training.train(model="dense-ae", epochs=3, batch_size=256, out=tmp_path / "run",
                  model_options={"hidden": (16,), "latent_dim": 4})
    # the checkpoint named in the message is whole and loads
    assert aekit.load(tmp_path / "run").encode(torch.rand(1, 1, 28, 28)).mode().isfinite().all()


def test_a_stop_after_a_deferred_bad_step_saves_nothing_and_names_that_step(tmp_path, monkeypatch):
    from aekit.train import loop

    monkeypatch.setattr(loop.Trainer, "defer_finite_checks", True)
    monkeypatch.setattr(loop, "FINITE_CHECK_EVERY", 1000)
    poison_dense_ae_loss(monkeypatch)
    polls = {"n": 0}

    def stop_at_step_22():
        polls["n"] += 1
        return polls["n"] > 22

    with pytest.raises(TrainingError, match=r"step 19 \(epoch 2\).*not finite.*last good checkpoint: .*ckpt-00001"):
        training.train(model="dense-ae", epochs=3, batch_size=256, out=tmp_path / "run",
                       model_options={"hidden": (16,), "latent_dim": 4}, callbacks=Callbacks(should_stop=stop_at_step_22))
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == ["ckpt-00001-000000016"]  # epoch 1 only


def test_images_with_nan_or_no_contrast_are_refused_before_training(tmp_path, monkeypatch):
    import aekit.data as data_module
    from aekit.data import ImageSet

    real = data_module.load_dataset

    def broken(kind):
        def load(*args, **kwargs):
            splits = real(*args, **kwargs)
            images = splits.train.images.clone()
            if kind == "nan":
                images[3, 0, 5, 5] = float("nan")
            else:
                images[:] = 0.5
            splits.train = ImageSet(images, splits.train.labels)
            return splits
        return load

    monkeypatch.setattr(data_module, "load_dataset", broken("nan"))
    with pytest.raises(DataError, match="1 training image.*NaN"):
        training.train(model="dense-ae", epochs=1, out=tmp_path / "a")
    monkeypatch.setattr(data_module, "load_dataset", broken("flat"))
    with pytest.raises(DataError, match="same value"):
        training.train(model="dense-ae", epochs=1, out=tmp_path / "b")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "nope"], "unknown model 'nope'; choose one of"),
        (["train", "--dataset", "nope"], "nope"),
        (["train", "--latent-dim", "0"], "model 'conv-vae': latent_dim must be at least 1, got 0"),
        (["train", "--set", "model.recon_loss=l1"], "recon_loss must be one of bce, mse, got 'l1'"),
        (["train", "--nproc", "2", "--batch-size", "63"], "must divide evenly across 2 processes; use --batch-size 62"),
        (["train", "--resume", "/nonexistent/run"], "/nonexistent/run: no such run folder"),
        (["train", "--task", "denoise", "--noise", "laser:3"], "laser:3"),
        (["train", "--model", "conv-ae", "--image-size", "4"], "at least 8x8"),
        (["evaluate", "/nonexistent/run"], "no such run folder"),
    ],
)
def test_bad_options_give_one_line_errors(args, message, tmp_path):
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o")] if args[0] == "train" else args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "'--epochs': 0 is not in the range 1<=x"),
        (["--epochs", "-3"], "'--epochs': -3 is not in the range 1<=x"),
        (["--lr", "-1"], "'--lr': -1.0 is not in the range 0.0<x"),
        (["--lr", "0"], "'--lr': 0.0 is not in the range 0.0<x"),
        (["--seed", "-1"], "'--seed': -1 is not in the range 0<=x<=4294967295"),
        (["--seed", str(2**70)], f"'--seed': {2**70} is not in the range 0<=x<=4294967295"),
        (["--image-size", "100000"], "'--image-size': 100000 is not in the range 1<=x<=4096"),
        (["--batch-size", "0"], "'--batch-size': 0 is not in the range 1<=x"),
        (["--precision", "fp8"], "'--precision': 'fp8' is not one of 'auto', 'fp32', 'bf16', 'fp16'"),
    ],
)
def test_out_of_range_flags_are_refused_by_the_parser_in_one_line(args, message, tmp_path, monkeypatch):
    """Ranges come from the config fields' own definitions; nothing is loaded or created first."""
    from aekit.app import training as app_training

    monkeypatch.setattr(app_training, "train", lambda **kw: pytest.fail("training started"))
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Invalid value for "), result.output
    assert message in lines[0] and "aekit train --help" in lines[0]
    assert not (tmp_path / "o").exists()


def test_the_same_ranges_hold_for_a_config_file_and_set(tmp_path):
    """One definition: --set and --config meet the range the flag meets."""
    (tmp_path / "run.json").write_text('{"train": {"seed": -1}}')
    for extra in (["--config", str(tmp_path / "run.json")], ["--set", "train.seed=-1"]):
        result = CliRunner().invoke(main, ["train", *extra, "--out", str(tmp_path / "o")])
        assert result.exit_code == 1, result.output
        assert "seed must be at least 0, got -1" in result.output.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_a_run_already_is_refused(tmp_path, make_run):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = CliRunner().invoke(main, ["train", "--out", str(a_file)])
    assert result.exit_code == 1 and "is a file" in result.output
    existing = make_run("dense-ae")
    result = CliRunner().invoke(main, ["train", "--out", str(existing)])
    assert result.exit_code == 1 and f"--resume {existing}" in result.output


def test_corrupt_run_folders_give_clear_errors(tmp_path, make_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(make_run("dense-ae"), run)
    weights = run / "model.safetensors"
    weights.write_bytes(b"\x00" * 100 + weights.read_bytes()[100:])  # same size, header destroyed
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1 and "model.safetensors: not a valid safetensors file" in result.output
    (run / "config.json").write_text("{not json")
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1 and "config.json: not valid JSON" in result.output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aekit", "train", "--model", "dense-ae", "--epochs", "200", "--batch-size", "64",
         "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.2)
    while time.monotonic() < deadline and not (out / "metrics.jsonl").read_text().strip():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert f"aekit train --resume {out}" in output and "Traceback" not in output
    assert list_checkpoints(out)
    model = aekit.load(out)  # the weights on disk are whole
    assert model.encode(torch.rand(1, 1, 28, 28)).mode().shape == (1, 32)


def test_precision_auto_uses_bf16_only_on_native_hardware_and_for_measured_families(monkeypatch):
    import importlib

    from aekit.registry import build_model, lookup

    def model(name):
        cfg_cls, _ = lookup(name)
        return build_model(name, cfg_cls.tiny())

    loop = importlib.import_module("aekit.train.loop")  # aekit.train is also a function
    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)
    assert loop.resolve_precision("auto", cpu, model("conv-ae")) == "bf16"
    assert loop.resolve_precision("auto", cpu, model("music-vae")) == "fp32"  # LSTMs not measured in bf16
    assert loop.resolve_precision("fp32", cpu, model("conv-ae")) == "fp32"
    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    assert loop.resolve_precision("auto", cpu, model("conv-ae")) == "fp32"
    assert loop.resolve_precision("bf16", cpu, model("conv-ae")) == "bf16"  # asked for: emulated is still bf16
