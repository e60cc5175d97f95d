"""Scaling figures: throughput of 1 vs N training processes, and the memory of streaming a folder.

1. Throughput.  The same `aekit train` run (dense-ae on mnist-5k, global batch 256) as one
   process with all cores' threads, then as N processes (`--nproc N`, DistributedDataParallel
   over gloo) with cores // N threads each.  Figures are the training loop's own images/s
   (metrics.jsonl), median over the epochs after the first, so start-up is not counted.
   On a machine with C cores, N processes of C/N threads against one of C threads measure
   what data parallelism costs or gains *on those same cores* (gradient all-reduce, smaller
   per-process batches); it is not the scaling you get by adding machines or GPUs.

2. Streaming.  Writes ``--images`` small PNGs (28x28 grey, ten class folders) with a process
   pool into a temporary folder, trains one epoch from it with ``--stream --workers W``, and
   samples the memory of the whole process tree (trainer + DataLoader workers) from /proc
   four times a second: the sum of PSS (shared pages split between the processes that share
   them: the honest total) and the sum of RSS (counts shared libraries once per process: an
   upper bound).  ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest single
   process) is printed too.  The bound to meet is 2 GiB.

    python benchmarks/scaling.py                      # both parts, 100,000 images
    python benchmarks/scaling.py --images 20000 --skip-throughput
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BOUND_BYTES = 2 << 30
CLASSES = 10


# -- 1. throughput --------------------------------------------------------------------------------

def _median_throughput(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["images_per_second"] for r in rows[1:]] or [rows[0]["images_per_second"]]
    return statistics.median(rates)


def _gpu_peak(run: Path) -> str:
    """", GPU memory peak N MiB" from a CUDA run's metrics.jsonl (rank 0), "" on the CPU."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    peaks = [r["gpu_memory_peak_mib"] for r in rows if "gpu_memory_peak_mib" in r]
    return f", GPU memory peak {max(peaks):.0f} MiB" if peaks else ""


