"""music-vae: what MusicVAE's recipe says it does, on tiny configs (the contract is in test_models.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aekit.app import training
from aekit.data import melodies as md
from aekit.errors import ConfigError
from aekit.eval.likelihood import estimate_log_likelihood
from aekit.models import Batch
from aekit.models.base import StepContext
from aekit.models.music_vae import (
    MusicVAEConfig,
    annealed_beta,
    scheduled_sampling_probability,
)
from aekit.registry import build_model

# Four 2-bar melodies (quarter, eighth and sixteenth notes, rests, a repeated note).
PHRASES = [
    [(0, 4, 60), (4, 8, 62), (8, 12, 64), (12, 16, 65), (16, 24, 67), (26, 32, 64)],
    [(0, 2, 72), (2, 4, 71), (4, 6, 69), (6, 8, 67), (8, 16, 69), (16, 18, 67), (18, 20, 67), (20, 32, 65)],
    [(2, 6, 55), (6, 10, 59), (10, 14, 62), (14, 16, 67), (16, 17, 66), (17, 18, 67), (18, 30, 71)],
    [(0, 8, 64), (8, 12, 64), (12, 16, 66), (16, 20, 68), (20, 22, 69), (24, 28, 71), (28, 32, 73)],
]


def melodies(phrases=PHRASES, steps: int = 32) -> torch.Tensor:
    return torch.stack([torch.from_numpy(md.encode_notes(p, steps)[0].astype(np.int64)) for p in phrases])


def tiny(steps: int = 32, **overrides):
    torch.manual_seed(0)
    options = {"steps_per_bar": 16, "encoder_hidden": 32, "decoder_hidden": 32, "latent_dim": 8, **overrides}
    return build_model("music-vae", MusicVAEConfig.tiny((steps,), **options))


@torch.no_grad()
def teacher_forced_accuracy(model, x: torch.Tensor) -> float:
    model.eval()
    logits = model.teacher_forced_logits(model.encode(x).mode(), x)
    model.train()
    return float((logits.argmax(dim=2) == x).double().mean())


@pytest.mark.slow
def test_a_tiny_model_learns_four_melodies_to_every_step_teacher_forced():
    x = melodies()
    model = tiny(free_bits=8.0)  # MusicVAE's free bits: the KL does not squeeze the code below 8 nats
    opts = model.configure_optimizers(1e-2, 0.0)
    g = torch.Generator().manual_seed(0)
    accuracy = teacher_forced_accuracy(model, x)
    assert accuracy < 0.5
    for step in range(1, 1001):  # about 550 steps (measured)
        model.training_step(Batch(x=x, target=x), opts, StepContext(forward=model, generator=g))
        if step % 25 == 0:
            accuracy = teacher_forced_accuracy(model, x)
            if accuracy == 1.0:
                break
    assert accuracy == 1.0, accuracy
    # and from the code alone, free-running, it plays them back too
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.reconstruct(x), x)


def test_sixteen_bars_use_the_conductor_two_bars_do_not():
    flat, hierarchical = tiny(32), tiny(256)
    assert not flat.hierarchical and not any(n.startswith("conductor") for n, _ in flat.named_parameters())
    assert hierarchical.hierarchical and hierarchical.bars == 16
    assert any(n.startswith("conductor.") for n, _ in hierarchical.named_parameters())
    x = torch.cat([melodies()] * 8, dim=1)  # (4, 256): the four phrases eight times
    out = hierarchical(Batch(x=x, target=x))
    assert out.logits.shape == (4, 256, 90)
    assert hierarchical.decode(out.posterior.mode()).shape == (4, 256)
    # one embedding per bar, and each bar is decoded from its own embedding alone
    with torch.no_grad():
        z = out.posterior.mode()
        cond = hierarchical._conditions(z)
        assert cond.shape == (4, 16, hierarchical.config.conductor_hidden)
        assert not torch.allclose(cond[:, 0], cond[:, 1])
        before = hierarchical.teacher_forced_logits(z, x)
        changed = cond.clone()
        changed[:, 3] = 0.0
        hierarchical._conditions = lambda _z: changed
        after = hierarchical.teacher_forced_logits(z, x)
    bar3 = slice(3 * 16, 4 * 16)
    assert not torch.allclose(after[:, bar3], before[:, bar3])
    torch.testing.assert_close(after[:, :48], before[:, :48])
    torch.testing.assert_close(after[:, 64:], before[:, 64:])
    with pytest.raises(ConfigError, match="whole bars"):
        tiny(40, conductor_above_bars=1)


def test_greedy_decoding_is_what_teacher_forcing_predicts_on_its_own_output():
    model = tiny().eval()
    z = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        decoded, logits = model.free_running(z)
        again = model.teacher_forced_logits(z, decoded)
    assert torch.equal(decoded, model.decode(z))
    assert torch.equal(again.argmax(dim=2), decoded)
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-4)


def test_schedules_follow_musicvae():
    assert scheduled_sampling_probability(0, 0.0) == 0.0
    k = 400.0
    assert scheduled_sampling_probability(0, k) == pytest.approx(1 / (k + 1))
    assert scheduled_sampling_probability(int(k * math.log(k)), k) == pytest.approx(0.5, abs=0.01)
    assert scheduled_sampling_probability(10**9, k) == pytest.approx(1.0)  # no overflow
    assert annealed_beta(0, 0.2, 0.999) == 0.0
    assert annealed_beta(1000, 0.2, 0.999) == pytest.approx(0.2 * (1 - 0.999**1000))
    assert annealed_beta(10**6, 0.2, 0.999) == pytest.approx(0.2)


def test_the_step_count_is_kept_with_the_weights_and_drives_the_loss(tmp_path):
    from safetensors.torch import load_file

    from aekit.train.checkpoint import save_weights

    model = tiny(beta=1.0, beta_rate=0.5, free_bits=0.0)
    x = melodies()
    batch = Batch(x=x, target=x)
    opts = model.configure_optimizers(1e-3, 0.0)
    with torch.no_grad():
        losses = model.loss(batch, model(batch))
    assert model.current_beta == 0.0
    assert float(losses.total) == pytest.approx(float(losses.parts["recon"]), rel=1e-5)  # no KL weight yet
    for _ in range(3):
        model.training_step(batch, opts)
    assert int(model.steps_trained) == 3 and model.current_beta == pytest.approx(1 - 0.5**3)
    save_weights(model, tmp_path / "w.safetensors")
    assert int(load_file(str(tmp_path / "w.safetensors"))["steps_trained"]) == 3


def test_free_bits_make_a_small_kl_free():
    model = tiny(beta=1.0, beta_rate=0.0, free_bits=1e6)
    model.steps_trained.fill_(10)
    x = melodies()
    batch = Batch(x=x, target=x)
    with torch.no_grad():
        out = model(batch)
        losses = model.loss(batch, out)
    assert float(losses.parts["kl"]) > 0
    assert float(losses.total) == pytest.approx(float(losses.parts["recon"]), rel=1e-6)
    model.config.free_bits = 0.0
    with torch.no_grad():
        total = model.loss(batch, out).total
    assert float(total) == pytest.approx(float(losses.parts["recon"] + losses.parts["kl"]),
                                                                rel=1e-5)


def test_scheduled_sampling_feeds_the_decoder_its_own_draws_only_in_training():
    model = tiny(sampling_rate=1.0)  # p is 1 after a few steps: every step reads a draw
    model.steps_trained.fill_(100)
    x = melodies()
    g = torch.Generator().manual_seed(0)
    model.eval()
    with torch.no_grad():
        z = model.encode(x).mode()
        out = model(Batch(x=x, target=x), torch.Generator().manual_seed(0))
        forced = model.teacher_forced_logits(out.z, x)
    torch.testing.assert_close(out.logits, forced)  # eval: teacher forcing
    model.train()
    with torch.no_grad():
        trained = model(Batch(x=x, target=x), g)
    assert not torch.allclose(trained.logits, model.teacher_forced_logits(trained.z, x))
    assert z.shape == (4, model.latent_dim)


def test_the_elbo_is_below_the_importance_sampled_likelihood():
    model = tiny().eval()
    x = melodies()
    estimate = estimate_log_likelihood(model, x, samples=400, seed=0)
    with torch.no_grad():
        out = model(Batch(x=x, target=x), torch.Generator().manual_seed(0))
        elbo = -(model.reconstruction_nats(out.logits, x) + model.kl(out.posterior, out.z))
    assert (estimate.elbo <= estimate.log_likelihood + 1e-3).all()
    assert float(estimate.log_likelihood.mean()) >= float(elbo.mean()) - 5.0  # same quantity, other draws
    assert float((estimate.log_likelihood - estimate.elbo).max()) < 20


def test_sampling_is_seeded_and_a_cold_temperature_is_greedy():
    model = tiny().eval()
    a = model.sample(6, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = model.sample(6, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (6, 32) and a.dtype == torch.int64
    cold = model.sample(6, temperature=1e-4, generator=torch.Generator().manual_seed(3))
    z = model.prior_sample(6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(cold, model.decode(z))
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ConfigError, match="not conditional"):
        model.sample(2, label=1)


def test_inputs_that_are_not_melodies_are_refused_in_one_line():
    model = tiny()
    with pytest.raises(ConfigError, match=r"expects melodies of shape \(32,\)"):
        model.encode(torch.rand(2, 32))
    with pytest.raises(ConfigError, match="classes must lie in 0..89"):
        model.encode(torch.full((2, 32), 90))


def test_the_dataset_chooses_the_task_and_the_model(tmp_path):
    cfg = training.plan_config(options={"dataset": "melodies"})  # no data is loaded to plan
    assert (cfg.data.task, cfg.model) == ("melody", "music-vae")
    cfg = training.plan_config(options={"dataset": "melodies-16bar:/x"}, settings=["model.latent_dim=8"])
    assert (cfg.data.task, cfg.model, cfg.model_config) == ("melody", "music-vae", {"latent_dim": 8})
    with pytest.raises(ConfigError, match="music-vae reads melodies, but --dataset mnist-5k holds images"):
        training.plan_config(model="music-vae")
    with pytest.raises(ConfigError, match="conv-vae reads images, but --dataset melodies holds melodies"):
        training.plan_config(model="conv-vae", options={"dataset": "melodies"})
    with pytest.raises(ConfigError, match="--task denoise does not train on"):
        training.plan_config(options={"dataset": "melodies", "task": "denoise"})


def test_log_weights_in_slices_equal_log_weights_at_once(monkeypatch):
    from aekit.models import music_vae

    model = tiny().eval()
    x = melodies()
    with torch.no_grad():
        posterior = model.encode(x)
        z = posterior.sample(torch.Generator().manual_seed(0)).unsqueeze(0).expand(3, -1, -1)  # (3, 4, D)
        whole = model.log_weights(x, None, posterior, z)
        monkeypatch.setattr(music_vae, "LOG_WEIGHT_STEPS", 64)  # two melodies at a time
        sliced = model.log_weights(x, None, posterior, z)
    assert whole.shape == (3, 4)
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-4)
