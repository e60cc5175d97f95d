"""Conditional models obey their label; the adversarial AE's discriminator really trains."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

import aekit
from aekit.cli import main
from aekit.config import RunConfig
from aekit.errors import ConfigError
from aekit.models import Batch
from aekit.models.base import StepContext
from aekit.registry import build_model, lookup, model_names
from aekit.run import read_config
from aekit.run.weights import build_from_config

CONDITIONAL = [name for name in model_names() if lookup(name)[1].conditional]


def tiny(name: str, **overrides):
    """The registered model ``name`` built from its config's ``tiny()`` for 16x16 grey images."""
    config_cls, _ = lookup(name)
    return build_model(name, config_cls.tiny((1, 16, 16), **overrides))


def test_the_conditional_models_are_covered():
    assert "cvae" in CONDITIONAL  # an empty parametrisation below would pass without running


def bars(n: int, vertical: bool, generator: torch.Generator, size: int = 16) -> torch.Tensor:
    """n images of one bright bar, 2-4 pixels thick, at a random place: two easily told classes."""
    images = torch.zeros(n, 1, size, size)
    starts = torch.randint(2, size - 6, (n,), generator=generator)
    widths = torch.randint(2, 5, (n,), generator=generator)
    for i, (s, w) in enumerate(zip(starts.tolist(), widths.tolist())):
        if vertical:
            images[i, 0, 2:-2, s:s + w] = 1.0
        else:
            images[i, 0, s:s + w, 2:-2] = 1.0
    return images


@pytest.mark.parametrize("name", CONDITIONAL)
def test_samples_obey_the_label(name):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([bars(256, False, g), bars(256, True, g)])  # label 0: horizontal, 1: vertical
    y = torch.cat([torch.zeros(256), torch.ones(256)]).long()
    torch.manual_seed(0)
    model = tiny(name, num_classes=2)
    opts = model.configure_optimizers(3e-3, 0.0)
    for step in range(250):
        idx = torch.randint(0, 512, (64,), generator=g)
        model.training_step(Batch(x=x[idx], target=x[idx], y=y[idx]), opts, StepContext(forward=model, generator=g))
    model.eval()
    means = torch.stack([x[y == k].mean(0).flatten() for k in (0, 1)])  # (2, 256) class means
    for label in (0, 1):
        samples = model.sample(100, label=label, generator=torch.Generator().manual_seed(label)).flatten(1)
        nearest = torch.cdist(samples, means).argmin(dim=1)
        # Chance is 0.5; a decoder that ignored the label would draw both kinds.
        assert (nearest == label).float().mean() >= 0.9, (label, nearest.float().mean())


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_models_need_labels(name):
    model = tiny(name, num_classes=3)
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ConfigError, match="conditional: pass a class label"):
        model.encode(x)
    with pytest.raises(ConfigError, match=r"labels must be 2 integers in 0\.\.2"):
        model.encode(x, torch.tensor([0, 3]))
    assert model.sample(4, label=2).shape == (4, 1, 16, 16)


def test_cvae_beta_from_the_cli(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--model", "cvae", "--beta", "4", "--latent-dim", "2", "--epochs", "1",
                                       "--image-size", "16", "--batch-size", "256", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    cfg = read_config(out)
    assert cfg.model_config["beta"] == 4.0 and cfg.model_config["num_classes"] == 10
    model = aekit.load(out)
    x = torch.rand(3, 1, 16, 16)
    batch = Batch(x=x, target=x, y=torch.tensor([1, 2, 3]))
    out_ = model(batch, torch.Generator().manual_seed(0))
    losses = model.loss(batch, out_)
    assert torch.allclose(losses.total, losses.parts["recon"] + 4.0 * losses.parts["kl"])
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["elbo"] < 0 and metrics["kl"] > 0


def _disc_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.discriminator.state_dict().items()}


def test_aae_discriminator_trains(make_run):
    options = {k: v for k, v in dataclasses.asdict(lookup("aae")[0].tiny()).items() if k != "in_shape"}
    run = make_run("aae", batch_size=64, model_options=options)
    cfg: RunConfig = read_config(run)
    torch.manual_seed(cfg.train.seed)  # the initialisation api.train started from
    before = _disc_weights(build_from_config(cfg))
    after = _disc_weights(aekit.load(run))
    assert before.keys() == after.keys()
    # The lesson's notebook steps the decoder's optimiser in the discriminator phase, so its
    # discriminator keeps its initial weights; every one of these must have moved.
    for key in before:
        assert not torch.equal(before[key], after[key]), key
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = rows[-1]["train"]
    assert {"recon", "disc", "gen", "disc_accuracy"} <= set(train)
    assert abs(train["disc_accuracy"] - 0.5) > 0.1, train


def test_aae_step_by_step():
    """Each phase moves only its own parameters, and the discriminator learns to tell codes from prior draws."""
    torch.manual_seed(0)
    model = tiny("aae")
    opts = model.configure_optimizers(1e-3, 0.0)
    assert set(opts) == {"autoencoder", "discriminator", "generator"}
    g = torch.Generator().manual_seed(0)
    x = torch.cat([bars(32, False, g), bars(32, True, g)])
    batch = Batch(x=x, target=x)
    decoder_before = [p.detach().clone() for p in model.decoder.parameters()]
    first = model.training_step(batch, opts, StepContext(forward=model, generator=g))
    assert all(not torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))
    accuracies = [float(first.parts["disc_accuracy"])]
    for _ in range(40):
        losses = model.training_step(batch, opts, StepContext(forward=model, generator=g))
        accuracies.append(float(losses.parts["disc_accuracy"]))
    assert all(torch.isfinite(v) for v in losses.parts.values())
    # Codes start near 0 with a small spread, prior draws have unit spread: the discriminator
    # should separate them well above chance before the encoder catches up.
    assert max(accuracies) > 0.7, accuracies
    assert model.sample(3).shape == (3, 1, 16, 16)
