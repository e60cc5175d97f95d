"""Shared fixtures: tiny trained runs that several test files use."""

from __future__ import annotations

from pathlib import Path

import pytest

import aekit.eval.baselines
import aekit.eval.tasks
from aekit import api

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough to train in a few seconds on 2 cores; big enough to learn something.
TINY_OPTIONS = {
    "dense-ae": {"hidden": (64,), "latent_dim": 8},
    "conv-ae": {"channels": (8, 8, 8), "latent_dim": 8},
    "vae": {"hidden": (64,), "latent_dim": 2},
    "conv-vae": {"channels": (8, 16), "hidden": 32, "latent_dim": 4},
}


@pytest.fixture(scope="session", autouse=True)
def quick_baselines():
    """Tune the classical denoisers on 100 validation images and score non-local means (the
    slowest filter) on 100 test images, so that each evaluation takes seconds.

    Session-wide, because the tiny runs below are shared between test files: a run trained in
    one file and evaluated in another must see the same settings both times.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aekit.eval.tasks, "MAX_TUNING_IMAGES", 100)
        mp.setitem(aekit.eval.baselines.DEFAULT_MAX_IMAGES, "nl_means", 100)
        yield


@pytest.fixture(scope="session")
def make_run(tmp_path_factory):
    """Train (once per distinct argument set) a tiny run on mnist-5k and return its folder.

    ``make_run("vae", epochs=1, task="denoise", noise="gaussian:0.5")``; model options come from
    TINY_OPTIONS unless ``model_options`` is given.
    """
    cache: dict[tuple, Path] = {}

    def _make(model: str = "dense-ae", *, epochs: int = 1, **kwargs) -> Path:
        key = (model, epochs, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"run-{model}")
            options = kwargs.pop("model_options", TINY_OPTIONS.get(model, {}))
            kwargs.setdefault("batch_size", 256)
            api.train(model=model, epochs=epochs, out=out, model_options=options, seed=0, **kwargs)
            cache[key] = out
        return cache[key]

    return _make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
