"""Load a script of benchmarks/ as a module (they are scripts, not a package), for tests that
run a benchmark's functions in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/NAME.py as the module ``aekit_bench_NAME`` (registered in sys.modules, which
    dataclasses need to resolve the module's own annotations)."""
    spec = importlib.util.spec_from_file_location(f"aekit_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
