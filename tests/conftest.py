"""Shared fixtures: tiny trained runs that several test files use."""

from __future__ import annotations

from pathlib import Path

import _hypothesis_profiles  # noqa: F401  (before any test module: CI=true derandomizes hypothesis)
import pytest

import aekit.eval.baselines
import aekit.tasks.denoise
from aekit.app import training

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

def tiny_options(model: str) -> dict:
    """The sizes of ``model``'s ``tiny()`` config (small enough to train in seconds on 2 cores),
    without what the data and the task decide (shapes, classes, scale)."""
    import dataclasses

    from aekit.registry import lookup

    config_cls, _ = lookup(model)
    decided = {"in_shape", "num_classes", "scale"}
    return {k: v for k, v in dataclasses.asdict(config_cls.tiny()).items() if k not in decided}


@pytest.fixture(scope="session", autouse=True)
def quick_baselines():
    """Tune the classical denoisers on 100 validation images and score non-local means (the
    slowest filter) on 100 test images, so that each evaluation takes seconds.

    Session-wide, because the tiny runs below are shared between test files: a run trained in
    one file and evaluated in another must see the same settings both times.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aekit.tasks.denoise, "MAX_TUNING_IMAGES", 100)
        mp.setitem(aekit.eval.baselines.DEFAULT_MAX_IMAGES, "nl_means", 100)
        yield


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    """``$AEKIT_DATA_DIR`` set, for one test module, to a folder in this session's temporary
    directory, so that what the module caches (parsed melodies) never lands in the user's cache.

    Module-scoped so that other modules keep the user's cache (the shared MNIST files); one folder
    for the session, so the modules that use it share what they cached.  Use it in a module with
    ``pytestmark = pytest.mark.usefixtures("data_cache")``.
    """
    folder = tmp_path_factory.getbasetemp() / "aekit-data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEKIT_DATA_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def make_run(tmp_path_factory):
    """Train (once per distinct argument set) a tiny run on mnist-5k and return its folder.

    ``make_run("vae", epochs=1, task="denoise", noise="gaussian:0.5")``; the model's sizes are its
    ``tiny()`` config's unless ``model_options`` is given.
    """
    cache: dict[tuple, Path] = {}

    def _make(model: str = "dense-ae", *, epochs: int = 1, **kwargs) -> Path:
        key = (model, epochs, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"run-{model}")
            options = kwargs.pop("model_options", None) or tiny_options(model)
            kwargs.setdefault("batch_size", 256)
            training.train(model=model, epochs=epochs, out=out, model_options=options, seed=0, **kwargs)
            cache[key] = out
        return cache[key]

    return _make


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through Playwright (tests/_browser.py), one per browser test module."""
    from _browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
