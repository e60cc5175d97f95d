"""A run folder from a stranger cannot run code: every file that could carry some is refused.

Each payload, if unpickled, would create a marker folder.  The tests first prove the payload is
live (plain ``pickle.loads`` / ``torch.load(weights_only=False)`` does create the marker), then
hand the same bytes to aekit and check that it refuses them with one clear line and that the
marker never appears.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import aekit
from aekit.app import training
from aekit.cli import main
from aekit.errors import AekitError, CheckpointError
from aekit.run import read_config, read_metrics
from aekit.run.weights import build_from_config, load_weights
from aekit.train import checkpoint as ckpt


class Payload:
    """Unpickling this calls os.mkdir(marker): the smallest visible side effect of running code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state": Payload(marker)}, protocol=2)


def torch_zip_pickle(marker: Path) -> bytes:
    """What torch.save writes (a zip with data.pkl inside), holding the payload among real tensors."""
    buffer = io.BytesIO()
    torch.save({"optimizers": {"adam": {"state": {}, "param_groups": []}}, "extra": {"x": Payload(marker)},
                "tensor": torch.zeros(3)}, buffer)
    return buffer.getvalue()


PAYLOADS = {"raw pickle": raw_pickle, "torch.save zip": torch_zip_pickle}


def prove_live(kind: str, tmp_path: Path) -> None:
    """The payload really runs code when loaded the unsafe way."""
    marker = tmp_path / f"proof-{kind.replace(' ', '-')}"
    data = PAYLOADS[kind](marker)
    if kind == "raw pickle":
        pickle.loads(data)  # what must never happen to a checkpoint
    else:
        torch.load(io.BytesIO(data), weights_only=False)
    assert marker.is_dir(), "the payload did not run when unpickled: the test proves nothing"


@pytest.fixture
def run(tmp_path, make_run):
    path = tmp_path / "run"
    shutil.copytree(make_run("dense-ae"), path)
    return path


def one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("kind", PAYLOADS)
def test_weights_replaced_by_a_pickle_are_refused_and_nothing_runs(kind, run, tmp_path):
    prove_live(kind, tmp_path)
    marker = tmp_path / "marker"
    (run / "model.safetensors").write_bytes(PAYLOADS[kind](marker))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a valid safetensors file"):
        aekit.load(run)
    line = one_line_error(CliRunner().invoke(main, ["evaluate", str(run)]))
    assert "not a valid safetensors file" in line
    # every checkpoint too: resume falls back past them, never unpickles them
    for path in ckpt.list_checkpoints(run):
        (path / "model.safetensors").write_bytes(PAYLOADS[kind](marker))
        with pytest.raises(CheckpointError):
            load_weights(_fresh_model(run), path / "model.safetensors")
    assert not marker.exists(), "code in the weights file ran"


def _fresh_model(run: Path):
    return build_from_config(read_config(run))


@pytest.mark.parametrize("kind", PAYLOADS)
def test_optimizer_state_replaced_by_a_pickle_is_refused_and_nothing_runs(kind, run, tmp_path):
    prove_live(kind, tmp_path)
    marker = tmp_path / "marker"
    newest = ckpt.list_checkpoints(run)[-1]
    (newest / "optimizers.pt").write_bytes(PAYLOADS[kind](marker))
    with pytest.raises(CheckpointError) as raised:
        ckpt.read_checkpoint(newest)
    message = str(raised.value)
    assert "\n" not in message and "optimizers.pt: refused to unpickle" in message, message
    assert "weights_only" not in message  # torch's own advice (load it unsafely) is not passed on
    if kind == "torch.save zip":
        assert "it names posix.mkdir" in message or "it names os.mkdir" in message, message
    assert not marker.exists(), "code in optimizers.pt ran"


