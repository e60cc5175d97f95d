"""Scaling up without changing the answer: DDP under torchrun, resume of a killed distributed run,
folders streamed from disk, and mixed precision.

The distributed tests start real process groups (gloo, 2 processes of 1 thread each), so they
check torch's own machinery end to end rather than a mock of it.  Tolerances:

* 2 processes vs 1 process, same global batch and seed: the union of the two ranks' b-th
  batches is the 1-process run's b-th batch and DDP averages gradients, so the runs differ only
  in floating-point summation order: metrics within 1e-4 relative, weights within 2e-4 absolute
  after 6 epochs (measured on this machine: 1.5e-7 and 2.2e-5; Adam turns rounding noise in
  near-zero gradients into differences of up to lr per step, hence the looser weight bound).
* A distributed run stopped (Ctrl-C, mid-epoch), resumed, killed (SIGKILL), resumed again vs
  the same run uninterrupted: same ranks, same order of operations, so 1e-6.
* Streamed vs in-memory folder: the same decoder and sample order, so bit-identical.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _faults import poison_dense_ae_loss
from PIL import Image
from safetensors.torch import load_file

from aekit.app import training
from aekit.data import load_dataset
from aekit.data import stream as stream_mod
from aekit.data.sets import split_indices
from aekit.data.stream import StreamingImageSet
from aekit.errors import ConfigError, DataError
from aekit.run import list_checkpoints
from aekit.train.loop import Callbacks, _worker_error_message

# Many short epochs: the kill test needs time between the first checkpoint and the end.
EPOCHS = 6
BLOBS = 1200  # 16x16 images: 960 train / 120 val / 120 test; 15 steps of 64 an epoch
TINY_DENSE = {"hidden": (32,), "latent_dim": 4}
CONV = {"channels": (8, 8, 8), "latent_dim": 8}


@pytest.fixture(autouse=True)
def one_thread():
    """In-process training on one thread: these tests compare numbers, not speed, and on a busy
    2-core machine two OpenMP threads per process wait on each other (measured: 4x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # 2 processes on 2 cores
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "aekit", "train", *args]


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


def _assert_close_runs(a: Path, b: Path, *, rel: float, weights_atol: float) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb] == list(range(1, EPOCHS + 1))
    for ra, rb in zip(ma, mb, strict=True):
        assert ra["step"] == rb["step"]
        for split in ("train", "val"):
            for key, value in ra[split].items():
                assert rb[split][key] == pytest.approx(value, rel=rel), (ra["epoch"], split, key)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=weights_atol, msg=key)


# -- DDP ----------------------------------------------------------------------------------------

def _write_blobs(root: Path, n: int) -> Path:
    """``n`` 16x16 grey images of one soft blob each: quick to learn, quick to decode."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    root.mkdir(parents=True)
    for i in range(n):
        cy, cx, r = rng.uniform(3, 13), rng.uniform(3, 13), rng.uniform(1.5, 4)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    return _write_blobs(tmp_path_factory.mktemp("ddp-data") / "blobs", BLOBS)


@pytest.fixture(scope="module")
def run_args(blobs) -> list[str]:
    """`aekit train` options shared by the distributed runs.  dense-ae is deterministic (no
    sampling noise), so per-rank noise generators play no part and 1 vs 2 processes compare tightly."""
    return ["--model", "dense-ae", "--dataset", f"folder:{blobs}", "--latent-dim", "8", "--epochs", str(EPOCHS),
            "--batch-size", "64", "--seed", "0", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, run_args) -> tuple[Path, str]:
    """An uninterrupted 2-process run, started with the `--nproc` shortcut; (folder, stdout)."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    done = subprocess.run([sys.executable, "-m", "aekit", "train", "--nproc", "2", *run_args, "--out", str(out)],
                          env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_nproc_shortcut_trains_and_only_rank_0_writes(two_process_run):
    run, stdout = two_process_run
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, EPOCHS + 1))  # once per epoch
    assert stdout.count(f"epoch 1/{EPOCHS}") == 1 and stdout.count("run folder:") == 1  # rank 0 prints
    assert [p.name for p in list_checkpoints(run)][-1].startswith(f"ckpt-{EPOCHS:05d}")
    assert (run / "test_metrics.json").is_file()
    steps = _metrics(run)[-1]["step"]
    assert steps == EPOCHS * 15  # 960 training images / global batch 64


