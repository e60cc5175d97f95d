"""`aekit train --tensorboard`: event files that TensorBoard's own reader reads back (scalars by
name and step, images), a resumed run that never repeats a step, a run that trains exactly as
it would unlogged, and a missing package refused in one line before anything starts."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_options
from PIL import Image
from safetensors.torch import load_file

from aekit.app import training
from aekit.app.tensorboard import TENSORBOARD_DIR, VAL_SAMPLE_IMAGES, step_interval
from aekit.cli import main
from aekit.eval.evaluate import evaluate_model
from aekit.run import Run, list_checkpoints

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# 14x14 mnist-5k, batch 128: 4,000 training images make 32 steps an epoch, logged every 3 steps
SMALL = ["--model", "dense-ae", "--image-size", "14", "--batch-size", "128", "--no-progress",
         "--set", "model.hidden=16", "--set", "model.latent_dim=3"]
STEPS_PER_EPOCH = 32
EVERY = step_interval(STEPS_PER_EPOCH)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in metrics(run)]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    """A tiny 2-epoch VAE (a generative model: it has samples to show) logged to TensorBoard."""
    out = tmp_path_factory.mktemp("tb") / "vae"
    training.train(model="vae", epochs=2, out=out, model_options=tiny_options("vae"), seed=0, batch_size=256,
                   tensorboard=True, evaluate_test=False, write_report=False)
    return out


def test_every_loss_part_the_learning_rate_and_speed_are_logged_at_each_epochs_step(vae_run):
    acc = events(vae_run)
    records = metrics(vae_run)
    epoch_steps = [r["step"] for r in records]
    assert epoch_steps == [16, 32]  # 4,000 training images / 256
    for split in ("train", "val"):
        assert set(records[0][split]) == {"recon", "kl", "total"}
        for part in records[0][split]:
            logged = scalars(acc, f"{split}/{part}")
            assert [s for s, _ in logged] == epoch_steps
            # TensorBoard stores float32: the same numbers as metrics.jsonl, the source of truth
            assert [v for _, v in logged] == pytest.approx([r[split][part] for r in records], rel=1e-6)
    for tag, key in (("lr", "lr"), ("images_per_second", "images_per_second"), ("epoch_seconds", "seconds")):
        assert scalars(acc, tag) == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]


def test_per_step_losses_are_logged_at_an_interval(vae_run):
    acc = events(vae_run)
    every = step_interval(16)
    steps = [s for s, _ in scalars(acc, "train_step/total")]
    assert steps == list(range(every, 33, every))
    assert {"train_step/recon", "train_step/kl", "train_step/lr"} <= set(acc.Tags()["scalars"])
    assert all(v > 0 for _, v in scalars(acc, "train_step/recon"))


def test_validation_metrics_improve_and_images_are_logged_each_epoch(vae_run):
    acc = events(vae_run)
    psnr = scalars(acc, "val_sample/psnr_db")
    assert [s for s, _ in psnr] == [16, 32] and psnr[1][1] > psnr[0][1] > 0
    for tag in ("val_sample/ssim", "val_sample/bce_per_pixel", "val_sample/elbo"):
        assert len(scalars(acc, tag)) == 2
    # the last epoch's numbers are the final model's on the first validation images
    run = Run.open(vae_run)
    val = run.splits().val
    expected = evaluate_model(run.model, val, run.task, seed=0, max_images=VAL_SAMPLE_IMAGES)
    assert psnr[1][1] == pytest.approx(expected["psnr_db"], rel=1e-5)
    assert scalars(acc, "val_sample/elbo")[1][1] == pytest.approx(expected["elbo"], rel=1e-5)
    recon = acc.Images("reconstructions")
    assert [e.step for e in recon] == [16, 32]
    # two rows (originals, reconstructions) of 8 images of 28x28 pixels, 2 pixels apart
    assert (recon[0].width, recon[0].height) == (8 * 30 - 2, 2 * 30 - 2)
    picture = np.asarray(Image.open(io.BytesIO(recon[0].encoded_image_string)).convert("L"), dtype=np.float32)
    first = val.images[0, 0].numpy() * 255
    assert np.abs(picture[:28, :28] - first).max() <= 1  # the top row: the validation images themselves
    samples = acc.Images("samples")
    assert [e.step for e in samples] == [16, 32]
    # the same prior draws every epoch, decoded by a model that changed: different pictures
    assert samples[0].encoded_image_string != samples[1].encoded_image_string


def test_logging_to_tensorboard_does_not_change_training(vae_run, tmp_path):
    plain = tmp_path / "plain"
    training.train(model="vae", epochs=2, out=plain, model_options=tiny_options("vae"), seed=0, batch_size=256,
                   evaluate_test=False, write_report=False)
    assert without_timing(plain) == without_timing(vae_run)
    a, b = load_file(plain / "model.safetensors"), load_file(vae_run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (plain / TENSORBOARD_DIR).exists()
    assert json.loads((vae_run / "config.json").read_text())["train"]["tensorboard"] is True


def test_the_flag_is_kept_in_the_config_and_a_resume_after_a_lost_checkpoint_repeats_no_step(tmp_path):
    run = tmp_path / "run"
    result = cli("train", *SMALL, "--epochs", "2", "--out", run, "--tensorboard")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["tensorboard"] is True
    before = events(run)
    first = {tag: scalars(before, tag) for tag in ("train/total", "val/total", "train_step/total", "lr")}
    assert [s for s, _ in first["train/total"]] == [32, 64]
    # A crash after epoch 2 was logged but before its checkpoint was kept: the run resumes from
    # epoch 1 and trains epoch 2 again, logging its steps a second time.
    newest = list_checkpoints(run)[-1]
    assert newest.name.startswith("ckpt-00002")
    shutil.rmtree(newest)
    result = cli("train", "--resume", run, "--no-progress")  # no --tensorboard: the config keeps it
    assert result.exit_code == 0, result.output
    assert len(list((run / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2  # appended, not replaced
    after = events(run)
    for tag, logged in first.items():
        again = scalars(after, tag)
        steps = [s for s, _ in again]
        assert steps == sorted(set(steps)), f"{tag}: a step appears twice"
        # the resumed run equals the uninterrupted one, so it logged the same numbers
        assert again == [(s, pytest.approx(v, rel=1e-6)) for s, v in logged], tag
    assert [s for s, _ in scalars(after, "train_step/total")] == list(range(EVERY, 65, EVERY))
    assert [e.step for e in after.Images("reconstructions")] == [32, 64]


def test_tensorboard_can_be_switched_on_when_resuming(tmp_path):
    run = tmp_path / "run"
    result = cli("train", *SMALL, "--epochs", "2", "--stop-after-epoch", "1", "--out", run)
    assert result.exit_code == 0, result.output
    assert not (run / TENSORBOARD_DIR).exists()
    result = cli("train", "--resume", run, "--tensorboard", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["tensorboard"] is True
    acc = events(run)
    assert [s for s, _ in scalars(acc, "train/total")] == [64]  # from the resumed epoch on
    assert scalars(acc, "train_step/total")[0][0] > STEPS_PER_EPOCH


def test_a_folder_tensorboard_cannot_write_to_stops_the_logging_not_the_training(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / TENSORBOARD_DIR).write_text("a file where the event files' folder would go")
    result = training.train(model="dense-ae", epochs=2, out=run, model_options=tiny_options("dense-ae"), seed=0,
                            image_size=14, batch_size=128, tensorboard=True, evaluate_test=False,
                            write_report=False)
    assert result.result.epochs_done == 2 and [r["epoch"] for r in metrics(run)] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.name == "aekit.app.tensorboard"]
    assert len(warnings) == 1 and warnings[0].startswith("TensorBoard logging stopped (FileExistsError")


def test_a_missing_tensorboard_is_one_line_naming_the_install_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    run = tmp_path / "run"
    result = cli("train", *SMALL, "--epochs", "1", "--out", run, "--tensorboard")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and 'pip install "aekit[tensorboard]"' in lines[0], result.output
    assert not run.exists()  # refused before the run folder was made


@pytest.mark.slow
def test_under_ddp_only_rank_0_writes_event_files(tmp_path):
    """Two processes (gloo, 1 thread each): one event file, each epoch's step once."""
    folder = tmp_path / "blobs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-m", "aekit", "train", "--nproc", "2", "--model", "dense-ae",
                           "--dataset", f"folder:{folder}", "--latent-dim", "4", "--epochs", "2", "--batch-size", "32",
                           "--device", "cpu", "--no-progress", "--tensorboard", "--out", str(run)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((run / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 1
    acc = events(run)
    assert [s for s, _ in scalars(acc, "train/total")] == [r["step"] for r in metrics(run)]
