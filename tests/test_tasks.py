"""Denoising and super-resolution end to end: training, evaluation next to baselines, and
`aekit denoise` / `aekit upscale` on image files the tests write."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import tiny_options
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

import aekit
import aekit.eval.baselines
import aekit.tasks.denoise
from aekit.app import training
from aekit.app.apply import apply_tiled, tile_starts
from aekit.cli import main
from aekit.data import cifar, fetch, load_dataset
from aekit.eval.evaluate import evaluate_model
from aekit.models.denoise import Denoiser
from aekit.tasks import TASKS, make_task, task_names


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def dn_run(make_run) -> Path:
    return make_run("dn", task="denoise", noise="gaussian:0.5")


@pytest.fixture(scope="module")
def sr_run(make_run) -> Path:
    return make_run("sr", task="super-resolution", scale=2)


def write_png(path: Path, h: int, w: int, *, rgb: bool, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if rgb else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as {"baselines/median_filter/psnr": value, ...}, numbers only."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)):
            out[prefix + key] = value
    return out


def mean_skimage_psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    return float(np.mean([peak_signal_noise_ratio(r[0].numpy(), i[0].numpy(), data_range=1.0)
                          for i, r in zip(images.double(), reference.double())]))


# -- training and evaluation ---------------------------------------------------------------------

def test_denoise_run_reports_baselines(dn_run):
    metrics = json.loads((dn_run / "test_metrics.json").read_text())
    baselines = metrics["baselines"]
    assert list(baselines) == ["noisy input", "median_filter", "gaussian_blur", "tv_chambolle", "nl_means"]
    assert all({"psnr", "ssim", "param", "n"} <= set(b) for b in baselines.values())
    # The noisy input's PSNR, recomputed by scikit-image on the inputs the model was scored on.
    test = load_dataset("mnist-5k", seed=0).test
    noisy = make_task("denoise", "gaussian:0.5").fixed_inputs(test.images, seed=0)
    assert baselines["noisy input"]["psnr"] == pytest.approx(mean_skimage_psnr(noisy, test.images), abs=1e-6)
    assert baselines["noisy input"]["n"] == metrics["n"] == len(test)
    # Every filter is tuned to help: each beats the noisy input it starts from.
    for name, b in baselines.items():
        if name != "noisy input":
            assert b["psnr"] > baselines["noisy input"]["psnr"] + 1.0, name


def test_super_resolution_run_reports_baselines(sr_run):
    cfg = aekit.Run.open(sr_run).config
    assert (cfg.in_shape, cfg.out_shape) == ((1, 14, 14), (1, 28, 28))
    metrics = json.loads((sr_run / "test_metrics.json").read_text())
    baselines = metrics["baselines"]
    assert list(baselines) == ["nearest", "bilinear", "bicubic"]
    clean = load_dataset("mnist-5k", seed=0).test.images
    # Block means in numpy, bicubic in torch, PSNR by scikit-image: none of it aekit's code.
    small = torch.from_numpy(clean.numpy().reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5)))
    bicubic = F.interpolate(small, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1)
    assert baselines["bicubic"]["psnr"] == pytest.approx(mean_skimage_psnr(bicubic, clean), abs=1e-4)
    assert baselines["bicubic"]["psnr"] > baselines["nearest"]["psnr"]
    # The untrained net is bicubic (its last conv starts at zero), so even a tiny one trained
    # for a few steps stays close to it; the real gains are measured on full MNIST.
    assert metrics["psnr_db"] > baselines["bicubic"]["psnr"] - 0.3


def test_evaluate_cli_prints_baselines_and_repeats(dn_run):
    table = cli("evaluate", dn_run, "--device", "cpu")
    assert table.exit_code == 0, table.output
    for text in ("PSNR (dB)", "this model", "noisy input", "median_filter", "nl_means", "tuned on validation"):
        assert text in table.output, text
    as_json = cli("evaluate", dn_run, "--json", "--device", "cpu")
    assert as_json.exit_code == 0, as_json.output
    first = json.loads(as_json.output)
    # Evaluation noise is fixed by the run's seed: the table's evaluation, this one, and the one
    # at the end of training give the same numbers.
    assert re.search(rf"PSNR \(dB\) +{first['psnr_db']:.4f}\n", table.output)
    for name, b in first["baselines"].items():
        assert re.search(rf"{name} +{b['psnr']:.2f} +{b['ssim']:.4f} +{b['n']} ", table.output), name
    # Training evaluated its in-memory (channels-last) model: equal up to float rounding.
    saved = flat(json.loads((dn_run / "test_metrics.json").read_text()))
    assert flat(first).keys() == saved.keys()
    assert flat(first) == pytest.approx(saved, rel=1e-5)


def test_evaluation_noise_is_fixed_per_image():
    task = make_task("denoise", "gaussian:0.5")
    clean = load_dataset("mnist-5k", seed=0).test.images[:40]
    whole = task.fixed_inputs(clean, seed=3)
    halves = torch.cat([task.fixed_inputs(clean[:15], seed=3), task.fixed_inputs(clean[15:], seed=3, first_index=15)])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, task.fixed_inputs(clean, seed=4))
    model = Denoiser(aekit.registry.config_from_dict("dn", {"channels": [8, 8]}))
    data = load_dataset("mnist-5k", seed=0).test
    # Same noise whatever the batch size: equal up to the order of the sums.
    assert evaluate_model(model, data, task, batch_size=64) == pytest.approx(
        evaluate_model(model, data, task, batch_size=500), rel=1e-9)


def test_training_noise_is_fresh_for_every_batch(tmp_path, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = Denoiser.training_step

    def recording(self, batch, optimizers, ctx=None):
        seen.append((batch.target.detach().clone(), batch.x.detach().clone()))
        return original(self, batch, optimizers, ctx)

    monkeypatch.setattr(Denoiser, "training_step", recording)
    training.train(model="dn", task="denoise", noise="gaussian:0.5", epochs=2, batch_size=1024, out=tmp_path / "run",
              model_options=tiny_options("dn"), evaluate_test=False, write_report=False)
    per_epoch = len(seen) // 2
    (c0, x0), (c1, x1) = seen[0], seen[1]
    noise0, noise1 = x0 - c0, x1 - c1
    inside = (x0 > 0) & (x0 < 1) & (x1 > 0) & (x1 < 1)  # where clipping left the noise whole
    assert not torch.allclose(noise0[inside], noise1[inside])
    # The same clean image meets new noise in the next epoch.
    later_clean, later_x = (torch.cat(t) for t in zip(*seen[per_epoch:]))
    match = (later_clean.flatten(1) == c0[0].flatten()).all(dim=1).nonzero()
    assert len(match) >= 1
    assert not torch.equal(later_x[match[0, 0]], x0[0])


def test_default_model_follows_the_task(tmp_path):
    run = training.train(task="super-resolution", scale=4, epochs=1, batch_size=512, out=tmp_path / "sr4",
                    model_options=tiny_options("sr"), write_report=False)
    cfg = aekit.Run.open(run.run_dir).config
    assert cfg.model == "sr" and cfg.model_config["scale"] == 4 and tuple(cfg.in_shape) == (1, 7, 7)
    assert {name: TASKS[name].default_model for name in task_names()} == \
        {"reconstruct": "conv-vae", "denoise": "dn", "super-resolution": "sr", "melody": "music-vae"}
    assert set(run.test_metrics["baselines"]) == {"nearest", "bilinear", "bicubic"}


def test_cifar_super_resolution_with_the_default_model(tmp_path, monkeypatch):
    """`aekit train --task super-resolution --scale 2 --dataset cifar10` on a tiny CIFAR tarball."""
    folder = tmp_path / "data" / "cifar10"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n):
        return {b"labels": [i % 10 for i in range(n)], b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}

    with tarfile.open(folder / cifar.TARBALL, "w:gz") as tar:
        for name, n in [*((f"data_batch_{i}", 6) for i in range(1, 6)), ("test_batch", 6)]:
            payload = pickle.dumps(batch(n), protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    digest = hashlib.sha256((folder / cifar.TARBALL).read_bytes()).hexdigest()
    monkeypatch.setitem(fetch.SHA256, "cifar10", {cifar.TARBALL: digest})
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = cli("train", "--task", "super-resolution", "--scale", "2", "--dataset", "cifar10", "--data-dir",
                 tmp_path / "data", "--epochs", "1", "--batch-size", "8", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    cfg = aekit.Run.open(out).config
    assert cfg.model == "sr" and (tuple(cfg.in_shape), tuple(cfg.out_shape)) == ((3, 16, 16), (3, 32, 32))
    assert "bicubic" in result.output and "this model" in result.output


# -- applying a run to files -------------------------------------------------------------------

class _Fake(torch.nn.Module):
    """A stand-in 'model' with a known output: identity, or nearest enlargement by ``scale``."""

    def __init__(self, in_shape, scale=1):
        super().__init__()
        self.in_shape, self.scale = in_shape, scale
        self.out_shape = (in_shape[0], in_shape[1] * scale, in_shape[2] * scale)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def reconstruct(self, x):
        assert tuple(x.shape[1:]) == self.in_shape
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") if self.scale > 1 else x.clone()


@pytest.mark.parametrize("size", [(28, 28), (45, 31), (9, 40), (5, 6)])
@pytest.mark.parametrize("overlap", [0, 7, 20])
def test_tiles_stitch_back_exactly(size, overlap):
    img = torch.rand(1, *size)
    assert torch.allclose(apply_tiled(_Fake((1, 28, 28)), img, overlap=overlap), img, atol=1e-6)
    up = apply_tiled(_Fake((1, 14, 14), scale=2), img, overlap=min(overlap, 13))
    assert torch.allclose(up, F.interpolate(img[None], scale_factor=2, mode="nearest")[0], atol=1e-6)


def test_tile_starts_cover_the_image():
    assert tile_starts(28, 28, 7) == [0]
    starts = tile_starts(100, 28, 7)
    assert starts[0] == 0 and starts[-1] == 72 and all(b - a <= 21 for a, b in itertools.pairwise(starts))


def test_one_tile_image_is_the_models_output(dn_run):
    model = aekit.load(dn_run)
    img = torch.rand(1, 28, 28)
    assert torch.allclose(apply_tiled(model, img), model.reconstruct(img[None])[0], atol=1e-6)


def test_denoise_files(dn_run, tmp_path):
    rgb = write_png(tmp_path / "photo.png", 45, 31, rgb=True)
    small = write_png(tmp_path / "tiny.png", 10, 13, rgb=False, seed=1)
    jpeg = tmp_path / "scan.jpg"
    Image.open(rgb).save(jpeg)
    out = tmp_path / "out"
    result = cli("denoise", dn_run, rgb, small, jpeg, "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    for src in (rgb, small, jpeg):
        with Image.open(out / src.name) as res, Image.open(src) as orig:
            assert res.size == orig.size and res.mode == "L"  # the run is grey: RGB comes back grey
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.mode == "RGB" and sheet.height > 3 * 31
    assert "sheet.png" in result.output
    assert "overlap" in cli("denoise", "--help").output


def test_upscale_files(sr_run, tmp_path):
    img = write_png(tmp_path / "small.png", 17, 23, rgb=True)
    out = tmp_path / "out"
    result = cli("upscale", sr_run, img, "-o", out, "--overlap", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    with Image.open(out / "small.png") as res:
        assert res.size == (46, 34) and res.mode == "L"
    assert (out / "sheet.png").is_file()


def test_wrong_run_for_the_command(dn_run, sr_run, make_run, tmp_path):
    img = write_png(tmp_path / "a.png", 20, 20, rgb=False)
    result = cli("upscale", dn_run, img, "-o", tmp_path / "o1")
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "is a denoise (gaussian:0.5) run (model dn)" in message
    assert "aekit train --task super-resolution" in message
    result = cli("denoise", sr_run, img, "-o", tmp_path / "o2")
    assert result.exit_code == 1 and "is a super-resolution x2 run" in result.output
    assert "aekit train --task denoise" in result.output
    plain = make_run("dense-ae")
    result = cli("denoise", plain, img, "-o", tmp_path / "o3")
    assert result.exit_code == 1 and "is a reconstruct run" in result.output
    assert not (tmp_path / "o1").exists()


def test_refuses_to_overwrite_inputs(dn_run, tmp_path):
    img = write_png(tmp_path / "a.png", 20, 20, rgb=False)
    result = cli("denoise", dn_run, img, "-o", tmp_path)
    assert result.exit_code == 1 and "would overwrite the input" in result.output
    other = tmp_path / "x"
    other.mkdir()
    twin = write_png(other / "a.png", 20, 20, rgb=False)
    result = cli("denoise", dn_run, img, twin, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "have the same name" in result.output
    result = cli("denoise", dn_run, tmp_path / "missing.png", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "missing.png" in result.output
