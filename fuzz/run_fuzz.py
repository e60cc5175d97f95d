"""Run the fuzz targets of fuzz/targets.py for many cases each and count what happened.

    python fuzz/run_fuzz.py 5000                      # 5,000 cases per target
    python fuzz/run_fuzz.py 20000 --targets image,csv --first-seed 1000000
    python fuzz/run_fuzz.py --replay image:1234        # rerun one case, with its traceback

Each case ends "ok" (a result the oracle accepts) or "refused: <AekitError subclass>"; any other
ending is a bug: "CRASH <exception type>" (an uncaught exception: a traceback), "WRONG <what>",
"HANG" (over --timeout seconds), or "MEMORY" (the case took the process's peak memory over
--max-rss-mib).  Bugs are listed with the seed that reproduces them, and their input files are
written to --save (default: aekit-fuzz-failures in the temp folder).  Exit status 1 when there is
any bug.

Memory is the process's peak resident set size (getrusage's ru_maxrss), which only ever grows:
a target's figure is the peak so far when it finished, and its "largest rise" is the case that
raised the peak the most.  The last line is the summary as JSON.

The CI tests (tests/test_fuzz.py) run the same targets on a few hundred seeds each.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
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


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_case(name: str, seed: int, timeout: float) -> tuple[str, str | None]:
    """(outcome, traceback for bugs)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            case = TARGETS[name].case(seed)
        except (Hang, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 - a bug of fuzz/targets.py, not of aekit
            return f"FUZZER-BUG {type(err).__name__} (in the case generator)", traceback.format_exc()
        return TARGETS[name].run(case), None
    except Hang:
        return "HANG", f"over {timeout} s"
    except WrongResult as err:
        return f"WRONG {str(err).split(':')[0][:60]}", traceback.format_exc()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001 - every other ending is the bug being counted (a Rust
        # library's panic arrives as pyo3's PanicException, which is not an Exception)
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
    parser.add_argument("--max-rss-mib", type=float, default=2048.0,
                        help="a case that takes the process's peak memory above this many MiB is a bug")
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
    total_bugs = total_tracebacks = 0
    summary: dict[str, dict] = {}
    started_all = time.perf_counter()
    for name in names:
        counts: collections.Counter[str] = collections.Counter()
        bugs: list[tuple[int, str, str]] = []
        rss_before = peak_rss_mib()
        rise, rise_seed = 0.0, None
        started = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.examples):
            peak = peak_rss_mib()
            outcome, trace = run_case(name, seed, args.timeout)
            after = peak_rss_mib()
            if after - peak > rise:
                rise, rise_seed = after - peak, seed
            if trace is None and after > args.max_rss_mib >= peak:
                outcome, trace = "MEMORY", f"the peak rose from {peak:.0f} to {after:.0f} MiB"
            counts[outcome] += 1
            if trace is not None:
                bugs.append((seed, outcome, trace))
        seconds = time.perf_counter() - started
        rss_after = peak_rss_mib()
        tracebacks = sum(n for outcome, n in counts.items() if outcome.startswith("CRASH"))
        summary[name] = {"cases": args.examples, "seconds": round(seconds, 1), "outcomes": dict(counts),
                         "bugs": len(bugs), "tracebacks": tracebacks,
                         "peak_rss_mib_before": round(rss_before, 1), "peak_rss_mib_after": round(rss_after, 1),
                         "largest_rss_rise_mib": round(rise, 1), "largest_rss_rise_seed": rise_seed}
        print(f"\n{name}: {args.examples:,} cases in {seconds:.1f} s -- {TARGETS[name].describe}")
        for outcome, n in counts.most_common():
            print(f"  {n:>8,}  {outcome}")
        print(f"  tracebacks (CRASH cases): {tracebacks}; bugs: {len(bugs)}")
        rise_at = f" (seed {rise_seed})" if rise_seed is not None else ""
        print(f"  peak RSS: {rss_before:,.0f} MiB before, {rss_after:,.0f} MiB after (peak so far); "
              f"largest rise in one case {rise:,.0f} MiB{rise_at}")
        first_of_each = {}
        for bug in bugs:  # the first case of each kind of bug, so a common one hides no rarer one
            first_of_each.setdefault(bug[1], bug)
        shown = list(first_of_each.values())[:10]
        shown += [bug for bug in bugs if bug not in shown][: max(0, 5 - len(shown))]
        for seed, outcome, trace in shown:
            try:
                saved = f"input saved as {save_case(args.save, name, seed)}.*"
            except Exception as err:  # noqa: BLE001 - the generator itself failed: nothing to save
                saved = f"input not saved: {type(err).__name__}"
            last = trace.strip().splitlines()[-1]
            print(f"  BUG seed {seed}: {outcome}: {last}\n      replay: python fuzz/run_fuzz.py --replay {name}:{seed}"
                  f"  ({saved})")
        total_bugs += len(bugs)
        total_tracebacks += tracebacks
    peak = peak_rss_mib()
    total = {"cases": sum(v["cases"] for v in summary.values()), "bugs": total_bugs, "tracebacks": total_tracebacks,
             "seconds": round(time.perf_counter() - started_all, 1), "peak_rss_mib": round(peak, 1)}
    print(f"\n{total['cases']:,} cases in {total['seconds']:,.1f} s: {total_bugs} bug(s), of which "
          f"{total_tracebacks} traceback(s) (CRASH); peak RSS {peak:,.0f} MiB (limit {args.max_rss_mib:,.0f})")
    print(json.dumps({"total": total, "targets": summary}))
    return 1 if total_bugs else 0


if __name__ == "__main__":
    sys.exit(main())
