"""Training throughput: aekit's trainer against a plain PyTorch loop written as the lesson writes it.

The headline pair trains the lesson's conv autoencoder (conv 16-8-8 with 2x2 max-pooling to a
4x4x8 code, mirrored decoder, sigmoid output) with batch 256, Adam lr 1e-3 and BCE on
MNIST-shaped data: the plain loop is the lesson's notebook (``DataLoader`` over a
``TensorDataset``, ``zero_grad/backward/step``, fp32), aekit is its ``Trainer`` with its
defaults (precision ``auto``: bfloat16 autocast where the processor computes it natively).
The two alternate in one process, so both see the same machine load; each figure is the
median over rounds.  ``conv-vae`` and ``dn`` are measured the same way, their plain loop being
the same loop around the same aekit module.

Each line also gives the achieved GFLOP/s (FLOPs of one training step counted by torch) and
its share of the peak measured in the same run by a large matmul in the precision used.
The last line reads ``ratio aekit/plain: R`` for the lesson's conv AE.

    python benchmarks/throughput.py [--rounds 5] [--images 8192] [--models conv-ae,conv-vae,dn] [--batch-size 256]
                                    [--processes K]   # K fresh processes: the median ratio over them
                                    [--device cpu|cuda] [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from aekit.config import RunConfig, TrainConfig
from aekit.models import Batch
from aekit.nn import OutputConv2d
from aekit.registry import build_model, lookup
from aekit.tasks import make_task
from aekit.train.loop import Trainer

BATCH = 256


@dataclass
class InMemory:
    items: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self):
        return self.items.shape[0]


def lesson_model() -> nn.Module:
    """The lesson's PyTorch notebook model, layer for layer."""
    encoder = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
    )
    decoder = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Upsample(scale_factor=2),
        nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
    )
    return nn.Sequential(encoder, decoder)


def plain_epoch(model, optimizer, loader, device: torch.device | None = None) -> int:
    """The lesson's loop: sigmoid outputs and nn.BCELoss."""
    criterion = nn.BCELoss()
    seen = 0
    for (x,) in loader:
        x = x.to(device or "cpu")
        optimizer.zero_grad()
        loss = criterion(model(x), x)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
    return seen


def plain_module_epoch(model, optimizer, loader, device: torch.device | None = None) -> int:
    """The same plain loop around an aekit module (its own loss), for models the lesson lacks."""
    seen = 0
    for (x,) in loader:
        x = x.to(device or "cpu")
        optimizer.zero_grad()
        batch = Batch(x, x)
        model.loss(batch, model(batch)).total.backward()
        optimizer.step()
        seen += x.shape[0]
    return seen


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n matmul in ``dtype``: the practical peak of this machine, measured now."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def step_flops(model, images: torch.Tensor, memory_format, batch: int = BATCH) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch."""
    probe = images[:batch].contiguous(memory_format=memory_format)
    # The layers' FLOPs as defined: OutputConv2d's per-channel form does the same arithmetic,
    # but torch's counter charges a grouped convolution's backward as if it were a full one.
    OutputConv2d.per_channel = False
    try:
        with FlopCounterMode(display=False) as counter:
            batch = Batch(probe, probe)
            model.loss(batch, model(batch)).total.backward()
    finally:
        OutputConv2d.per_channel = True
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / probe.shape[0]


