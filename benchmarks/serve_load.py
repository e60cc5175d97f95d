"""`aekit serve` under load: many clients, good and bad requests mixed, memory watched.

Starts ``aekit serve RUN_DIR --port 0`` in a subprocess (trains a tiny 8-D dense autoencoder on
mnist-5k for one epoch into a temporary folder when no RUN_DIR is given), warms it up, reads the
server's resident memory (VmRSS in /proc/PID/status), then sends DECODES decode requests and
UPLOADS image uploads from CLIENTS concurrent httpx clients on loopback, with one malformed or
oversized request slipped in after every BAD_EVERY good ones (bad JSON, NaN, values out of
range, a wrong latent size, unknown keys, a 3 MB body, a 6 MB upload, a text file as an image,
a truncated PNG, a PNG claiming 100,000 x 100,000 pixels, an unknown run ...).  Then it reads
the memory again and prints throughput, latency percentiles, status counts, errors and growth.

    python benchmarks/serve_load.py [RUN_DIR] [--decodes 2000] [--uploads 200] [--clients 16]
                                    [--bad-every 10] [--threads 1] [--device cpu|cuda] [--json]

With ``--device cuda`` the server runs the model on the GPU and its peak GPU memory
(``torch.cuda.max_memory_allocated`` in the server, from ``GET /api/runs``) is printed too.

Passes (exit 0) when no request got a 5xx or a connection error, every good request got 200,
every bad one a 4xx, and RSS grew by less than --max-rss-growth-mb (default 64).
tests/test_serve_load.py runs a smaller version of the same function.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

# -- the requests -------------------------------------------------------------------------------


@dataclass
class Spec:
    kind: str  # "decode", "upload", or "bad: <what>"
    method: str
    path: str
    kwargs: dict = field(default_factory=dict)

    @property
    def good(self) -> bool:
        return not self.kind.startswith("bad")


def png_bytes(rng: random.Random, size: tuple[int, int], mode: str) -> bytes:
    w, h = size
    channels = 3 if mode == "RGB" else 1
    pixels = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, (h, w, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format=rng.choice(["PNG", "PNG", "JPEG"]))
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


JSON = {"content-type": "application/json"}


def bad_specs(rng: random.Random, latent_dim: int) -> list[Spec]:
    """One of each kind of bad request; each must get a 4xx and leave the server serving."""
    ok_z = [0.0] * latent_dim
    good_png = png_bytes(rng, (28, 28), "L")
    return [
        Spec("bad: not JSON", "POST", "/api/decode", {"content": b'{"z": [1, 2', "headers": JSON}),
        Spec("bad: NaN", "POST", "/api/decode", {"content": b'{"z": [NaN]}', "headers": JSON}),
        Spec("bad: out of range", "POST", "/api/decode", {"json": {"z": [1e30] * latent_dim}}),
        Spec("bad: wrong latent size", "POST", "/api/decode", {"json": {"z": ok_z + [0.0]}}),
        Spec("bad: unknown key", "POST", "/api/decode", {"json": {"z": ok_z, "code": "os.system('x')"}}),
        Spec("bad: two latents", "POST", "/api/decode", {"json": {"z": ok_z, "point": [0, 0]}}),
        Spec("bad: nested 50,000 deep", "POST", "/api/decode",
             {"content": b'{"z": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "headers": JSON}),
        Spec("bad: 3 MB body", "POST", "/api/decode", {"content": b" " * 3_000_000, "headers": JSON}),
        Spec("bad: form instead of JSON", "POST", "/api/decode", {"data": {"z": "1,2,3"}}),
        Spec("bad: 1,000 unknown keys", "POST", "/api/decode",
             {"content": ("{" + ",".join(f'"k{i}": 1' for i in range(1000)) + "}").encode(), "headers": JSON}),
        Spec("bad: 6 MB upload", "POST", "/api/reconstruct",
             {"files": {"file": ("big.png", good_png + b"\0" * 6_000_000, "image/png")}}),
        Spec("bad: text as image", "POST", "/api/reconstruct",
             {"files": {"file": ("notes.png", b"this is not an image\n" * 20, "image/png")}}),
        Spec("bad: truncated PNG", "POST", "/api/reconstruct",
             {"files": {"file": ("cut.png", good_png[: len(good_png) // 2], "image/png")}}),
        Spec("bad: PNG bomb header", "POST", "/api/reconstruct",
             {"files": {"file": ("bomb.png", _png_header_only(100_000, 100_000), "image/png")}}),
        Spec("bad: no file field", "POST", "/api/reconstruct", {"data": {"label": "1"}}),
        Spec("bad: unknown run", "POST", "/api/decode?run=nope", {"json": {"z": ok_z}}),
        Spec("bad: no such test image", "GET", "/api/image/99999999", {}),
        Spec("bad: path outside the run", "GET", "/report/0/..%2Fconfig.json", {}),
    ]


def build_requests(n_decodes: int, n_uploads: int, bad_every: int, latent_dim: int, points: list[dict],
                   seed: int = 0) -> list[Spec]:
    rng = random.Random(seed)
    xs = [p["x"] for p in points] or [-3.0, 3.0]
    ys = [p["y"] for p in points] or [-3.0, 3.0]
    good: list[Spec] = []
    for _ in range(n_decodes):
        if rng.random() < 0.5:
            body = {"point": [rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys))]}
        else:
            body = {"z": [rng.gauss(0, 1) for _ in range(latent_dim)]}
        good.append(Spec("decode", "POST", "/api/decode", {"json": body}))
    for _ in range(n_uploads):
        size = rng.choice([(28, 28), (64, 48), (200, 150), (13, 31)])
        data = png_bytes(rng, size, rng.choice(["L", "RGB"]))
        good.append(Spec("upload", "POST", "/api/reconstruct", {"files": {"file": ("drawing.png", data, "image/png")}}))
    rng.shuffle(good)
    bads = bad_specs(rng, latent_dim)
    mixed: list[Spec] = []
    for i, spec in enumerate(good, start=1):
        mixed.append(spec)
        if bad_every and i % bad_every == 0:
            mixed.append(bads[(i // bad_every) % len(bads)])
    return mixed


# -- the server -------------------------------------------------------------------------------------

def train_tiny_run(root: Path) -> Path:
    from aekit.app import training

    out = root / "dense-ae-mnist-5k"
    print("training a tiny dense autoencoder on mnist-5k for one epoch ...", file=sys.stderr, flush=True)
    training.train(model="dense-ae", dataset="mnist-5k", epochs=1, batch_size=256, out=out, seed=0,
              model_options={"hidden": (64,), "latent_dim": 8}, write_report=False)
    return out


def check_device(device: str) -> None:
    """Stop here, in one line, when CUDA is asked for and this machine has none."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu")


