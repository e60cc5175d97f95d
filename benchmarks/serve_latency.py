"""Decode round trips against a real `aekit serve`: what the page's map and sliders wait for.

Starts ``aekit serve RUN_DIR --port 0`` in a subprocess (trains the lesson's 2-D VAE on
mnist-5k for one epoch into a temporary folder when no RUN_DIR is given), then, from an httpx
client on loopback, times ``POST /api/decode`` with random map points: first one request at a
time (the page keeps one in flight), then CONCURRENCY clients at once (several pages, or a page
and its hover requests).  Prints median and 95th percentile in milliseconds and requests/s.

    python benchmarks/serve_latency.py [RUN_DIR] [--requests 500] [--concurrency 8] [--threads 1]

The page's budget is a p95 under 50 ms sequentially, so dragging on the map stays smooth.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BUDGET_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[rank - 1]


def train_tiny_run(root: Path) -> Path:
    from aekit.app import training

    out = root / "vae-mnist-5k"
    print("training the lesson's 2-D VAE on mnist-5k for one epoch ...", file=sys.stderr, flush=True)
    training.train(model="vae", dataset="mnist-5k", epochs=1, out=out, seed=0, model_options={"latent_dim": 2},
              write_report=False)
    return out


def start_server(run_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "aekit", "serve", str(run_dir), "--port", "0", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # "serving ... at http://127.0.0.1:PORT/ ..."
    match = re.search(r"http://[^\s/]+:\d+/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def random_points(points: list[dict], n: int, seed: int) -> list[list[float]]:
    """Points spread over the map's extent, as a dragging mouse would visit them."""
    rng = random.Random(seed)
    xs = [p["x"] for p in points] or [-3.0, 3.0]
    ys = [p["y"] for p in points] or [-3.0, 3.0]
    return [[rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys))] for _ in range(n)]


def timed_decodes(client: httpx.Client, url: str, points: list[list[float]]) -> list[float]:
    times = []
    for point in points:
        t0 = time.perf_counter()
        res = client.post(url + "api/decode", json={"point": point})
        res.raise_for_status()
        res.json()  # the page parses the answer too
        times.append((time.perf_counter() - t0) * 1000)
    return times


def report(name: str, times: list[float], seconds: float) -> None:
    print(f"{name:<12} n={len(times):<5} median {statistics.median(times):6.2f} ms   "
          f"p95 {percentile(times, 95):6.2f} ms   {len(times) / seconds:7.0f} req/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run folder (default: train a tiny one)")
    parser.add_argument("--requests", type=int, default=500, help="decodes per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads (torch threads)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aekit-bench-") as tmp:
        run_dir = args.run_dir or train_tiny_run(Path(tmp))
        proc, url = start_server(run_dir, args.threads)
        try:
            with httpx.Client(timeout=60) as client:
                points = client.get(url + "api/points").raise_for_status().json()["points"]  # loads the run
                timed_decodes(client, url, random_points(points, 50, seed=1))  # warm-up
                t0 = time.perf_counter()
                seq = timed_decodes(client, url, random_points(points, args.requests, seed=2))
                seq_seconds = time.perf_counter() - t0

            per_client = max(1, args.requests // args.concurrency)
            results: list[list[float]] = [[] for _ in range(args.concurrency)]

            def worker(i: int) -> None:
                with httpx.Client(timeout=60) as c:
                    timed_decodes(c, url, random_points(points, 5, seed=100 + i))  # open the connection
                    barrier.wait()
                    results[i] = timed_decodes(c, url, random_points(points, per_client, seed=200 + i))

            barrier = threading.Barrier(args.concurrency + 1)
            workers = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
            for w in workers:
                w.start()
            barrier.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            conc_seconds = time.perf_counter() - t0
            conc = [t for r in results for t in r]
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    print(f"run: {run_dir}  server --threads {args.threads}")
    report("sequential", seq, seq_seconds)
    report(f"{args.concurrency} clients", conc, conc_seconds)
    verdict = "within" if percentile(seq, 95) < BUDGET_MS else "OVER"
    print(f"sequential p95 {verdict} the {BUDGET_MS:.0f} ms budget")


if __name__ == "__main__":
    main()