def throughput(nproc: int, *, model: str, epochs: int, work: Path, device: str = "cpu") -> dict[tuple[int, int], float]:
    """images/s for (processes, threads each): 1 x cores, 1 x 1 and nproc x cores // nproc; on
    CUDA, 1 process and nproc processes (one GPU each)."""
    cores = len(os.sched_getaffinity(0))
    results = {}
    layouts = [(1, cores), (1, 1), (nproc, max(1, cores // nproc))]
    if device == "cuda":
        layouts = [(1, cores), (nproc, max(1, cores // nproc))]
    for n, threads in dict.fromkeys(layouts):
        out = work / f"throughput-{n}x{threads}"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "aekit", "train", "--model", model, "--dataset", "mnist-5k",
               "--epochs", str(epochs), "--batch-size", "256", "--device", device, "--no-progress",
               "--out", str(out)]
        if n > 1:
            cmd += ["--nproc", str(n)]
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        results[n, threads] = rate = _median_throughput(out)
        print(f"  {n} process(es) x {threads} thread(s): {rate:8.0f} images/s "
              f"(training loop; whole command {time.perf_counter() - started:.0f} s){_gpu_peak(out)}", flush=True)
    return results


# -- 2. streaming ---------------------------------------------------------------------------------

def _write_chunk(args: tuple[str, int, int]) -> None:
    from PIL import Image

    root, start, stop = args
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:28, 0:28]
    for i in range(start, stop):
        cy, cx, r = rng.uniform(6, 22), rng.uniform(6, 22), rng.uniform(2, 7)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * rng.uniform(0.5, 1.0)
        Image.fromarray((img * 255).astype(np.uint8)).save(f"{root}/c{i % CLASSES}/{i:06d}.png")


def write_folder(root: Path, n: int) -> None:
    for c in range(CLASSES):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    step = 2000
    with mp.Pool() as pool:
        pool.map(_write_chunk, [(str(root), s, min(s + step, n)) for s in range(0, n, step)])


def _tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[-1] == "kB"}
        return fields.get("Rss", 0), fields.get("Pss", 0)
    except (OSError, ValueError):
        return 0, 0


class TreeMemory(threading.Thread):
    """Peak summed RSS and PSS of a process and all its descendants, sampled every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            rss, pss = map(sum, zip(*(_memory(p) for p in pids), strict=True)) if pids else (0, 0)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.done.wait(self.period)


def streaming(n: int, *, workers: int, work: Path, device: str = "cpu") -> dict[str, float]:
    data = work / "images"
    started = time.perf_counter()
    write_folder(data, n)
    print(f"  wrote {n:,} PNGs of 28x28 in {time.perf_counter() - started:.0f} s "
          f"({sum(f.stat().st_size for f in data.rglob('*.png')) / 2**20:.0f} MiB on disk; "
          f"{n * 28 * 28 * 4 / 2**20:.0f} MiB if decoded to float32 in memory)", flush=True)
    out = work / "stream-run"
    cmd = [sys.executable, "-m", "aekit", "-v", "train", "--model", "dense-ae", "--dataset", f"folder:{data}",
           "--stream", "--workers", str(workers), "--epochs", "1", "--batch-size", "256", "--device", device,
           "--no-progress", "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    monitor = TreeMemory(proc.pid)
    monitor.start()
    _, stderr = proc.communicate()
    monitor.done.set()
    monitor.join()
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"streamed training failed:\n{stderr[-3000:]}")
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    print(f"  1 epoch streamed, {workers} workers: {record['images_per_second']:.0f} images/s in the training "
          f"loop ({record['seconds']:.0f} s); whole command {wall:.0f} s (scan, split, val/test decode, "
          f"evaluation, report){_gpu_peak(out)}")
    print(f"  peak memory of the process tree (up to {monitor.peak_processes} processes): "
          f"PSS {monitor.peak_pss / 2**20:.0f} MiB, RSS summed {monitor.peak_rss / 2**20:.0f} MiB; "
          f"largest single process (ru_maxrss) {largest / 2**20:.0f} MiB")
    verdict = "within" if monitor.peak_pss < BOUND_BYTES else "ABOVE"
    print(f"  bound: {BOUND_BYTES / 2**30:.0f} GiB -> PSS peak is {verdict} the bound "
          f"({'also' if monitor.peak_rss < BOUND_BYTES else 'but not'} the RSS sum)")
    return {"images_per_second": record["images_per_second"], "peak_pss": monitor.peak_pss,
            "peak_rss_sum": monitor.peak_rss, "largest_rss": largest, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="PNGs to write and stream")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the streamed run")
    parser.add_argument("--nproc", type=int, default=2, help="processes for the throughput comparison")
    parser.add_argument("--model", default="dense-ae", help="model for the throughput comparison")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for the throughput comparison")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: train on GPUs (the process comparison needs --nproc GPUs)")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("scaling.py: --device cuda, but torch sees no CUDA GPU here; use --device cpu")
        if torch.cuda.device_count() < args.nproc:
            print(f"only {torch.cuda.device_count()} GPU(s): the {args.nproc}-process comparison is skipped")
            args.skip_throughput = True

    work = Path(tempfile.mkdtemp(prefix="aekit-scaling-"))
    print(f"machine: {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; work folder {work}")
    try:
        # Streaming first, so that ru_maxrss of the children covers only its processes.
        if not args.skip_stream:
            print(f"streaming {args.images:,} images from disk:", flush=True)
            streaming(args.images, workers=args.workers, work=work, device=args.device)
        if not args.skip_throughput:
            print(f"throughput, {args.model} on mnist-5k, global batch 256:", flush=True)
            rates = throughput(args.nproc, model=args.model, epochs=args.epochs, work=work, device=args.device)
            (one, *_, many) = rates.values()
            print(f"  {args.nproc} processes / 1 process of all cores' threads: {many / one:.2f}x "
                  "(on the same cores: communication cost and thread contention, not added hardware)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
