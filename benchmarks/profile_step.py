"""Where a training run's time goes: one `aekit train` run, timed by part and profiled by kind of work.

The run is ``aekit.app.training.train`` with aekit's defaults and the options given here, for
three epochs: the first warms up (allocations, kernel choices), the second is timed by part
(its training steps, its validation pass, its checkpoint), and the first ``--steps`` steps of
the third run under ``torch.profiler``.  The profile is grouped by kind of work (convolution,
pooling, upsampling, normalisation, activations, loss, optimiser, memory), by CPU self-time on
a CPU and by GPU kernel time on a GPU.  On a GPU it also says how busy the GPU was during the
profiled steps (kernel time / wall time: far below 1 means the step is bound by the CPU
launching kernels, not by the GPU) and how often per step the CPU waited for the GPU.

    python benchmarks/profile_step.py                                  # the default model, mnist-5k, CPU
    python benchmarks/profile_step.py --model conv-ae --batch-size 256 --precision bf16
    python benchmarks/profile_step.py --device cuda --dataset mnist --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from aekit.app import training
from aekit.run import read_config
from aekit.train.loop import Callbacks, Trainer

WAITS = "waiting for the GPU"
# First match wins: an op's name (lower case) containing any of these words.
KINDS = (
    (WAITS, ("cudastreamsynchronize", "cudadevicesynchronize", "cudaeventsynchronize")),
    ("CUDA runtime calls (launches, copies)", ("cudalaunch", "cudamemcpy", "cudamemset", "cudastream", "cudaevent",
                                               "cudafunc", "cudagetlasterror", "cudapeekatlasterror", "culaunch")),
    ("reading numbers (.item)", ("_local_scalar_dense", "aten::item")),
    ("convolution", ("conv", "cudnn", "mkldnn_convolution")),
    ("pooling", ("max_pool", "avg_pool", "adaptive_")),
    ("upsampling", ("upsample", "interpolate")),
    ("normalisation", ("layer_norm", "batch_norm", "group_norm")),
    ("matrix products", ("addmm", "matmul", "::mm", "bmm", "linear", "gemm")),
    ("activations", ("relu", "gelu", "sigmoid", "silu", "tanh", "threshold", "softplus")),
    ("loss", ("binary_cross_entropy", "mse_loss", "log_softmax", "nll_loss", "cross_entropy")),
    ("optimiser", ("_foreach", "adam", "lerp", "addcdiv", "addcmul")),
    ("memory (copies, fills, gathers)", ("copy", "fill_", "zero_", "index", "gather", "cat", "stack", "clone",
                                         "empty", "contiguous", "memcpy", "memset", "to", "cast")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, words in KINDS:
        if any(w in low for w in words):
            return kind
    return "other"


def device_self_time(evt) -> float:
    """An event's own GPU time in microseconds (the attribute's name changed across torch versions)."""
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(evt, attr):
            return float(getattr(evt, attr))
    return 0.0


def report(title: str, events, time_of, steps: int, top: int) -> dict[str, float]:
    """Print the share of ``time_of`` (microseconds) by kind of work and the longest entries; {kind: share}."""
    by_kind: collections.Counter = collections.Counter()
    for e in events:
        by_kind[kind_of(e.key)] += time_of(e)
    whole = sum(by_kind.values()) or 1.0
    print(f"  {title}, {whole / 1e3 / steps:.2f} ms a step, by kind of work:")
    for kind, t in by_kind.most_common():
        print(f"    {kind:<38} {t / whole:6.1%}  {t / 1e3 / steps:7.3f} ms a step")
    ranked = sorted(events, key=time_of, reverse=True)[:top]
    print(f"    the {len(ranked)} that took longest (ms a step, calls a step):")
    for e in ranked:
        print(f"      {time_of(e) / 1e3 / steps:7.3f}  {e.count / steps:5.1f}  {e.key[:90]}")
    return {k: v / whole for k, v in by_kind.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the task's default model (conv-vae)")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="default: aekit's")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=50, help="steps profiled")
    parser.add_argument("--top", type=int, default=12, help="ops (CPU) or kernels (GPU) listed by time")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("profile_step.py: --device cuda, but torch sees no CUDA GPU here; use --device cpu", file=sys.stderr)
        return 2
    on_gpu = args.device == "cuda"

    # Parts of an epoch, timed around the trainer's own methods.
    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name, method):
        def wrapper(self, *a, **k):
            if on_gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            try:
                return method(self, *a, **k)
            finally:
                if on_gpu:
                    torch.cuda.synchronize()
                spent[name] += time.perf_counter() - t0
        return wrapper

    originals = Trainer.validate, Trainer.save_checkpoint

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    prof = profile(activities=activities)
    state = {"profiling": False, "wall": 0.0, "t0": 0.0, "epoch2": {}}

    def on_epoch_start(epoch: int, batches: int) -> None:
        if epoch == 1:
            spent.clear()
        if epoch == 2:
            state["epoch2"] = dict(spent)
            if on_gpu:
                torch.cuda.synchronize()
            prof.start()
            state["profiling"], state["t0"] = True, time.perf_counter()

    def on_step(info) -> None:
        if state["profiling"] and info.batch_in_epoch >= min(args.steps, info.batches_per_epoch):
            if on_gpu:
                torch.cuda.synchronize()
            state["wall"] = time.perf_counter() - state["t0"]
            prof.stop()
            state["profiling"] = False

    options = {"dataset": args.dataset, "data_dir": args.data_dir, "batch_size": args.batch_size,
               "precision": args.precision, "device": args.device}
    Trainer.validate = timed("validation", Trainer.validate)
    Trainer.save_checkpoint = timed("checkpoint", Trainer.save_checkpoint)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = training.train(model=args.model, out=Path(tmp) / "run", epochs=3, evaluate_test=False,
                                 write_report=False, callbacks=Callbacks(on_step=on_step, on_epoch_start=on_epoch_start),
                                 **{k: v for k, v in options.items() if v is not None})
            history = run.result.history
            cfg = read_config(run.run_dir)
    finally:
        Trainer.validate, Trainer.save_checkpoint = originals
    second = history[1]
    steps_per_epoch = -(-second["step"] // second["epoch"])
    parts = state["epoch2"]
    print(f"model {cfg.model}, dataset {cfg.data.dataset}, batch {cfg.train.batch_size}, lr {cfg.train.lr:g}, "
          f"precision {cfg.train.precision}, device {args.device}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}")
    total = second["seconds"] + parts.get("validation", 0.0) + parts.get("checkpoint", 0.0)
    print(f"epoch 2 of the run ({steps_per_epoch} steps): {total:.2f} s")
    print(f"  training steps  {second['seconds']:7.2f} s  {second['seconds'] / total:6.1%}  "
          f"({second['images_per_second']:.0f} images/s, {1e3 * second['seconds'] / steps_per_epoch:.2f} ms a step)")
    for name in ("validation", "checkpoint"):
        print(f"  {name:<15} {parts.get(name, 0.0):7.2f} s  {parts.get(name, 0.0) / total:6.1%}")

    events = prof.key_averages()
    steps = min(args.steps, steps_per_epoch)
    wall_ms = 1e3 * state["wall"] / steps
    ops = [e for e in events if not e.key.startswith(("ProfilerStep", "[memory]"))]
    cpu_ops = [e for e in ops if e.device_type == torch.autograd.DeviceType.CPU]
    print(f"profiled {steps} steps of epoch 3: {wall_ms:.2f} ms a step (with the profiler's own cost)")
    figures: dict = {"profiled_ms_per_step": wall_ms}
    if on_gpu:
        # The GPU's timeline also carries the CPU's annotations (Optimizer.step#AdamW.step), not kernels.
        cpu_names = {e.key for e in cpu_ops}
        kernels = [e for e in ops if e.device_type == torch.autograd.DeviceType.CUDA and e.key not in cpu_names]
        gpu_ms = sum(device_self_time(e) for e in kernels) / 1e3 / steps
        waits = sum(e.count for e in cpu_ops if kind_of(e.key) == WAITS) / steps
        to_gpu, from_gpu = (sum(e.count for e in kernels if e.key.startswith(f"Memcpy {d}")) / steps
                            for d in ("HtoD", "DtoH"))
        print(f"  GPU kernels {gpu_ms:.2f} ms a step: the GPU was busy {gpu_ms / wall_ms:.0%} of the time; "
              "the rest is the CPU preparing and launching the work")
        print(f"  the CPU waited for the GPU {waits:.2f} times a step; copies to the GPU {to_gpu:.2f}, "
              f"from it {from_gpu:.2f} a step")
        figures.update(gpu_kernel_ms_per_step=gpu_ms, waits_per_step=waits,
                       gpu_kinds=report("GPU kernel time", kernels, device_self_time, steps, args.top))
    figures["cpu_kinds"] = report("CPU time" + (", the CPU launching the GPU's work" if on_gpu else ""), cpu_ops,
                                  lambda e: e.self_cpu_time_total, steps, args.top)
    if args.json:
        print(json.dumps({"model": cfg.model, "batch_size": cfg.train.batch_size, "device": args.device,
                          "epoch_seconds": total, "train_seconds": second["seconds"],
                          "validation_seconds": parts.get("validation", 0.0),
                          "checkpoint_seconds": parts.get("checkpoint", 0.0),
                          "images_per_second": second["images_per_second"], **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
