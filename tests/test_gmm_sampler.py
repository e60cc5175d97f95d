"""The post-hoc mixture sampler: fitted to codes, stored without pickle, sampled reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit.errors import CheckpointError, ConfigError
from aekit.latent.gmm import CodeMixture, parse_sampler


def two_blobs(n: int = 4000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n // 2, 2, generator=gen) * 0.3 + torch.tensor([3.0, 0.0])
    b = torch.randn(n // 2, 2, generator=gen) * torch.tensor([0.2, 1.0]) + torch.tensor([-3.0, 1.0])
    return torch.cat([a, b])


def test_a_two_component_fit_recovers_two_blobs_and_samples_from_them():
    mix = CodeMixture.fit(two_blobs(), 2, seed=0)
    order = np.argsort(mix.means[:, 0])
    assert np.allclose(mix.means[order], [[-3.0, 1.0], [3.0, 0.0]], atol=0.1)
    assert np.allclose(mix.weights, 0.5, atol=0.02)
    draws = mix.sample(20_000, generator=torch.Generator().manual_seed(1))
    right = draws[draws[:, 0] > 0]
    assert abs(len(right) / len(draws) - 0.5) < 0.02
    assert torch.allclose(right.std(0), torch.tensor([0.3, 0.3]), atol=0.03)
    # the mixture is far likelier where the codes are than between the blobs
    assert float(mix.log_density(torch.tensor([[3.0, 0.0]]))) > float(mix.log_density(torch.tensor([[0.0, 0.5]]))) + 10


def test_the_same_generator_gives_the_same_draws_and_temperature_scales_the_spread():
    mix = CodeMixture.fit(two_blobs(), 2, seed=0)
    a = mix.sample(500, generator=torch.Generator().manual_seed(3))
    b = mix.sample(500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    cold = mix.sample(20_000, temperature=0.5, generator=torch.Generator().manual_seed(3))
    assert float(cold[cold[:, 0] > 0].std(0)[0]) == pytest.approx(0.15, abs=0.02)


def test_stored_as_arrays_and_read_back_checked():
    mix = CodeMixture.fit(two_blobs(), 3, seed=0)
    again = CodeMixture.from_bytes(mix.to_bytes(), source="gmm.npz", latent_dim=2)
    assert all(np.array_equal(getattr(mix, k), getattr(again, k)) for k in ("weights", "means", "chol"))
    with pytest.raises(CheckpointError, match="gmm.npz: the stored mixture does not fit this model's 3-D codes"):
        CodeMixture.from_bytes(mix.to_bytes(), source="gmm.npz", latent_dim=3)
    with pytest.raises(CheckpointError, match="gmm.npz: not a stored mixture"):
        CodeMixture.from_bytes(b"not an npz", source="gmm.npz", latent_dim=2)
    import io
    buf = io.BytesIO()
    np.savez(buf, weights=np.array([0.5, 0.5]), means=np.zeros((2, 2)),
             chol=np.array([np.eye(2), -np.eye(2)]))
    with pytest.raises(CheckpointError, match="does not fit"):
        CodeMixture.from_bytes(buf.getvalue(), source="gmm.npz", latent_dim=2)
    pickled = io.BytesIO()
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError):
        CodeMixture.from_bytes(pickled.getvalue(), source="gmm.npz", latent_dim=2)


@pytest.mark.parametrize(("text", "parsed"), [("prior", ("prior", None)), ("normal", ("normal", None)),
                                                    ("gmm", ("gmm", 10)), ("gmm:3", ("gmm", 3))])
def test_sampler_names(text, parsed):
    assert parse_sampler(text) == parsed


@pytest.mark.parametrize("text", ["gmm:0", "gmm:x", "gmm:-1", "normal:2", "uniform", "prior:2", "gmm:100000"])
def test_bad_sampler_names(text):
    with pytest.raises(ConfigError, match="--sampler"):
        parse_sampler(text)


def test_sample_with_a_gmm_fits_once_stores_arrays_and_reuses_them(make_run, tmp_path, monkeypatch):
    import shutil

    from click.testing import CliRunner

    from aekit.cli import main

    run = tmp_path / "run"
    shutil.copytree(make_run("dense-ae"), run)  # a plain AE: no prior of its own
    first = CliRunner().invoke(main, ["sample", str(run), "--sampler", "gmm:4", "-n", "8", "-o", str(tmp_path / "a.png")])
    assert first.exit_code == 0, first.output
    stored = run / "gmm-4.npz"
    with np.load(stored, allow_pickle=False) as arrays:
        assert arrays["means"].shape == (4, 8) and arrays["chol"].shape == (4, 8, 8)

    def no_refit(*args, **kwargs):
        raise AssertionError("the stored mixture should have been used")

    monkeypatch.setattr(CodeMixture, "fit", no_refit)
    again = CliRunner().invoke(main, ["sample", str(run), "--sampler", "gmm:4", "-n", "8", "-o", str(tmp_path / "b.png")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # same mixture, same seed
    stored.write_bytes(b"garbage")
    broken = CliRunner().invoke(main, ["sample", str(run), "--sampler", "gmm:4", "-o", str(tmp_path / "c.png")])
    assert broken.exit_code == 1
    line = broken.output.strip()  # numpy's own reason sits in the brackets
    assert line.startswith(f"Error: {stored}: not a stored mixture (") and "\n" not in line
    assert line.endswith("); delete it and it is fitted again")


def test_evaluate_scores_samples_from_the_prior_or_a_fitted_mixture(make_run):
    import json

    from click.testing import CliRunner

    from aekit.cli import main

    def scored(run, *extra):
        result = CliRunner().invoke(main, ["evaluate", str(run), "--samples", "300", *extra, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["sample_quality"]

    prior = scored(make_run("vae"))
    assert prior["n"] == 300 and sum(prior["class_histogram"]) == 300 and prior["fd"] > 0
    assert prior["sampler"] == "the model's prior" and 0 < prior["confidence"] <= 1
    assert scored(make_run("vae")) == prior  # seeded by the run: the same figure twice
    mixture = scored(make_run("dense-ae"), "--sampler", "gmm:5")  # a plain AE becomes a generator
    naive = scored(make_run("dense-ae"), "--sampler", "normal")  # N(0, I) codes: the guess a mixture replaces
    assert naive["sampler"] == "N(0, I) codes" and naive["fd"] != mixture["fd"]
    # for a VAE with a N(0, I) prior the two name the same distribution and draw the same codes
    assert scored(make_run("vae"), "--sampler", "normal")["fd"] == pytest.approx(prior["fd"])
    assert mixture["sampler"].startswith("Gaussian mixture of 5") and mixture["n"] == 300
    refused = CliRunner().invoke(main, ["evaluate", str(make_run("dense-ae")), "--samples", "300"])
    assert refused.exit_code == 1 and "--sampler gmm" in refused.output
