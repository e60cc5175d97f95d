"""Decode round trips against a real `aekit serve`: what the page's map and sliders wait for.

Starts ``aekit serve RUN_DIR --port 0`` in a subprocess (trains the lesson's 2-D VAE on
mnist-5k for one epoch into a temporary folder when no RUN_DIR is given), then, from httpx
clients on loopback, times ``POST /api/decode`` with random map points: first one request at a
time (the page keeps one in flight), then CLIENTS clients at once (several pages, or a page and
its hover requests; one thread each, each with its own connection).  Prints p50 and p95 in
milliseconds and requests/s, and as a baseline the same decodes in this process without HTTP:
the model's ``decode`` alone, and the whole answer the server computes (latent, decode, PNG);
the ratio of the HTTP p50 to the answer's is what serving costs.

    python benchmarks/serve_latency.py [RUN_DIR] [--requests 500] [--clients 8] [--threads 1]
                                       [--device cpu|cuda]

With ``--device cuda`` the server (and the baseline) run the model on the GPU, and the server's
peak GPU memory (``torch.cuda.max_memory_allocated``, from ``GET /api/runs``) is printed.

The page's budgets: a p95 under 50 ms sequentially, so dragging on the map stays smooth, and
under 50 ms with 8 clients (issue 13).  The machine's other load counts in every figure: run it
a few times and compare medians.
"""

from __future__ import annotations

import argparse
import random
import re
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


def check_device(device: str) -> None:
    """Stop here, in one line, when CUDA is asked for and this machine has none."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu")


def train_tiny_run(root: Path) -> Path:
    from aekit.app import training

    out = root / "vae-mnist-5k"
    print("training the lesson's 2-D VAE on mnist-5k for one epoch ...", file=sys.stderr, flush=True)
    training.train(model="vae", dataset="mnist-5k", epochs=1, out=out, seed=0, model_options={"latent_dim": 2},
                   write_report=False)
    return out


def start_server(run_dir: Path, threads: int, device: str = "cpu") -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "aekit", "serve", str(run_dir), "--port", "0", "--threads", str(threads),
           "--device", device]
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


def concurrent_decodes(url: str, points: list[dict], clients: int, requests: int) -> tuple[list[float], float]:
    """``requests`` decodes from ``clients`` threads at once: their times (ms) and the seconds it all took."""
    per_client = max(1, requests // clients)
    results: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        with httpx.Client(timeout=60) as c:
            timed_decodes(c, url, random_points(points, 5, seed=100 + i))  # open the connection
            barrier.wait()
            results[i] = timed_decodes(c, url, random_points(points, per_client, seed=200 + i))

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return [t for r in results for t in r], time.perf_counter() - t0


def in_process(run_dir: Path, points: list[list[float]], device: str) -> tuple[list[float], list[float]]:
    """The baseline, one at a time in this process: the model's decode alone, and the server's
    whole answer to a decode request (:meth:`aekit.web.RunExplorer.decode`) without HTTP (ms)."""
    import torch

    from aekit.web.music import explorer_for

    torch.set_num_threads(1)  # as the server's --threads 1
    explorer = explorer_for(run_dir, run_id="0", name=run_dir.name, device=device)
    model = explorer.load().model
    where = next(model.parameters()).device
    latents = [explorer.latent(point=p).to(where) for p in points]
    label = 0 if model.conditional else None
    y = None if label is None else torch.zeros(1, dtype=torch.long, device=where)
    raw, answer = [], []
    with torch.inference_mode():
        for z in latents:
            t0 = time.perf_counter()
            model.decode(z[None], y).cpu()  # .cpu(): waits for a GPU to finish
            raw.append((time.perf_counter() - t0) * 1000)
    for p in points:
        t0 = time.perf_counter()
        explorer.decode(point=p, label=label)
        answer.append((time.perf_counter() - t0) * 1000)
    return raw, answer


def report(name: str, times: list[float], seconds: float | None = None) -> None:
    rate = f"   {len(times) / seconds:7.0f} req/s" if seconds else ""
    print(f"{name:<30} n={len(times):<5} p50 {percentile(times, 50):7.2f} ms   p95 {percentile(times, 95):7.2f} ms"
          + rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run folder (default: train a tiny one)")
    parser.add_argument("--requests", type=int, default=500, help="decodes per phase")
    parser.add_argument("--clients", "--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads (torch threads)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the server's --device")
    args = parser.parse_args()
    check_device(args.device)

    with tempfile.TemporaryDirectory(prefix="aekit-bench-") as tmp:
        run_dir = args.run_dir or train_tiny_run(Path(tmp))
        proc, url = start_server(run_dir, args.threads, args.device)
        try:
            with httpx.Client(timeout=60) as client:
                points = client.get(url + "api/points").raise_for_status().json()["points"]  # loads the run
                timed_decodes(client, url, random_points(points, 50, seed=1))  # warm-up
                t0 = time.perf_counter()
                seq = timed_decodes(client, url, random_points(points, args.requests, seed=2))
                seq_seconds = time.perf_counter() - t0
            conc, conc_seconds = concurrent_decodes(url, points, args.clients, args.requests)
            with httpx.Client(timeout=60) as client:
                server = client.get(url + "api/runs").raise_for_status().json()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        # After the server has stopped, so that it takes no core from the baseline.
        raw, answer = in_process(run_dir, random_points(points, args.requests, seed=2), args.device)

    print(f"run: {run_dir}  server --threads {args.threads} --device {server.get('device', args.device)}")
    report("in process: model.decode", raw)
    report("in process: the whole answer", answer)
    report("HTTP, sequential", seq, seq_seconds)
    report(f"HTTP, {args.clients} clients", conc, conc_seconds)
    base = percentile(answer, 50)
    print(f"HTTP p50 / in-process answer p50: sequential {percentile(seq, 50) / base:.1f}x, "
          f"{args.clients} clients {percentile(conc, 50) / base:.1f}x")
    if server.get("gpu_memory_peak_bytes") is not None:
        print(f"server GPU memory peak: {server['gpu_memory_peak_bytes'] / 2**20:.1f} MiB "
              "(torch.cuda.max_memory_allocated)")
    for name, times in (("sequential", seq), (f"{args.clients} clients", conc)):
        verdict = "within" if percentile(times, 95) < BUDGET_MS else "OVER"
        print(f"{name} p95 {verdict} the {BUDGET_MS:.0f} ms budget")


if __name__ == "__main__":
    main()
