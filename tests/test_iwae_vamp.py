"""The IWAE objective and the VampPrior, checked against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from aekit.models.base import Batch
from aekit.registry import build_model, lookup


def tiny(name: str, **overrides):
    config_cls, _ = lookup(name)
    torch.manual_seed(0)
    return build_model(name, config_cls.tiny(in_shape=(1, 16, 16), **overrides))


def test_iwae_bound_rises_with_k_and_at_k_1_is_the_elbo_in_expectation():
    x = torch.bernoulli(torch.rand(8, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    batch = Batch(x=x, target=x)
    vae = tiny("conv-vae").eval()
    with torch.no_grad():  # a posterior far from the true one (wide, shifted), so that K matters
        vae.heads.logvar.bias += math.log(9.0)
        vae.heads.mean.bias += 1.0
    draws = {}
    for k, repeats in ((1, 400), (10, 60), (100, 15)):
        model = tiny("iwae", samples=k).eval()
        model.load_state_dict(vae.state_dict())
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            draws[k] = torch.stack([model.iwae_bound(model(batch, gen)).mean() for _ in range(repeats)])
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        elbo = -torch.stack([vae.loss(batch, vae(batch, gen)).total for _ in range(400)])

    def standard_error(values):
        return float(values.std()) / math.sqrt(values.numel())

    # E[log w] is the ELBO: the two means agree within their sampling error
    spread = math.hypot(standard_error(draws[1]), standard_error(elbo))
    assert abs(float(draws[1].mean() - elbo.mean())) < 4 * spread
    assert draws[1].mean() < draws[10].mean() < draws[100].mean()


def test_iwae_trains_on_its_bound():
    model = tiny("iwae", samples=4)
    x = torch.bernoulli(torch.rand(16, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    batch = Batch(x=x, target=x)
    out = model(batch, torch.Generator().manual_seed(0))
    assert out.log_weights.shape == (4, 16) and out.logits.shape == (16, 1, 16, 16)
    losses = model.loss(batch, out)
    assert torch.allclose(losses.total, -(torch.logsumexp(out.log_weights, 0) - math.log(4)).mean())
    losses.total.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["vae", "conv-vae", "iwae"])
def test_the_vamp_prior_is_a_normalised_mixture_of_posteriors_at_the_pseudo_inputs(name):
    model = tiny(name, latent_dim=2, prior="vamp", pseudo_inputs=7).eval()
    with torch.no_grad():
        mix = model.encode(model.pseudo_inputs())
        assert mix.mean.shape == (7, 2)
        # a density: integrates to 1 over a grid wide enough to hold every component
        centre, half = mix.mean.mean(0), float(mix.mean.abs().max() + 8 * mix.std.max())
        axis = torch.linspace(-half, half, 400)
        grid = torch.cartesian_prod(axis, axis) + centre
        cell = (axis[1] - axis[0]) ** 2
        assert float(model.log_prior(grid).exp().sum() * cell) == pytest.approx(1.0, abs=0.01)
        # the prior's samples come from the mixture: their mean is the components' mean
        draws = model.prior_sample(20_000, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(draws.mean(0), mix.mean.mean(0), atol=0.05)
        # the KL is the one-sample estimate log q(z|x) - log p(z)
        x = torch.rand(3, 1, 16, 16)
        post = model.encode(x)
        z = post.sample(torch.Generator().manual_seed(0))
        assert torch.allclose(model.kl(post, z), post.log_prob(z) - model.log_prior(z))


def test_a_vamp_model_saves_and_loads_and_the_normal_prior_keeps_its_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    vamp = tiny("conv-vae", prior="vamp", pseudo_inputs=5)
    assert "pseudo_inputs.logits" in vamp.state_dict()
    assert not any("pseudo" in k for k in tiny("conv-vae").state_dict())  # old runs load unchanged
    save_file(vamp.state_dict(), tmp_path / "w.safetensors")
    again = tiny("conv-vae", prior="vamp", pseudo_inputs=5)
    again.load_state_dict(load_file(tmp_path / "w.safetensors"))
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(vamp.eval().reconstruct(x), again.eval().reconstruct(x))
        assert torch.equal(vamp.log_prior(torch.zeros(1, 4)), again.log_prior(torch.zeros(1, 4)))