def test_two_processes_match_one(two_process_run, run_args, tmp_path):
    run, _ = two_process_run
    one = tmp_path / "one"
    dataset = run_args[run_args.index("--dataset") + 1]
    training.train(model="dense-ae", dataset=dataset, epochs=EPOCHS, batch_size=64, seed=0, device="cpu", out=one,
              model_options={"latent_dim": 8}, evaluate_test=False, write_report=False)
    _assert_close_runs(run, one, rel=1e-4, weights_atol=2e-4)


def _start(cmd: list[str]) -> subprocess.Popen:
    # A session of its own, as a terminal gives a command: Ctrl-C there signals this group.
    return subprocess.Popen(cmd, env=_env(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and its workers, as a crash of the machine would.  torchrun starts
    each worker in a session of its own, so killing the launcher's group alone would leave the
    ranks running (and finishing the run)."""
    victims = [proc.pid, *_descendants(proc.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate()


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path, after: str) -> None:
    """Wait until ``run`` has a checkpoint of a later epoch than the checkpoint name ``after``."""
    deadline = time.monotonic() + 240
    while not any(p.name[:10] > after[:10] for p in list_checkpoints(run)):
        assert proc.poll() is None, f"the run ended before it could be stopped:\n{proc.stdout.read()[-2000:]}"
        assert time.monotonic() < deadline, "no new checkpoint after 240 s"
        time.sleep(0.02)


def test_stopped_and_killed_distributed_run_resumes_on_every_rank(two_process_run, run_args, tmp_path):
    """Ctrl-C mid-epoch (the ranks must agree on the step and save each rank's state), then a
    SIGKILL of everything mid-training, then a resume to the end: equal to the run never stopped."""
    reference, _ = two_process_run
    run = tmp_path / "stopped"
    proc = _start(_torchrun(*run_args, "--out", str(run)))
    _wait_for_checkpoint(proc, run, after="ckpt-00000")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    out, _ = proc.communicate(timeout=120)
    assert "stopped at epoch" in out, out[-3000:]
    stopped_at = list_checkpoints(run)[-1].name
    assert len(_metrics(run)) < EPOCHS

    proc = _start(_torchrun("--resume", str(run), "--no-progress"))
    try:
        _wait_for_checkpoint(proc, run, after=stopped_at)
    finally:
        _kill_everything(proc)  # mid-training
    time.sleep(1)  # nothing left to write
    assert len(_metrics(run)) < EPOCHS

    done = subprocess.run(_torchrun("--resume", str(run), "--no-progress"), env=_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_close_runs(reference, run, rel=1e-6, weights_atol=1e-6)


def test_nproc_under_torchrun_is_refused(monkeypatch):
    from click.testing import CliRunner

    from aekit.cli import main

    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["train", "--nproc", "2"])
    assert result.exit_code == 2 and "under torchrun" in result.output


def test_command_line_is_rebuilt_without_nproc():
    from aekit.cli import _command_line, main

    ctx = main.make_context("aekit", ["-v", "train", "--nproc", "2", "--epochs", "3", "--no-stream",
                                      "--out", "x"])
    sub = main.get_command(ctx, "train").make_context("train", ["--nproc", "2", "--epochs", "3", "--no-stream",
                                                                 "--out", "x"], parent=ctx)
    argv = _command_line(sub, leave_out="nproc")
    assert argv[:2] == ["-v", "train"] and "--nproc" not in argv
    assert argv[argv.index("--epochs") + 1] == "3" and "--no-stream" in argv and "--no-progress" not in argv


def test_worker_errors_become_their_original_line():
    wrapped = DataError("Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent "
                        "call last):\n  File \"x.py\", line 1\naekit.errors.DataError: a/b.png: cannot decode")
    assert _worker_error_message(wrapped) == "a/b.png: cannot decode"
    assert _worker_error_message(DataError("plain")) == "plain"


# -- streaming from disk ----------------------------------------------------------------------

def _write_folder(root: Path, n_per_class: int = 40, size: tuple[int, int] = (20, 24)) -> Path:
    """Two classes of 20x24 images: 'bright' RGB, 'dark' grey, so size and channel rules matter."""
    rng = np.random.default_rng(0)
    for cls, (lo, hi) in {"bright": (120, 255), "dark": (0, 110)}.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            shape = (*size, 3) if cls == "bright" else size
            Image.fromarray(rng.integers(lo, hi, shape, dtype=np.uint8)).save(root / cls / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("stream") / "photos")


def test_streamed_images_equal_the_in_memory_ones(folder):
    name = f"folder:{folder}"
    eager = load_dataset(name, image_size=16, channels=1, seed=3, stream=False)
    lazy = load_dataset(name, image_size=16, channels=1, seed=3, stream=True)
    assert isinstance(lazy.train, StreamingImageSet) and not hasattr(lazy.train, "images")
    assert lazy.in_shape == eager.in_shape == (1, 16, 16)
    assert len(lazy.train) == len(eager.train)
    for i in (0, 1, len(eager.train) // 2, len(eager.train) - 1):
        x, y = lazy.train[i]
        assert torch.equal(x, eager.train.images[i]) and y == int(eager.train.labels[i])
    for part in ("val", "test"):
        assert torch.equal(getattr(lazy, part).images, getattr(eager, part).images)
        assert torch.equal(getattr(lazy, part).labels, getattr(eager, part).labels)


def test_streaming_is_automatic_above_the_threshold(folder, monkeypatch):
    monkeypatch.setattr(stream_mod, "STREAM_THRESHOLD_BYTES", 1000)
    assert isinstance(load_dataset(f"folder:{folder}").train, StreamingImageSet)
    assert not isinstance(load_dataset(f"folder:{folder}", stream=False).train, StreamingImageSet)
    with pytest.raises(ConfigError, match="folder:PATH"):
        load_dataset("mnist-5k", stream=True)


def test_eval_splits_are_capped_when_streaming(folder, monkeypatch):
    monkeypatch.setattr(stream_mod, "EVAL_SPLIT_MAX_BYTES", 3 * (3 * 20 * 24 * 4))  # three RGB images
    lazy = load_dataset(f"folder:{folder}", stream=True)
    assert len(lazy.val) == len(lazy.test) == 3 and lazy.in_shape == (3, 20, 24)


def _train_folder(folder: Path, out: Path, **kwargs):
    kwargs.setdefault("epochs", 2)
    return training.train(model="dense-ae", dataset=f"folder:{folder}", image_size=16, channels=1, batch_size=16,
                     seed=0, out=out, model_options=TINY_DENSE, evaluate_test=False, write_report=False, **kwargs)


def test_streamed_training_with_workers_equals_in_memory_training(folder, tmp_path):
    _train_folder(folder, tmp_path / "memory", stream=False)
    _train_folder(folder, tmp_path / "workers", stream=True, workers=2)
    assert _metrics(tmp_path / "memory") == _metrics(tmp_path / "workers")
    wa, wb = load_file(tmp_path / "memory" / "model.safetensors"), load_file(tmp_path / "workers" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_streamed_run_resumes_mid_epoch(folder, tmp_path):
    _train_folder(folder, tmp_path / "full", stream=True)
    calls = {"n": 0}

    def stop_inside_epoch_two():
        calls["n"] += 1
        return calls["n"] > 6  # 64 training images / 16 = 4 batches an epoch

    run = _train_folder(folder, tmp_path / "split", stream=True, callbacks=Callbacks(should_stop=stop_inside_epoch_two))
    assert run.result.interrupted and run.result.steps == 6
    training.train(resume=tmp_path / "split", evaluate_test=False, write_report=False, stream=True)
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "split")


def test_a_corrupt_file_in_a_streamed_split_is_one_line_naming_it(tmp_path):
    root = _write_folder(tmp_path / "photos", n_per_class=10)
    files = sorted(root.rglob("*.png"))
    labels = np.asarray([0 if f.parent.name == "bright" else 1 for f in files])
    train, _, _ = split_indices(len(files), val_fraction=0.1, test_fraction=0.1, seed=0, labels=labels)
    bad = files[int(train[0])]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    with pytest.raises(DataError) as err:
        _train_folder(root, tmp_path / "run", stream=True, workers=2, epochs=1)
    message = str(err.value)
    assert bad.name in message and "\n" not in message and "Traceback" not in message


# -- precision and devices ----------------------------------------------------------------------

def test_bf16_autocast_trains_on_the_cpu(blobs, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        # dense-ae: bf16 convolutions are emulated (slow) on CPUs without AVX512-BF16 / AMX
        training.train(model="dense-ae", dataset=f"folder:{blobs}", epochs=1, batch_size=64, seed=0, device="cpu",
                  precision=precision, out=tmp_path / precision, model_options=TINY_DENSE, evaluate_test=False,
                  write_report=False)
        runs[precision] = _metrics(tmp_path / precision)[0]
    bf16, fp32 = runs["bf16"]["train"]["total"], runs["fp32"]["train"]["total"]
    assert np.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=0.05)  # bf16 keeps ~3 significant digits


def test_fp16_needs_a_gpu(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        training.train(model="dense-ae", epochs=1, device="cpu", precision="fp16", out=tmp_path / "x",
                  model_options=TINY_DENSE, evaluate_test=False, write_report=False)


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_mixed_precision_trains(tmp_path, precision):
    training.train(model="conv-ae", epochs=1, batch_size=256, seed=0, device="cuda", precision=precision,
              out=tmp_path / precision, model_options=CONV, evaluate_test=False, write_report=False)
    assert np.isfinite(_metrics(tmp_path / precision)[0]["train"]["total"])


@needs_gpu
def test_checkpoints_move_between_gpu_and_cpu(tmp_path):
    import aekit

    run = tmp_path / "run"
    # epoch 1 on the GPU, epoch 2 on the CPU, epoch 3 on the GPU again: weights and optimiser
    # state written on one device must resume on the other.
    training.train(model="conv-ae", epochs=3, batch_size=256, seed=0, device="cuda", precision="bf16", out=run,
              model_options=CONV, evaluate_test=False, write_report=False, stop_after_epoch=1)
    training.train(resume=run, device="cpu", evaluate_test=False, write_report=False, stop_after_epoch=2)
    training.train(resume=run, device="cuda", evaluate_test=False, write_report=False)
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["train"]["total"]) for r in rows)
    assert rows[2]["train"]["total"] < rows[0]["train"]["total"]  # the optimiser state carried on
    x = torch.rand(4, 1, 28, 28)
    on_cpu, on_gpu = aekit.load(run, device="cpu"), aekit.load(run, device="cuda")
    torch.testing.assert_close(on_cpu.reconstruct(x), on_gpu.reconstruct(x.cuda()).cpu(), rtol=1e-3, atol=1e-3)


@needs_gpu
def test_gpu_training_keeps_the_data_on_the_gpu_and_resumes_mid_epoch_as_if_never_stopped(tmp_path, monkeypatch):
    from aekit.train.loop import Callbacks, Trainer

    where = []
    original = Trainer._resident_items

    def recording(self, labels):
        items, labels = original(self, labels)
        where.append(items.device.type)
        return items, labels

    monkeypatch.setattr(Trainer, "_resident_items", recording)
    common = {"model": "dense-ae", "epochs": 2, "batch_size": 256, "seed": 0, "device": "cuda",
              "model_options": TINY_DENSE, "evaluate_test": False, "write_report": False}
    training.train(out=tmp_path / "whole", **common)
    polls = {"n": 0}

    def stop_mid_epoch():
        polls["n"] += 1
        return polls["n"] > 21

    training.train(out=tmp_path / "split", callbacks=Callbacks(should_stop=stop_mid_epoch), **common)
    training.train(resume=tmp_path / "split", device="cuda", evaluate_test=False, write_report=False)
    assert where and set(where) == {"cuda"}
    whole, split = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "split"))
    for key in whole:
        torch.testing.assert_close(whole[key], split[key], rtol=1e-5, atol=1e-6)


@needs_gpu
def test_gpu_nan_loss_is_caught_by_the_deferred_checks_naming_its_step(tmp_path, monkeypatch):
    import aekit
    from aekit.errors import TrainingError

    poison_dense_ae_loss(monkeypatch)
    with pytest.raises(TrainingError, match=r"step 19 \(epoch 2\).*not finite.*last good checkpoint"):
        training.train(model="dense-ae", epochs=3, batch_size=256, device="cuda", out=tmp_path / "run",
                       model_options=TINY_DENSE)
    assert aekit.load(tmp_path / "run").encode(torch.rand(1, 1, 28, 28)).mode().isfinite().all()
