"""Run the fuzz targets of fuzz/targets.py for many cases each and count what happened.

    python fuzz/run_fuzz.py 5000                      # 5,000 cases per target
    python fuzz/run_fuzz.py 20000 --targets image,csv --first-seed 1000000
    python fuzz/run_fuzz.py --replay image:1234        # rerun one case, with its traceback

Each case ends "ok" (a result the oracle accepts) or "refused: <AekitError subclass>"; any other
ending is a bug: "CRASH <exception type>", "WRONG <what>", or "HANG" (over --timeout seconds).
Bugs are listed with the seed that reproduces them, and their input files are written to
--save (default: aekit-fuzz-failures in the temp folder).  Exit status 1 when there is any bug.

The CI tests (tests/test_fuzz.py) run the same targets on a few hundred seeds each.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from targets import TARGETS, WORK, WrongResult

torch.set_num_threads(1)
warnings.simplefilter("ignore")  # Pillow warns about every corrupt EXIF block it meets


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang


def run_case(name: str, seed: int, timeout: float) -> tuple[str, str | None]:
    """(outcome, traceback for bugs)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return TARGETS[name].run_seed(seed), None
    except Hang:
        return "HANG", f"over {timeout} s"
    except WrongResult as err:
        return f"WRONG {str(err).split(':')[0][:60]}", traceback.format_exc()
    except Exception as err:  # noqa: BLE001 - every other ending is the bug being counted
        return f"CRASH {type(err).__name__}", traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def save_case(folder: Path, name: str, seed: int) -> Path:
    case = TARGETS[name].case(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{seed}"
    if isinstance(case, dict):
        blobs = {k: v for k, v in case.items() if isinstance(v, bytes)}
        rest = {k: v for k, v in case.items() if not isinstance(v, bytes)}
        for key, blob in blobs.items():
            path.with_suffix(f".{key.replace('.', '_')}.bin").write_bytes(blob)
        path.with_suffix(".json").write_text(json.dumps(rest, default=str, indent=1))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", type=int, nargs="?", default=1000, help="cases per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--first-seed", type=int, default=10_000_000,
                        help="seeds run from here (the CI tests use small seeds)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    parser.add_argument("--save", type=Path, default=Path(tempfile.gettempdir()) / "aekit-fuzz-failures",
                        help="folder for the inputs of failing cases")
    parser.add_argument("--replay", metavar="TARGET:SEED", help="run one case and show its traceback")
    args = parser.parse_args()

    if args.replay:
        name, seed = args.replay.split(":")
        outcome, trace = run_case(name, int(seed), args.timeout)
        print(outcome)
        if trace:
            print(trace)
        return 0 if trace is None else 1

    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    print(f"{args.examples:,} cases per target, seeds {args.first_seed:,}..{args.first_seed + args.examples - 1:,}; "
          f"scratch folder {WORK.path}")
    total_bugs = 0
    summary = {}
    for name in names:
        counts: collections.Counter[str] = collections.Counter()
        bugs: list[tuple[int, str, str]] = []
        started = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.examples):
            outcome, trace = run_case(name, seed, args.timeout)
            counts[outcome] += 1
            if trace is not None:
                bugs.append((seed, outcome, trace))
        seconds = time.perf_counter() - started
        summary[name] = {"cases": args.examples, "seconds": round(seconds, 1), "outcomes": dict(counts)}
        print(f"\n{name}: {args.examples:,} cases in {seconds:.1f} s -- {TARGETS[name].describe}")
        for outcome, n in counts.most_common():
            print(f"  {n:>8,}  {outcome}")
        for seed, outcome, trace in bugs[:5]:
            saved = save_case(args.save, name, seed)
            last = trace.strip().splitlines()[-1]
            print(f"  BUG seed {seed}: {outcome}: {last}\n      replay: python fuzz/run_fuzz.py --replay {name}:{seed}"
                  f"  (input saved as {saved}.*)")
        total_bugs += len(bugs)
    print(f"\n{sum(v['cases'] for v in summary.values()):,} cases, {total_bugs} bug(s)")
    print(json.dumps(summary))
    return 1 if total_bugs else 0


if __name__ == "__main__":
    sys.exit(main())