def test_resume_skips_a_poisoned_checkpoint_for_the_one_before_it(run, tmp_path, caplog):
    """`aekit train --resume` reads checkpoints newest first; a poisoned one is reported and passed over."""
    marker = tmp_path / "marker"
    original = ckpt.list_checkpoints(run)
    assert len(original) == 1
    training.train(resume=run, epochs=2, evaluate_test=False, write_report=False)  # a second checkpoint
    _older, newest = ckpt.list_checkpoints(run)
    (newest / "optimizers.pt").write_bytes(torch_zip_pickle(marker))
    with caplog.at_level("WARNING", logger="aekit"):
        result = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"skipping checkpoint {newest.name}" in caplog.text and "refused to unpickle" in caplog.text
    assert not marker.exists()
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]  # epoch 2 trained again from the older one
    assert ckpt.read_checkpoint(ckpt.list_checkpoints(run)[-1])  # rewritten from the older one: whole again


@pytest.mark.parametrize(
    ("model", "model_config", "message"),
    [
        ("os.system", {"command": "mkdir MARKER"}, "unknown model 'os.system'"),
        ("torch.nn.Module", {}, "unknown model 'torch.nn.Module'"),
        ("builtins.exec", {"source": "import os; os.mkdir('MARKER')"}, "unknown model 'builtins.exec'"),
        ("aekit.models.dense_ae.DenseAE", {}, "unknown model 'aekit.models.dense_ae.DenseAE'"),
        ("dense-ae", {"__class__": "os.system", "latent_dim": 4}, "has unknown key(s) '__class__'"),
        ("dense-ae", {"_target_": "os.system", "_args_": ["mkdir MARKER"]}, "has unknown key(s) '_args_', '_target_'"),
        ("dense-ae", {"__reduce__": ["os.mkdir", "MARKER"]}, "has unknown key(s) '__reduce__'"),
        ("dense-ae", {"hidden": "os.system"}, "hidden must be a list of whole numbers"),
    ],
)
def test_config_naming_code_is_refused(model, model_config, message, run, tmp_path):
    marker = tmp_path / "marker"
    raw = json.loads((run / "config.json").read_text())
    raw["model"] = model
    raw["model_config"] = json.loads(json.dumps(model_config).replace("MARKER", str(marker)))
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.raises(AekitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        aekit.load(run)
    line = one_line_error(CliRunner().invoke(main, ["evaluate", str(run)]))
    assert message in line
    assert not marker.exists()


def test_checkpoint_state_json_of_the_wrong_shape_is_refused(run):
    newest = ckpt.list_checkpoints(run)[-1]
    for state in ({"epoch": "1; import os", "step": 16, "batch_in_epoch": 0}, {"epoch": -1, "step": 0},
                  {"epoch": True, "step": 16, "batch_in_epoch": 0}, [1, 2, 3], "x"):
        (newest / "state.json").write_text(json.dumps(state))
        with pytest.raises(CheckpointError, match="state.json|wrong structure"):
            ckpt.read_checkpoint(newest)


def test_resume_with_only_poisoned_checkpoints_is_an_error_not_a_fresh_start(run, tmp_path):
    marker = tmp_path / "marker"
    for path in ckpt.list_checkpoints(run):
        (path / "optimizers.pt").write_bytes(torch_zip_pickle(marker))
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert not marker.exists()
    assert "refused to unpickle" in one_line_error(result)


@pytest.mark.parametrize("variant", ["renamed optimiser", "extra parameter group", "moment of another shape"])
def test_optimizer_state_for_other_optimisers_is_a_clear_error(variant, run):
    """A well-formed optimizers.pt that belongs to another model must be refused in one line."""
    newest = ckpt.list_checkpoints(run)[-1]
    _state, optim = ckpt.read_checkpoint(newest)
    (name, sd), = optim["optimizers"].items()
    if variant == "renamed optimiser":
        optim["optimizers"] = {name + "-other": sd}
    elif variant == "extra parameter group":
        optim["optimizers"] = {name: {**sd, "param_groups": sd["param_groups"] * 2}}
    else:  # loads without complaint into torch's optimiser, then fails inside step()
        first = next(iter(sd["state"].values()))
        first["exp_avg"] = torch.zeros(first["exp_avg"].numel() + 1)
    torch.save(optim, newest / "optimizers.pt")
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    line = one_line_error(result)
    assert "optimizers.pt" in line and "another model" in line, line