def start_server(run_dir: Path, threads: int, device: str = "cpu") -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "aekit", "serve", str(run_dir), "--port", "0", "--threads", str(threads),
           "--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # "serving ... at http://127.0.0.1:PORT/ ..."
    match = re.search(r"http://[^\s/]+:\d+", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(1, -(-int(q * len(ordered)) // 100)) - 1]


# -- the load ---------------------------------------------------------------------------------------

async def _send_all(base: str, specs: list[Spec], clients: int, timeout: float) -> list[dict]:
    queue: asyncio.Queue[tuple[int, Spec]] = asyncio.Queue()
    for item in enumerate(specs):
        queue.put_nowait(item)
    results: list[dict] = [{}] * len(specs)

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
            while True:
                try:
                    i, spec = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    res = await client.request(spec.method, spec.path, **spec.kwargs)
                    status, detail = res.status_code, res.text[:160]
                except httpx.HTTPError as err:  # a refused or dropped connection: counted as an error
                    status, detail = 0, f"{type(err).__name__}: {err}"
                results[i] = {"kind": spec.kind, "good": spec.good, "status": status, "detail": detail,
                              "ms": (time.perf_counter() - started) * 1000}

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return results


def run_load(run_dir: Path, *, decodes: int = 2000, uploads: int = 200, clients: int = 16, bad_every: int = 10,
             threads: int = 1, device: str = "cpu", seed: int = 0, timeout: float = 60.0) -> dict:
    """Serve ``run_dir``, send the mixed load, and return what happened (see the module doc)."""
    proc, base = start_server(run_dir, threads, device)
    try:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            info = client.get("/api/points").json()  # loads the model and the map
            latent_dim = int(info["latent_dim"])
        specs = build_requests(decodes, uploads, bad_every, latent_dim, info.get("points", []), seed)
        # Warm-up: one round of every kind of request from every client, so that the thread pool,
        # the allocator's arenas and the lazily loaded pieces exist before memory is measured.
        warm = [s for s in specs if s.kind in ("decode", "upload")][: 4 * clients] + bad_specs(random.Random(1),
                                                                                              latent_dim)
        asyncio.run(_send_all(base, warm * 2, clients, timeout))
        rss_before = rss_mb(proc.pid)
        started = time.perf_counter()
        results = asyncio.run(_send_all(base, specs, clients, timeout))
        seconds = time.perf_counter() - started
        rss_after = rss_mb(proc.pid)
        alive = proc.poll() is None
        with httpx.Client(base_url=base, timeout=timeout) as client:
            gpu_peak = client.get("/api/runs").json().get("gpu_memory_peak_bytes") if alive else None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    server_errors = [r for r in results if r["status"] >= 500]
    connection_errors = [r for r in results if r["status"] == 0]
    wrong = [r for r in results if r["status"] and (r["status"] != 200 if r["good"] else not 400 <= r["status"] < 500)]
    latency = {}
    for kind in ("decode", "upload"):
        ms = [r["ms"] for r in results if r["kind"] == kind and r["status"] == 200]
        latency[kind] = {"n": len(ms), "max_ms": round(max(ms, default=float("nan")), 1),
                         **{f"p{q}_ms": round(percentile(ms, q), 1) for q in (50, 90, 95, 99)}}
    bad_kinds: dict[str, list[int]] = {}
    for r in results:
        if not r["good"]:
            bad_kinds.setdefault(r["kind"], []).append(r["status"])
    return {
        "requests": len(results), "seconds": round(seconds, 2), "requests_per_second": round(len(results) / seconds, 1),
        "clients": clients, "statuses": statuses, "latency": latency,
        "bad_requests": {k: sorted(set(v)) for k, v in bad_kinds.items()},
        "server_errors": len(server_errors), "connection_errors": len(connection_errors),
        "unexpected": [{k: r[k] for k in ("kind", "status", "detail")} for r in wrong[:10]], "n_unexpected": len(wrong),
        "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1), "server_alive": alive, "device": device,
        "gpu_memory_peak_mb": None if gpu_peak is None else round(gpu_peak / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--decodes", type=int, default=2000)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--bad-every", type=int, default=10, help="one bad request after every N good ones")
    parser.add_argument("--threads", type=int, default=1, help="the server's --threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the server's --device")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    check_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or train_tiny_run(Path(tmp))
        result = run_load(run_dir, decodes=args.decodes, uploads=args.uploads, clients=args.clients,
                          bad_every=args.bad_every, threads=args.threads, device=args.device)
    ok = (result["server_errors"] == 0 and result["connection_errors"] == 0 and result["n_unexpected"] == 0
          and result["server_alive"] and result["rss_growth_mb"] < args.max_rss_growth_mb)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if ok else 1
    print(f"{result['requests']:,} requests from {result['clients']} clients in {result['seconds']} s: "
          f"{result['requests_per_second']} requests/s")
    for kind, lat in result["latency"].items():
        print(f"  {kind:<7} {lat['n']:>6,} ok   p50 {lat['p50_ms']:7.1f} ms   p90 {lat['p90_ms']:7.1f} ms   "
              f"p95 {lat['p95_ms']:7.1f} ms   p99 {lat['p99_ms']:7.1f} ms   max {lat['max_ms']:7.1f} ms")
    print(f"  statuses: {result['statuses']}")
    for kind, statuses in result["bad_requests"].items():
        print(f"    {kind:<28} -> {statuses}")
    print(f"  server errors (5xx): {result['server_errors']}   connection errors: {result['connection_errors']}   "
          f"unexpected answers: {result['n_unexpected']}")
    for r in result["unexpected"]:
        print(f"    {r}")
    print(f"  server RSS {result['rss_before_mb']} MB -> {result['rss_after_mb']} MB "
          f"(growth {result['rss_growth_mb']} MB; bound {args.max_rss_growth_mb} MB)")
    if result["gpu_memory_peak_mb"] is not None:
        print(f"  server GPU memory peak ({args.device}): {result['gpu_memory_peak_mb']} MiB "
              "(torch.cuda.max_memory_allocated)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
