"""Training throughput: aekit's trainer against a plain PyTorch loop written as the lesson writes it.

Both train the lesson's conv autoencoder (conv 16-8-8 with 2x2 max-pooling to a 4x4x8 code,
mirrored decoder, sigmoid output) with batch 256, Adam lr 1e-3 and BCE on MNIST-shaped data.
The two alternate in one process, so both see the same machine load; each figure is the
median over rounds.  The last line reads ``ratio aekit/plain: R``.

    python benchmarks/throughput.py [--rounds 5] [--images 8192]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from aekit.config import RunConfig, TrainConfig
from aekit.registry import build_model, lookup
from aekit.tasks import make_task
from aekit.train.loop import Trainer

BATCH = 256


@dataclass
class InMemory:
    images: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self):
        return self.images.shape[0]


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


def plain_epoch(model, optimizer, loader) -> int:
    criterion = nn.BCELoss()
    seen = 0
    for (x,) in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), x)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=8192, help="images per epoch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        from aekit.data import load_dataset

        data = load_dataset("mnist-5k").train.images
        source = "mnist-5k train split (tiled)"
    except Exception:  # noqa: BLE001 - any data problem: fall back to synthetic images
        data = torch.rand(4000, 1, 28, 28)
        source = "uniform noise"
    reps = -(-args.images // data.shape[0])
    images = data.repeat(reps, 1, 1, 1)[: args.images].contiguous()

    plain = lesson_model()
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=True)

    cfg_cls, _ = lookup("conv-ae")
    model = build_model("conv-ae", cfg_cls())
    run_cfg = RunConfig(model="conv-ae", model_config={}, train=TrainConfig(epochs=10_000, batch_size=BATCH, lr=1e-3,
                                                                              schedule="constant"))
    tmp = tempfile.TemporaryDirectory()
    trainer = Trainer(model, InMemory(images), InMemory(images[:BATCH]), run_cfg, tmp.name,
                      task=make_task("reconstruct"), device=torch.device("cpu"))

    # FLOPs of one aekit training step (forward + backward), counted by torch itself.
    probe = images[:BATCH].contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        from aekit.models import Batch

        batch = Batch(probe, probe)
        model.loss(batch, model(batch)).total.backward()
    flops_per_image = counter.get_total_flops() / BATCH
    model.zero_grad(set_to_none=True)

    # warm-up both (first calls allocate and pick kernels)
    plain_epoch(plain, plain_opt, DataLoader(TensorDataset(images[:1024]), batch_size=BATCH))
    trainer.epoch = 0
    trainer._run_epoch()

    plain_rates, aekit_rates = [], []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        n = plain_epoch(plain, plain_opt, loader)
        plain_rates.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        trainer._run_epoch()
        aekit_rates.append(len(images) / (time.perf_counter() - t0))
        print(f"round {r + 1}: plain {plain_rates[-1]:8.0f} img/s   aekit {aekit_rates[-1]:8.0f} img/s")
    p, a = statistics.median(plain_rates), statistics.median(aekit_rates)
    print(f"data: {source}, {len(images)} images per epoch, batch {BATCH}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"plain PyTorch loop (DataLoader + zero_grad/backward/step): {p:.0f} images/s (median of {args.rounds})")
    print(f"aekit trainer:                                            {a:.0f} images/s (median of {args.rounds})")
    print(f"aekit achieved {a * flops_per_image / 1e9:.2f} GFLOP/s ({flops_per_image / 1e6:.2f} MFLOP per image, "
          "forward + backward)")
    print(f"ratio aekit/plain: {a / p:.2f}")


if __name__ == "__main__":
    main()
