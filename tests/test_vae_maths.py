"""The VAE's maths against independent sources."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from aekit.models.base import Posterior, reconstruction_loss
from aekit.registry import build_model, lookup, model_names

# the image VAEs: the test below decodes Bernoulli pixels (music-vae's categorical bound is checked in test_music_model)
VARIATIONAL = [name for name in model_names()
               if lookup(name)[1].variational and lookup(name)[1].data_kind == "image"]


def test_analytic_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 3, generator=g)
    logvar = torch.randn(5, 3, generator=g)
    post = Posterior(mean, logvar)
    q = Independent(Normal(mean, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    torch.testing.assert_close(post.kl(), kl_divergence(q, p), rtol=1e-5, atol=1e-5)
    # Monte-Carlo estimate with samples drawn by the posterior's own sampler: a sampler that
    # used exp(logvar) as the std (the lesson's notebooks) would not match the analytic KL.
    z = torch.stack([post.sample(g) for _ in range(40_000)])  # (S, 5, 3)
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(post.kl(), mc, rtol=0.05, atol=0.03)
    torch.testing.assert_close(post.log_prob(z[0]), q.log_prob(z[0]), rtol=1e-5, atol=1e-5)


def test_sampling_uses_the_variance_not_the_log_sigma():
    post = Posterior(torch.zeros(1, 1), torch.full((1, 1), math.log(4.0)))  # variance 4, std 2
    g = torch.Generator().manual_seed(1)
    z = torch.cat([post.sample(g) for _ in range(20_000)])
    assert abs(float(z.std()) - 2.0) < 0.05


def test_the_variational_models_are_covered():
    assert {"vae", "conv-vae", "cvae"} <= set(VARIATIONAL)  # an empty parametrisation would pass unrun


@pytest.mark.parametrize("name", VARIATIONAL)
@torch.no_grad()
def test_elbo_is_a_lower_bound_on_importance_sampled_log_likelihood(name):
    torch.manual_seed(0)
    cfg_cls, _ = lookup(name)
    model = build_model(name, cfg_cls.tiny((1, 4, 4))).eval()
    x = (torch.rand(4, 1, 4, 4) > 0.5).float()
    y = torch.arange(4) % model.num_classes if model.conditional else None
    g = torch.Generator().manual_seed(0)
    post = model.encode(x, y)
    k = 2000
    log_w = []
    elbo_terms = []
    for _ in range(k):
        z = post.sample(g)
        log_px_z = -reconstruction_loss(model.decode_logits(z, y), x, "bce")
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
        log_w.append(log_px_z + log_pz - post.log_prob(z))
        elbo_terms.append(log_px_z)
    log_w = torch.stack(log_w)  # (k, B)
    log_likelihood = torch.logsumexp(log_w, 0) - math.log(k)  # IWAE estimate, tight as k grows
    elbo = torch.stack(elbo_terms).mean(0) - post.kl()
    assert (elbo <= log_likelihood + 1e-3).all(), (elbo, log_likelihood)
    # and the bound is not vacuous: the gap is a few nats for this tiny model, not hundreds
    assert float((log_likelihood - elbo).max()) < 20
