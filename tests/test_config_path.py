"""One config path: flags, --set and --config become one RunConfig, checked by one set of rules,
and a run's own config.json trains the same run again."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from aekit.cli import main
from aekit.config import DataConfig, TrainConfig, from_plain, parse_value
from aekit.errors import ConfigError

SMALL = ["--model", "dense-ae", "--image-size", "14", "--epochs", "1", "--batch-size", "256", "--no-progress",
         "--set", "model.hidden=16", "--set", "model.latent_dim=3"]


def train(*args, out):
    result = CliRunner().invoke(main, ["train", *map(str, args), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "config.json").read_text())


def test_set_reaches_model_data_and_train_fields(tmp_path):
    cfg = train(*SMALL, "--set", "train.warmup_steps=7", "--set", "train.schedule=constant",
                "--set", "model.recon_loss=mse", "--set", "data.channels=1", out=tmp_path / "r")
    assert cfg["model_config"]["hidden"] == [16] and cfg["model_config"]["latent_dim"] == 3
    assert cfg["model_config"]["recon_loss"] == "mse"
    assert cfg["train"]["warmup_steps"] == 7 and cfg["train"]["schedule"] == "constant"
    assert cfg["data"]["image_size"] == 14 and cfg["in_shape"] == [1, 14, 14]


def test_a_runs_config_json_trains_the_same_run_again(tmp_path):
    first = train(*SMALL, out=tmp_path / "a")
    again = train("--config", tmp_path / "a" / "config.json", "--no-progress", out=tmp_path / "b")
    for section in ("model", "model_config", "data", "train", "in_shape"):
        assert again[section] == first[section], section
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads((tmp_path / name / "test_metrics.json").read_text()) for name in "ab"]
    assert metrics[0] == metrics[1]


def test_flags_and_set_override_a_config_file_in_that_order(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text('model = "dense-ae"\n[model_config]\nhidden = [16]\nlatent_dim = 5\n'
                    '[data]\nimage_size = 14\n[train]\nepochs = 1\nbatch_size = 256\nlr = 0.002\n')
    cfg = train("--config", path, "--lr", "0.003", "--set", "model.latent_dim=4", "--no-progress",
                out=tmp_path / "r")
    assert cfg["model"] == "dense-ae" and cfg["model_config"]["latent_dim"] == 4
    assert cfg["train"]["lr"] == 0.003 and cfg["train"]["epochs"] == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.channels=16,32", "model 'dense-ae' has no field 'channels'; known: in_shape, hidden"),
        ("model.hidden=16,x", "--set model.hidden must be a list of whole numbers (like 16,32), got '16,x'"),
        ("model.latent_dim=2.5", "--set model.latent_dim must be a whole number, got 2.5"),
        ("train.lr=fast", "--set train.lr must be a finite number, got 'fast'"),
        ("train.schedule=linear", "--set train.schedule must be one of cosine, constant, got 'linear'"),
        ("train.warmup_steps=-1", "--set train.warmup_steps must be at least 0, got -1"),
        ("optim.lr=1", "write SECTION.FIELD=VALUE"),
        ("train.lr", "write SECTION.FIELD=VALUE"),
    ],
)
def test_set_errors_name_the_field_and_its_type(setting, message, tmp_path):
    result = CliRunner().invoke(main, ["train", "--model", "dense-ae", "--set", setting, "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_models_fields_lists_what_set_reaches():
    result = CliRunner().invoke(main, ["models", "--fields", "conv-vae"])
    assert result.exit_code == 0
    assert "model.channels = [32, 64]" in result.output and "model.latent_dim = 16" in result.output
    result = CliRunner().invoke(main, ["train", "--settings"])
    assert "train.warmup_steps = 100" in result.output and "data.dataset = \"mnist-5k\"" in result.output


def test_one_checker_for_json_and_the_command_line():
    assert from_plain(TrainConfig, {"epochs": 3, "lr": 1}, source="x").lr == 1.0
    with pytest.raises(ConfigError, match=r"x: epochs must be a whole number, got True"):
        from_plain(TrainConfig, {"epochs": True}, source="x")
    with pytest.raises(ConfigError, match=r"x has unknown key\(s\) 'a\\nb'"):
        from_plain(DataConfig, {"a\nb": 1}, source="x")
    fld = TrainConfig.__dataclass_fields__["seed"]
    with pytest.raises(ConfigError, match="at most 4,294,967,295"):
        parse_value(str(2**70), int, fld, where="--set train.seed")
    assert parse_value("none", int | None, None, where="x") is None


def test_a_familys_training_defaults_fill_only_what_no_source_gives(monkeypatch, tmp_path):
    """A family's measured training defaults (Autoencoder.train_defaults) apply where nothing else
    is given; flags, --set and a config file win; the run's config.json records the values, so a
    resume or a rerun from config.json trains the same way whatever the defaults become later."""
    from aekit.app.training import plan_config
    from aekit.registry import lookup

    _, family = lookup("dense-ae")
    monkeypatch.setattr(family, "train_defaults", {"lr": 0.004, "warmup_steps": 3})
    assert plan_config(model="dense-ae").train.lr == 0.004
    assert plan_config(model="vae").train.lr == TrainConfig().lr  # another family: untouched
    assert plan_config().train.lr == 2e-3  # no --model: the default conv-vae, at its family's rate
    given = plan_config(model="dense-ae", options={"lr": 0.002}, settings=["train.warmup_steps=9"])
    assert given.train.lr == 0.002 and given.train.warmup_steps == 9
    cfg = train(*SMALL, out=tmp_path / "a")
    assert cfg["train"]["lr"] == 0.004 and cfg["train"]["warmup_steps"] == 3
    monkeypatch.setattr(family, "train_defaults", {})
    again = train("--config", tmp_path / "a" / "config.json", "--no-progress", out=tmp_path / "b")
    assert again["train"] == cfg["train"]
    result = CliRunner().invoke(main, ["models", "--fields", "dense-ae"])
    assert "train." not in result.output  # none now
    monkeypatch.setattr(family, "train_defaults", {"lr": 0.004})
    result = CliRunner().invoke(main, ["models", "--fields", "dense-ae"])
    assert "train.lr = 0.004  (this model's default)" in result.output


def test_a_run_saved_before_a_model_field_existed_loads_and_retrains_as_it_was_trained(tmp_path):
    """dense-ae's ``activation`` and ``norm`` came after runs were saved with ReLU layers and no
    norm: a config.json without them means those (``setting(absent=...)``), not today's GELU and
    layer norm, so the old weights load into the layers they were trained in."""
    import aekit
    from aekit.app.training import plan_config
    from aekit.registry import lookup

    old = tmp_path / "old"
    train(*SMALL, "--set", "model.activation=relu", "--set", "model.norm=none", out=old)
    x = torch.rand(3, 1, 14, 14)
    before = aekit.load(old).reconstruct(x)
    cfg = json.loads((old / "config.json").read_text())
    for name in ("activation", "norm"):
        del cfg["model_config"][name]
    (old / "config.json").write_text(json.dumps(cfg))

    model = aekit.load(old)  # strict: LayerNorm weights expected by mistake would be missing keys
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.GELU)) for m in model.modules())
    torch.testing.assert_close(model.reconstruct(x), before, rtol=0, atol=0)
    planned = plan_config(config_file=old / "config.json")
    assert (planned.model_config["activation"], planned.model_config["norm"]) == ("relu", "none")

    new_cls, _ = lookup("dense-ae")
    assert (new_cls().activation, new_cls().norm) == ("gelu", "layer")  # what a new run gets
    fresh = train(*SMALL, out=tmp_path / "new")
    assert (fresh["model_config"]["activation"], fresh["model_config"]["norm"]) == ("gelu", "layer")
    assert any(isinstance(m, torch.nn.LayerNorm) for m in aekit.load(tmp_path / "new").modules())