def load_images(n: int) -> tuple[torch.Tensor, str]:
    try:
        from aekit.data import load_dataset

        data = load_dataset("mnist-5k").train.items
        source = "mnist-5k train split (tiled)"
    except Exception:  # noqa: BLE001 - any data problem: fall back to synthetic images
        data = torch.rand(4000, 1, 28, 28)
        source = "uniform noise"
    reps = -(-n // data.shape[0])
    return data.repeat(reps, 1, 1, 1)[:n].contiguous(), source


def measure(name: str, images: torch.Tensor, args, device: torch.device, peaks: dict) -> float | None:
    """Print one model's plain and aekit figures; the ratio aekit/plain."""
    cfg_cls, _ = lookup(name)
    model = build_model(name, cfg_cls())
    run_cfg = RunConfig(model=name, model_config={}, train=TrainConfig(
        epochs=10_000, batch_size=args.batch_size, lr=1e-3, schedule="constant", warmup_steps=0, precision=args.precision))
    tmp = tempfile.TemporaryDirectory()
    trainer = Trainer(model, InMemory(images), InMemory(images[:args.batch_size]), run_cfg, tmp.name,
                      task=make_task("reconstruct"), device=device)
    flops = step_flops(model, images.to(device), trainer.memory_format, args.batch_size)

    if name == "conv-ae":
        plain, epoch_fn, plain_label = lesson_model().to(device), plain_epoch, "the lesson's model and loop"
    else:
        plain, epoch_fn, plain_label = build_model(name, cfg_cls()).to(device), plain_module_epoch, "plain loop"
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images), batch_size=args.batch_size, shuffle=True)

    # warm-up both with a whole epoch of what is timed (first calls allocate and pick kernels)
    epoch_fn(plain, plain_opt, loader, device)
    trainer.epoch = 0
    trainer._run_epoch()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    plain_rates, aekit_rates = [], []
    for r in range(args.rounds):
        sync(device)
        t0 = time.perf_counter()
        n = epoch_fn(plain, plain_opt, loader, device)
        sync(device)
        plain_rates.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        trainer._run_epoch()
        sync(device)
        aekit_rates.append(len(images) / (time.perf_counter() - t0))
        print(f"  {name} round {r + 1}: plain {plain_rates[-1]:8.0f} img/s   aekit {aekit_rates[-1]:8.0f} img/s",
              flush=True)
    p, a = statistics.median(plain_rates), statistics.median(aekit_rates)
    amp = trainer.amp_dtype
    peak = peaks[amp or torch.float32]
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    print(f"{name}: {flops / 1e6:.2f} MFLOP per image (forward + backward)")
    print(f"  plain ({plain_label}, fp32): {p:8.0f} images/s  {p * flops / 1e9:6.2f} GFLOP/s  "
          f"{p * flops / 1e9 / peaks[torch.float32]:6.1%} of the fp32 peak")
    print(f"  aekit trainer ({precision}):  {a:8.0f} images/s  {a * flops / 1e9:6.2f} GFLOP/s  "
          f"{a * flops / 1e9 / peak:6.1%} of the {precision} peak")
    if device.type == "cuda":
        print(f"  GPU memory peak (aekit): {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"  ratio aekit/plain ({name}): {a / p:.2f}")
    tmp.cleanup()
    return a / p


def in_processes(k: int, argv: list[str]) -> int:
    """Run this benchmark ``k`` times, each in a fresh process, and print the median ratios.

    A loop's speed depends on the process it lands in (the lesson's loop moved by 45% between
    processes and by a few percent within one), so one process is one draw of that.
    """
    ratios: dict[str, list[float]] = {}
    for i in range(k):
        done = subprocess.run([sys.executable, __file__, *argv], check=False, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout + done.stderr, end="", file=sys.stderr)
            return done.returncode
        found = dict(re.findall(r"^  ratio aekit/plain \((\S+)\): ([0-9.]+)$", done.stdout, flags=re.MULTILINE))
        print(f"process {i + 1}: " + ", ".join(f"{name} {r}" for name, r in found.items()), flush=True)
        for name, r in found.items():
            ratios.setdefault(name, []).append(float(r))
    for name, values in ratios.items():
        print(f"  ratio aekit/plain ({name}): median {statistics.median(values):.2f} over {k} processes "
              f"(min {min(values):.2f}, max {max(values):.2f})")
    if "conv-ae" in ratios:
        print(f"ratio aekit/plain: {statistics.median(ratios['conv-ae']):.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1,
                        help="run the whole comparison in this many fresh processes, one after another, "
                             "and print the median ratio over them")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=8192, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=BATCH,
                        help="both loops' batch (the lesson's is 256; aekit's own default is 64)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its algorithms for each shape first (both loops; GPU only)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", default="conv-ae,conv-vae,dn",
                        help="comma-separated; conv-ae is the lesson's model and gives the last line")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="aekit's precision (the plain loop is always fp32)")
    args = parser.parse_args()
    if args.processes > 1:
        argv = sys.argv[1:]
        at = next(i for i, a in enumerate(argv) if a.startswith("--processes"))
        del argv[at:at + (1 if "=" in argv[at] else 2)]
        return in_processes(args.processes, argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("throughput.py: --device cuda, but torch sees no CUDA GPU here; use --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, source = load_images(args.images)

    import os

    print(f"data: {source}, {len(images)} images per epoch, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}, load {os.getloadavg()[0]:.1f}")
    peaks = {torch.float32: matmul_peak(device, torch.float32)}
    peaks[torch.bfloat16] = matmul_peak(device, torch.bfloat16)
    print(f"measured peak (2048x2048 matmul): fp32 {peaks[torch.float32]:.1f} GFLOP/s, "
          f"bf16 {peaks[torch.bfloat16]:.1f} GFLOP/s")
    ratios = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        ratios[name] = measure(name, images, args, device, peaks)
    print(f"load at the end: {os.getloadavg()[0]:.1f}")
    if "conv-ae" in ratios:
        print(f"ratio aekit/plain: {ratios['conv-ae']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
