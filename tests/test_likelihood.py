"""The importance-sampled likelihood against the exact one, computed by integrating over a
2-D latent grid: the estimate lies above the ELBO and rises with K towards the exact value."""

from __future__ import annotations

import math

import pytest
import torch

from aekit.data import load_dataset
from aekit.errors import ConfigError
from aekit.eval.likelihood import estimate_log_likelihood
from aekit.models.base import Batch
from aekit.registry import build_model, lookup


@pytest.fixture(scope="module")
def trained_vae():
    """A 2-D VAE on 8x8 binarised digits, trained for a few hundred steps, its posterior then
    widened so that it is far from the true one."""
    torch.manual_seed(0)
    digits = load_dataset("mnist-5k", image_size=8).train.images[:2000]
    data = torch.bernoulli(digits, generator=torch.Generator().manual_seed(0))
    config_cls, _ = lookup("vae")
    model = build_model("vae", config_cls.tiny(in_shape=(1, 8, 8), hidden=(64,), latent_dim=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(300):
        x = data[(step * 100) % 2000:(step * 100) % 2000 + 100]
        batch = Batch(x=x, target=x)
        loss = model.loss(batch, model(batch, gen)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # a posterior twice as wide as the one learnt: far from the true one, so K matters
        model.heads.logvar.bias += math.log(4.0)
    return model.eval(), data[:6]


@torch.inference_mode()
def exact_log_likelihood(model, images, *, side: int, half_width: float = 7.0) -> torch.Tensor:
    """log p(x) = log of the integral of p(x|z) p(z) dz, by the midpoint rule on a side x side grid.  (N,)"""
    step = 2 * half_width / side
    axis = -half_width + step * (torch.arange(side, dtype=torch.float64) + 0.5)
    z = torch.cartesian_prod(axis, axis).float()  # (side^2, 2)
    logits = model.decode_logits(z)  # (side^2, 1, 8, 8)
    log_prior = model.log_prior(z).double()
    out = []
    for x in images:
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").flatten(1).sum(1).double()
        out.append(torch.logsumexp(log_px_z + log_prior, 0) + 2 * math.log(step))
    return torch.stack(out)


def test_the_grid_integral_has_converged(trained_vae):
    model, images = trained_vae
    coarse, fine = exact_log_likelihood(model, images, side=300), exact_log_likelihood(model, images, side=500)
    assert torch.allclose(coarse, fine, atol=1e-3), (coarse, fine)


def test_the_estimate_rises_with_k_towards_the_exact_likelihood_and_lies_above_the_elbo(trained_vae):
    model, images = trained_vae
    exact = exact_log_likelihood(model, images, side=500)
    published = estimate_log_likelihood(model, images, samples=5000, seed=3)
    # The IWAE bound for K samples, in expectation: the mean of estimates over repeated seeds.
    repeats = {10: 40, 100: 10, 1000: 3}
    bound = {k: torch.stack([estimate_log_likelihood(model, images, samples=k, seed=s).log_likelihood
                             for s in range(r)]).mean(0) for k, r in repeats.items()}
    bound[1] = published.elbo  # K = 1: the ELBO, here averaged over 5,000 draws
    bound[5000] = published.log_likelihood
    gaps = {k: float((exact - bound[k]).mean()) for k in sorted(bound)}
    # 1. the ELBO lies below the importance-sampled estimate, image by image
    assert (published.elbo < published.log_likelihood).all()
    assert gaps[1] > 0.5, gaps  # the posterior is far from the true one: K has work to do
    # 2. the bound rises with K towards the exact value, and is within a few hundredths at K = 5000
    assert gaps[1] > gaps[10] > max(gaps[100], gaps[1000], gaps[5000]), gaps
    assert all(abs(gaps[k]) < 0.02 for k in (100, 1000, 5000)), gaps  # converged: the rest is noise
    # 3. per image, the K=5000 estimate is within a tenth of a nat of the exact likelihood
    assert torch.allclose(published.log_likelihood, exact, atol=0.1)


def test_chunking_and_batching_do_not_change_the_estimate(trained_vae, monkeypatch):
    from aekit.eval import likelihood

    model, images = trained_vae
    whole = estimate_log_likelihood(model, images, samples=300, seed=5, batch_size=6)
    monkeypatch.setattr(likelihood, "MAX_DECODES_IN_FLIGHT", 600)  # 100 samples per chunk of 6 images
    chunked = estimate_log_likelihood(model, images, samples=300, seed=5, batch_size=6)
    assert torch.allclose(whole.log_likelihood, chunked.log_likelihood, atol=1e-6)


def test_models_without_a_likelihood_are_refused():
    config_cls, _ = lookup("dense-ae")
    model = build_model("dense-ae", config_cls.tiny(in_shape=(1, 8, 8)))
    with pytest.raises(ConfigError, match="not variational"):
        estimate_log_likelihood(model, torch.rand(2, 1, 8, 8), samples=10)
    vae_cls, _ = lookup("vae")
    mse = build_model("vae", vae_cls.tiny(in_shape=(1, 8, 8), recon_loss="mse"))
    with pytest.raises(ConfigError, match="recon_loss bce"):
        estimate_log_likelihood(mse, torch.rand(2, 1, 8, 8), samples=10)


def test_evaluate_nll_through_the_cli(make_run):
    import json

    from click.testing import CliRunner

    from aekit.cli import main

    result = CliRunner().invoke(main, ["evaluate", str(make_run("vae")), "--nll", "--nll-samples", "50",
                                       "--nll-images", "40", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["nll_samples"] == 50 and metrics["nll_images"] == 40
    assert 0 < metrics["nll"] < metrics["nll_negative_elbo"]  # the bound is tighter than the ELBO
    assert 0 < metrics["nll_se"] < metrics["nll"]
    again = json.loads(CliRunner().invoke(main, ["evaluate", str(make_run("vae")), "--nll-samples", "50",
                                                 "--nll-images", "40", "--json"]).output)
    assert again["nll"] == metrics["nll"]  # a fixed seed: the same figure twice
    refused = CliRunner().invoke(main, ["evaluate", str(make_run("dense-ae")), "--nll"])
    assert refused.exit_code == 1 and "not variational" in refused.output


def test_evaluations_are_stored_and_shown_by_the_report_and_the_explorer(make_run, tmp_path):
    import json
    import shutil

    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from aekit.app.report import render_report
    from aekit.cli import main
    from aekit.web.app import create_app

    run = tmp_path / "run"
    shutil.copytree(make_run("vae"), run)
    (run / "evaluations.json").unlink(missing_ok=True)  # other tests evaluate the shared run too
    fresh = render_report(run)  # nothing stored yet: the report draws a quick sample score itself
    assert "Likelihood and sample quality" in fresh and "drawn for this report" in fresh

    result = CliRunner().invoke(main, ["evaluate", str(run), "--nll-samples", "20", "--nll-images", "30",
                                       "--samples", "200", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    stored = json.loads((run / "evaluations.json").read_text())
    nll = stored["nll mnist-5k test K=20 N=30"]
    assert nll["nll"] == printed["nll"] and nll["nll_se"] == printed["nll_se"] and nll["seconds"] >= 0
    samples = stored["samples mnist-5k prior N=200"]
    assert samples["fd"] == printed["sample_quality"]["fd"]
    assert sum(samples["class_histogram"].values()) == 200

    # measuring again with other settings adds a record; the same settings replace theirs
    assert CliRunner().invoke(main, ["evaluate", str(run), "--nll-samples", "10", "--nll-images", "30"]).exit_code == 0
    assert set(json.loads((run / "evaluations.json").read_text())) == set(stored) | {"nll mnist-5k test K=10 N=30"}

    page = render_report(run)
    assert f"{printed['nll']:.4f}" in page and f"{samples['fd']:.4f}" in page
    assert "drawn for this report" not in page  # the stored score is shown instead
    info = TestClient(create_app([run])).get("/api/run").json()
    assert info["evaluations"]["nll mnist-5k test K=20 N=30"]["nll"] == pytest.approx(printed["nll"])


@pytest.fixture
def pretrained_vae(make_run, tmp_path, monkeypatch) -> str:
    """``pretrained:mnist-vae-2d`` as a tiny VAE in a zoo of the test's own, aekit's cache in another folder."""
    import shutil

    from aekit.run import sources

    zoo = tmp_path / "zoo"
    shutil.copytree(make_run("vae"), zoo / "mnist-vae-2d", ignore=shutil.ignore_patterns("evaluations.json"))
    monkeypatch.setattr(sources, "ZOO_DIR", zoo)
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "cache"))
    return sources.PRETRAINED_PREFIX + "mnist-vae-2d"


def test_evaluations_of_a_pretrained_model_are_stored_in_the_cache(pretrained_vae, tmp_path):
    import json

    from click.testing import CliRunner

    from aekit.cli import main
    from aekit.run import Run
    from aekit.run.layout import read_evaluations

    zoo_files = sorted(p.name for p in (tmp_path / "zoo" / "mnist-vae-2d").iterdir())
    result = CliRunner().invoke(main, ["evaluate", pretrained_vae, "--samples", "500", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)["sample_quality"]
    stored_file = Run.open(pretrained_vae).output_file("evaluations.json")
    assert stored_file.is_relative_to(tmp_path / "cache" / "outputs")
    stored = read_evaluations(stored_file.parent)
    assert stored["samples mnist-5k prior N=500"]["fd"] == printed["fd"]
    assert sorted(p.name for p in (tmp_path / "zoo" / "mnist-vae-2d").iterdir()) == zoo_files  # the zoo untouched

    # a second measurement joins the first in the same file
    again = CliRunner().invoke(main, ["evaluate", pretrained_vae, "--nll-samples", "5", "--nll-images", "20"])
    assert again.exit_code == 0, again.output
    assert set(read_evaluations(stored_file.parent)) == {"samples mnist-5k prior N=500", "nll mnist-5k test K=5 N=20"}


def test_a_pretrained_model_finds_its_stored_evaluations_again(pretrained_vae):
    from click.testing import CliRunner

    from aekit.cli import main
    from aekit.run import Run

    result = CliRunner().invoke(main, ["evaluate", pretrained_vae, "--samples", "500"])
    assert result.exit_code == 0, result.output
    assert set(Run.open(pretrained_vae).evaluations()) == {"samples mnist-5k prior N=500"}


def test_the_nll_subset_is_spread_over_the_split():
    from aekit.app.evaluation import evenly_spread

    assert list(range(10))[evenly_spread(10, 3)] == [0, 3, 6]
    assert list(range(5))[evenly_spread(5, None)] == list(range(5))
    assert list(range(5))[evenly_spread(5, 9)] == list(range(5))
    assert len(range(10_000)[evenly_spread(10_000, 3000)]) == 3000
