"""sample, plot, embed, compare-pca and the run report, end to end on tiny mnist-5k runs."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy.stats import norm

import aekit
from aekit.app.inspect import PLOT_KINDS, compare_with_pca
from aekit.app.report import write_report
from aekit.cli import main
from aekit.data import ImageSet, load_dataset, save_image
from aekit.eval.metrics import sse_per_image
from aekit.latent import encode_dataset, fit_projection
from aekit.latent import views as lv

CVAE_OPTIONS = {"channels": (8, 16), "hidden": 32, "latent_dim": 4}  # as tests/test_web_api.py: one shared run


@pytest.fixture(scope="module")
def vae_run(make_run):
    return make_run("vae")


@pytest.fixture(scope="module")
def ae_run(make_run):
    return make_run("dense-ae")


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k", seed=0)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_png(path_or_bytes) -> Image.Image:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    img = Image.open(src)
    assert img.format == "PNG"
    img.load()
    return img


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


# -- sample ---------------------------------------------------------------------------------------

def test_sample_vae(vae_run, tmp_path):
    out = tmp_path / "s.png"
    result = invoke("sample", vae_run, "-n", 16, "-o", out, "--seed", 3, "--temperature", 0.8)
    assert result.exit_code == 0, result.output
    img = read_png(out)
    assert img.width > 150 and img.height > 150


def test_sample_plain_ae_shows_where_codes_lie_and_random_codes(ae_run, tmp_path):
    out = tmp_path / "s.png"
    result = invoke("sample", ae_run, "-n", 12, "-o", out)
    assert result.exit_code == 0, result.output
    img = read_png(out)
    assert img.width > 1.5 * img.height  # two panels side by side

    model = aekit.load(ae_run)
    codes = torch.randn(300, model.latent_dim) * 3 + 5
    panels = lv.sample_panels(model, 12, codes=codes, generator=torch.Generator().manual_seed(0))
    assert len(panels) == 2
    (fitted_title, fitted), (random_title, random) = panels.items()
    assert "where the codes lie" in fitted_title and "random" in random_title
    assert fitted.shape == random.shape == (12, *model.out_shape)
    again = lv.sample_panels(model, 12, codes=codes, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(panels.values(), again.values()))  # seeded


def test_vae_sample_panel_is_the_models_prior_sample(vae_run):
    model = aekit.load(vae_run)
    panels = lv.sample_panels(model, 5, generator=torch.Generator().manual_seed(7))
    assert len(panels) == 1
    expected = model.sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(next(iter(panels.values())), expected)


def test_sample_label_on_non_conditional_model(vae_run, tmp_path):
    assert_one_line_error(invoke("sample", vae_run, "--label", 3, "-o", tmp_path / "s.png"), "--label", "conditional")


def test_sample_missing_run(tmp_path):
    assert_one_line_error(invoke("sample", tmp_path / "nowhere"), "no such run folder")


# -- plot -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,extra", [
    ("reconstructions", []),
    ("scatter", []),
    ("manifold", ["-n", 6]),
    ("interpolate", ["-n", 5]),
    ("latent-noise", ["-n", 4]),
    ("curves", []),
])
def test_plot_kinds_vae(vae_run, tmp_path, kind, extra):
    out = tmp_path / f"{kind}.png"
    result = invoke("plot", vae_run, kind, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    img = read_png(out)
    assert 150 < img.width < 4000 and 80 < img.height < 4000


@pytest.mark.parametrize("kind,extra", [("scatter", ["--method", "tsne", "-n", 60]), ("manifold", ["-n", 4]),
                                        ("interpolate", ["--between", 3, 4])])
def test_plot_kinds_plain_ae(ae_run, tmp_path, kind, extra):
    out = tmp_path / f"{kind}.png"
    result = invoke("plot", ae_run, kind, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    read_png(out)


def test_plot_default_output_in_run_folder(make_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    result = invoke("plot", run, "curves")
    assert result.exit_code == 0, result.output
    read_png(run / "plot-curves.png")


def test_plot_ood_against_a_folder(vae_run, tmp_path):
    g = torch.Generator().manual_seed(0)
    for i in range(30):  # noise images: nothing like a digit
        save_image(torch.rand(1, 28, 28, generator=g), tmp_path / f"noise{i:02d}.png")
    out = tmp_path / "ood.png"
    result = invoke("plot", vae_run, "ood", "--against", f"folder:{tmp_path}", "-o", out, "-n", 100)
    assert result.exit_code == 0, result.output
    read_png(out)


def test_plot_labels_for_conditional_model(make_run, tmp_path):
    run = make_run("cvae", model_options=CVAE_OPTIONS)
    out = tmp_path / "labels.png"
    result = invoke("plot", run, "labels", "-n", 3, "-o", out)
    assert result.exit_code == 0, result.output
    read_png(out)
    result = invoke("plot", run, "manifold", "--label", 7, "-n", 3, "-o", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    model = aekit.load(run)
    data = load_dataset("mnist-5k", seed=0).test
    sweep = lv.label_sweep(model, data.images[:2], data.labels[:2])
    assert sweep.shape == (2, 10, 1, 28, 28)
    # Column k of row i is image i's code decoded under label k: the same as decoding directly.
    z = encode_dataset(model, data.images[:2], data.labels[:2])
    direct = model.decode(z[1:2], torch.tensor([6]))
    assert torch.allclose(sweep[1, 6], direct[0], atol=1e-6)


def test_plot_before_after_for_denoise_run(make_run, tmp_path):
    run = make_run("dn", task="denoise", noise="gaussian:0.5")
    opened = aekit.Run.open(run)
    data = load_dataset("mnist-5k", seed=0).test
    rows = lv.before_after(opened.model, opened.task, data.images[:4], generator=torch.Generator().manual_seed(0))
    assert list(rows) == ["clean", "model input", "output"]
    assert not torch.equal(rows["clean"], rows["model input"])  # the noise is shown
    result = invoke("plot", run, "reconstructions", "-o", tmp_path / "r.png")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args,fragments", [
    (["bogus"], ["unknown plot kind 'bogus'", "manifold"]),
    (["labels"], ["conditional"]),
    (["ood"], ["--against"]),
    (["scatter", "--between", "1", "2"], ["--between", "interpolate"]),
    (["manifold", "--label", "1"], ["--label", "not conditional"]),
    (["interpolate", "--between", "0", "99999"], ["out of range"]),
])
def test_plot_bad_inputs(vae_run, tmp_path, args, fragments):
    assert_one_line_error(invoke("plot", vae_run, *args, "-o", tmp_path / "x.png"), *fragments)


def test_plot_missing_run_and_bad_output(vae_run, tmp_path):
    assert_one_line_error(invoke("plot", tmp_path / "missing", "curves"), "no such run folder")
    assert_one_line_error(invoke("plot", vae_run, "curves", "-o", tmp_path / "x.jpg"), ".png")


def test_plot_kinds_are_documented():
    result = invoke("plot", "--help")
    for kind in PLOT_KINDS:
        assert kind in result.output


# -- the data behind the plots --------------------------------------------------------------------

def test_manifold_of_2d_vae_is_the_lessons_prior_grid():
    grid = lv.manifold_latents(5, latent_dim=2, variational=True)
    q = norm.ppf(np.linspace(0.05, 0.95, 5))
    np.testing.assert_allclose(grid.xs.numpy(), q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grid.ys.numpy(), q[::-1], rtol=1e-5, atol=1e-6)  # top row: largest z1
    pts = grid.latents.reshape(5, 5, 2).numpy()
    np.testing.assert_allclose(pts[0, :, 0], q, rtol=1e-5, atol=1e-6)  # along a row, z0 grows
    np.testing.assert_allclose(pts[:, 0, 1], q[::-1], rtol=1e-5, atol=1e-6)


def test_manifold_of_many_dims_lies_on_the_principal_plane():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(400, 6, generator=g) * torch.tensor([5.0, 2.0, 0.5, 0.1, 0.1, 0.1]) + 3
    grid = lv.manifold_latents(4, latent_dim=6, variational=False, codes=codes)
    proj = fit_projection(codes)
    # Every grid point is on the plane: mapping to 2-D and back changes nothing.
    back = proj.from2d(proj.to2d(grid.latents))
    assert torch.allclose(back, grid.latents, atol=1e-4)
    # The grid spans the codes' spread: the first axis (std ~5) much wider than the second.
    assert (grid.xs.max() - grid.xs.min()) > 2 * (grid.ys.max() - grid.ys.min())


def test_latent_noise_level_zero_is_the_reconstruction(ae_run, mnist5k):
    model = aekit.load(ae_run)
    x = mnist5k.test.images[:3]
    rows = lv.latent_noise_rows(model, x, scale=1.0, levels=(0.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert rows.shape == (2, 3, 1, 28, 28)
    assert torch.allclose(rows[0], model.reconstruct(x), atol=1e-6)
    assert not torch.allclose(rows[1], rows[0])


def test_interpolation_ends_at_both_reconstructions(ae_run, mnist5k):
    model = aekit.load(ae_run)
    test = mnist5k.test
    i, j = lv.pick_pair(test.labels, len(test))
    assert test.labels[i] != test.labels[j]
    (row,) = lv.interpolation_rows(model, test.images, test.labels, i, j, 4).values()
    assert torch.allclose(row[0], model.reconstruct(test.images[i:i + 1])[0], atol=1e-5)
    assert torch.allclose(row[-1], model.reconstruct(test.images[j:j + 1])[0], atol=1e-5)


# -- embed ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("split,n", [("test", 500), ("all", 5000)])
def test_embed_formats(vae_run, mnist5k, tmp_path, split, n):
    if split == "all":
        expected_labels = torch.cat([mnist5k.train.labels, mnist5k.val.labels, mnist5k.test.labels]).numpy()
    else:
        expected_labels = mnist5k.test.labels.numpy()
    model = aekit.load(vae_run)
    expected_codes = encode_dataset(model, mnist5k.test.images[:5]).numpy()
    for suffix in (".npy", ".npz", ".csv"):
        out = tmp_path / f"codes{suffix}"
        result = invoke("embed", vae_run, "--split", split, "-o", out)
        assert result.exit_code == 0, result.output
        if suffix == ".npy":
            codes = np.load(out)
        elif suffix == ".npz":
            with np.load(out) as z:
                codes, labels = z["codes"], z["labels"]
            np.testing.assert_array_equal(labels, expected_labels)
        else:
            with open(out, newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows[0] == ["z0", "z1", "label"]
            codes = np.array([[float(v) for v in r[:-1]] for r in rows[1:]])
            np.testing.assert_array_equal(np.array([int(r[-1]) for r in rows[1:]]), expected_labels)
        assert codes.shape == (n, 2)
        if split == "test":
            np.testing.assert_allclose(codes[:5], expected_codes, rtol=1e-5, atol=1e-6)


def test_embed_bad_inputs(vae_run, tmp_path):
    assert_one_line_error(invoke("embed", vae_run, "-o", tmp_path / "c.txt"), ".npy, .npz or .csv")
    assert_one_line_error(invoke("embed", vae_run, "--split", "dev", "-o", tmp_path / "c.npy"), "unknown split")
    assert_one_line_error(invoke("embed", tmp_path / "missing", "-o", tmp_path / "c.npy"), "no such run folder")


# -- compare-pca ----------------------------------------------------------------------------------

def test_compare_pca_against_numpy_svd(ae_run, mnist5k):
    model = aekit.load(ae_run)
    train, test = mnist5k.train, ImageSet(mnist5k.test.images[:200], mnist5k.test.labels[:200])
    result = compare_with_pca(model, train, test, k=5)
    summary = result.summary()
    assert summary["latent_dim"] == model.latent_dim == 8
    assert summary["n_test"] == 200 and result.ae_sse.shape == result.pca_sse.shape == (200,)
    for side in ("autoencoder", "pca"):
        assert all(np.isfinite(summary[side][key]) for key in ("sse_per_image", "psnr_db", "knn_accuracy"))
        assert 0.0 <= summary[side]["knn_accuracy"] <= 1.0

    # PCA's error, independently: project onto the top-8 right singular vectors of the
    # centred training matrix (full SVD in NumPy, not sklearn's randomized one).
    xtr = train.images.reshape(len(train), -1).double().numpy()
    xte = test.images.reshape(len(test), -1).double().numpy()
    mean = xtr.mean(axis=0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    v = vt[:8]
    recon = (xte - mean) @ v.T @ v + mean
    sse = ((recon - xte) ** 2).sum(axis=1)
    # fit_pca uses a randomized SVD: single images differ by about 1e-4, the mean by far less.
    np.testing.assert_allclose(result.pca_sse.numpy(), sse, rtol=1e-3)
    np.testing.assert_allclose(float(result.pca_sse.mean()), sse.mean(), rtol=1e-5)

    # The autoencoder's error is on the same images: its own reconstructions of `test`.
    np.testing.assert_allclose(result.ae_sse.numpy(), sse_per_image(model.reconstruct(test.images), test.images).numpy(),
                               rtol=1e-6)
    assert result.pca_sse_clamped.mean() <= result.pca_sse.mean()  # clamping only helps


def test_compare_pca_cli_json(ae_run):
    result = invoke("compare-pca", ae_run, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n_test"] == 500 and summary["n_train"] == 4000
    assert np.isfinite(summary["sse_ratio_ae_to_pca"])
    table = invoke("compare-pca", ae_run)
    assert table.exit_code == 0 and "squared error per image" in table.output


# -- the report -----------------------------------------------------------------------------------

VOID_ELEMENTS = frozenset({"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"})


class _PageParser(HTMLParser):
    """Collects what the checks need, and fails on an end tag that closes the wrong element."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.error_sections = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("href", "src"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.urls.append(a[key])
        if "id" in a:
            self.ids.append(a["id"])
        if "section-error" in (a.get("class") or ""):
            self.error_sections += 1
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def parse_report(path) -> _PageParser:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "http://" not in text and "https://" not in text
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], parser.stack  # every element closed
    assert parser.urls == []  # nothing fetched: every src and href is inline or an anchor
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        read_png(base64.b64decode(src.split(",", 1)[1], validate=True))
    return parser


