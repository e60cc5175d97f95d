"""The contract every registered model keeps, checked on tiny configs on the CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import aekit
from aekit.config import RunConfig
from aekit.errors import ConfigError
from aekit.fileio import atomic_write_text
from aekit.models import Batch
from aekit.registry import build_model, lookup, model_names
from aekit.train.checkpoint import save_weights

SHAPE = (1, 12, 12)


def tiny(name: str, in_shape=SHAPE, **overrides):
    """The registered model ``name`` built from its config's ``tiny()``, with seeded weights.

    ``in_shape`` is an image's: a model of another kind of data (melodies) keeps its tiny() shape."""
    config_cls, model_cls = lookup(name)
    torch.manual_seed(0)
    if model_cls.data_kind != "image":
        return build_model(name, config_cls.tiny(**overrides))
    return build_model(name, config_cls.tiny(in_shape, **overrides))


def make_batch(model, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = model.example_input(n, shape=model.out_shape, generator=g)
    x = model.example_input(n, generator=g) if model.in_shape != model.out_shape else target
    y = torch.arange(n) % model.num_classes if model.conditional else None
    return Batch(x=x, target=target, y=y)


def check_contract(model):
    batch = make_batch(model)
    posterior = model.encode(batch.x, batch.y)
    assert posterior.mode().shape == (6, model.latent_dim)
    assert posterior.sample().shape == (6, model.latent_dim)
    assert posterior.kl().shape == (6,)
    assert (posterior.logvar is not None) == model.variational
    out = model(batch)
    assert out.logits.shape == (6, *model.logits_shape)
    x_hat = model.decode(posterior.mode(), batch.y).detach()
    assert x_hat.shape == (6, *model.out_shape)
    if x_hat.is_floating_point():  # pixels in [0, 1]
        assert 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    else:  # class indices, one per step (melodies)
        assert 0 <= int(x_hat.min()) and int(x_hat.max()) < model.logits_shape[-1]
    assert model.reconstruct(batch.x, batch.y).shape == (6, *model.out_shape)
    if model.generative:
        assert model.sample(5).shape == (5, *model.out_shape)


@pytest.mark.parametrize("name", model_names())
def test_shapes_and_contract(name):
    check_contract(tiny(name))


def test_conv_ae_without_a_bottleneck_keeps_the_contract():
    """latent_dim=0 (the default) decodes the conv code itself: the path tiny()'s bottleneck skips."""
    model = tiny("conv-ae", latent_dim=0)
    assert model.to_latent is None and model.latent_dim == 8 * 2 * 2  # 12 -> 6 -> 3 -> 2
    check_contract(model)


@pytest.mark.parametrize("name", model_names())
def test_loss_is_finite_and_backpropagates(name):
    model = tiny(name)
    batch = make_batch(model)
    losses = model.loss(batch, model(batch))
    assert torch.isfinite(losses.total)
    assert "recon" in losses.parts
    losses.total.backward()
    trained = [p for n, p in model.named_parameters() if not n.startswith("discriminator")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    assert any(float(p.grad.abs().sum()) > 0 for p in trained)


@pytest.mark.parametrize("name", model_names())
def test_save_and_load_give_identical_outputs(name, tmp_path):
    model = tiny(name).eval()
    cfg = RunConfig(model=name, model_config=dataclasses.asdict(model.config), in_shape=model.in_shape,
                    out_shape=model.out_shape)
    atomic_write_text(tmp_path / "config.json", cfg.to_json())
    save_weights(model, tmp_path / "model.safetensors")
    loaded = aekit.load(tmp_path)
    batch = make_batch(model)
    assert type(loaded) is type(model)
    assert torch.equal(model.reconstruct(batch.x, batch.y), loaded.reconstruct(batch.x, batch.y))
    assert torch.equal(model.encode(batch.x, batch.y).mode(), loaded.encode(batch.x, batch.y).mode())


@pytest.mark.parametrize("name", model_names())
def test_one_batch_can_be_overfit(name):
    model = tiny(name)
    batch = make_batch(model, n=8)
    opts = model.configure_optimizers(3e-3, 0.0)
    g = torch.Generator().manual_seed(0)
    from aekit.models.base import StepContext

    def recon() -> float:
        model.eval()
        with torch.no_grad():
            value = float(model.loss(batch, model(batch, g)).parts["recon"])
        model.train()
        return value

    # Uniform-noise targets: the floor of BCE is their entropy, so compare against the start.
    # Class targets (melodies) can be recalled exactly: their floor is 0.
    entropy = (float(torch.nn.functional.binary_cross_entropy(batch.target, batch.target, reduction="sum")) / 8
               if batch.target.is_floating_point() else 0.0)
    first = last = recon()
    # Most tiny configs get there within 300 steps; conv-ae's 8-number bottleneck takes up to
    # about 1,100 (measured over four seeds), so stop as soon as the bound holds, checked every 50.
    for step in range(1, 2001):
        model.training_step(batch, opts, StepContext(forward=model, generator=g))
        if step % 50 == 0:
            last = recon()
            if last - entropy < 0.5 * (first - entropy):
                break
    assert last - entropy < 0.5 * (first - entropy), (first, last, entropy)


IMAGE_MODELS = [name for name in model_names() if lookup(name)[1].data_kind == "image"]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_rgb_and_other_sizes(name):
    model = tiny(name, in_shape=(3, 16, 20))
    batch = make_batch(model, n=2)
    assert model(batch).logits.shape == (2, *model.out_shape)


@pytest.mark.parametrize("name", model_names())
def test_wrong_shape_is_a_clear_error(name):
    model = tiny(name)
    wrong = model.example_input(2, shape=(*model.in_shape[:-1], model.in_shape[-1] + 1))
    with pytest.raises(ConfigError, match=r"expects (images|melodies) of shape"):
        model.encode(wrong, torch.zeros(2, dtype=torch.long) if model.conditional else None)


def test_too_small_images_say_what_works():
    with pytest.raises(ConfigError, match="at least 8x8"):
        tiny("conv-ae", in_shape=(1, 4, 4))
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        tiny("dense-ae", in_shape=(2, 8, 8))


def test_conv_ae_has_the_lessons_layers():
    model = build_model("conv-ae", lookup("conv-ae")[0]())
    # Keras summary of the lesson's model: 4,385 trainable parameters, a 4x4x8 code.
    assert sum(p.numel() for p in model.parameters()) == 4385
    assert model.code_shape == (8, 4, 4)
    assert model.encode(torch.rand(1, 1, 28, 28)).mode().shape == (1, 128)


def test_conv_ae_encoder_computes_the_lessons_conv_relu_pool():
    """The encoder pools before its ReLU (cheaper); the lesson's conv -> ReLU -> pool order, built
    from the same weights, gives the same code and the same gradients."""
    torch.manual_seed(0)
    model = build_model("conv-ae", lookup("conv-ae")[0]())
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    lesson = torch.nn.Sequential(*[layer for conv in convs for layer in
                                   (conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2, ceil_mode=True))])
    x = torch.rand(16, 1, 28, 28) - 0.3  # some negative pre-activations in every pooling window
    ours = model.encoder(x)
    grads_ours = torch.autograd.grad(ours.square().sum(), [c.weight for c in convs])
    theirs = lesson(x)
    grads_theirs = torch.autograd.grad(theirs.square().sum(), [c.weight for c in convs])
    assert torch.equal(ours, theirs)
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