def test_report_of_a_vae_run(make_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    (run / "report.html").unlink()
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert str(run / "report.html") in result.output
    page = parse_report(run / "report.html")
    assert page.error_sections == 0
    assert {"config", "metrics", "curves", "reconstructions", "samples", "scatter", "manifold"} <= set(page.ids)
    assert len(page.images) == 5


def test_report_written_by_training_shows_baselines(make_run):
    # api.train writes the report; a denoising run's test metrics carry the baselines.
    run = make_run("dn", task="denoise", noise="gaussian:0.5")
    page = parse_report(run / "report.html")
    assert page.error_sections == 0
    assert "reconstructions" in page.ids and "scatter" not in page.ids  # no bottleneck, no latent map
    text = (run / "report.html").read_text()
    assert "Before and after" in text and "Baselines" in text
    metrics = json.loads((run / "test_metrics.json").read_text())
    for name in metrics["baselines"]:
        assert f"<td>{name}</td>" in text


def test_report_of_a_plain_ae_without_data(make_run, tmp_path):
    # The report still comes out when the dataset cannot be loaded, and says why.
    run = tmp_path / "run"
    shutil.copytree(make_run("dense-ae"), run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["dataset"] = f"folder:{tmp_path / 'gone'}"
    (run / "config.json").write_text(json.dumps(cfg))
    path = write_report(run)
    page = parse_report(path)
    assert "could not be loaded" in path.read_text()
    assert {"config", "metrics", "curves"} <= set(page.ids) and "samples" not in page.ids
