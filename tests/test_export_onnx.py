"""`aekit export RUN DIR --format onnx`: every model family's encoder and decoder, run with
onnxruntime, give PyTorch's outputs within 1e-4, for batch sizes other than the traced one."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aekit.app import training
from aekit.app.export import ONNX_TOLERANCE, export
from aekit.cli import main
from aekit.config import DataConfig, RunConfig
from aekit.errors import AekitError, ConfigError
from aekit.registry import lookup, model_names
from aekit.run import Run
from aekit.run.weights import build_from_config
from aekit.tasks import make_task
from aekit.train.checkpoint import save_weights

ort = pytest.importorskip("onnxruntime")

# the options of the tasks that take some
TASK_OPTIONS = {"denoise": {"noise": "gaussian:0.5"}, "super-resolution": {"scale": 2}}
TASK_OF = {"sr-lesson": "super-resolution"}  # families that are not their task's default model


def task_of(family: str):
    """The task a family is trained for: the task whose default model it is, else reconstruct."""
    from aekit.tasks import TASKS, task_names

    task_names()  # registers them
    name = TASK_OF.get(family) or next((t.name for t in TASKS.values() if t.default_model == family), "reconstruct")
    return make_task(name, **TASK_OPTIONS.get(name, {}))


def is_image_family(family: str) -> bool:
    config_cls, _ = lookup(family)
    return len(config_cls.tiny().in_shape) == 3


def fabricate_run(root: Path, model: str) -> Path:
    """A run folder of ``model``'s tiny config on 16x16 images, with random weights (nudged away
    from their initial values, so that a layer initialised to zero still shows in the outputs):
    the export needs a config and weights, not a trained model."""
    task = task_of(model)
    config_cls, _ = lookup(model)
    target = (1, 16, 16) if is_image_family(model) else tuple(config_cls.tiny().in_shape)
    in_shape = task.input_shape(target)
    decided = ("in_shape", "num_classes", "scale")
    sizes = {k: v for k, v in dataclasses.asdict(config_cls.tiny()).items() if k not in decided}
    model_config = training.build_model_config(model, in_shape, sizes, num_classes=10, task=task)
    cfg = RunConfig(model=model, model_config=dataclasses.asdict(model_config),
                    data=DataConfig(dataset="mnist-5k", image_size=16, task=task.name, **task.options()),
                    in_shape=tuple(in_shape), out_shape=target, classes=[str(i) for i in range(10)],
                    aekit_version="0.1.0", torch_version=torch.__version__)
    torch.manual_seed(0)
    net = build_from_config(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = root / model
    folder.mkdir()
    (folder / "config.json").write_text(cfg.to_json())
    save_weights(net, folder / "model.safetensors")
    return folder


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("family", [f for f in model_names() if is_image_family(f)])
def test_every_family_exports_and_onnxruntime_matches_pytorch(family, tmp_path):
    run_dir = fabricate_run(tmp_path, family)
    out = tmp_path / "onnx"
    export(run_dir, out, format="onnx")
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "onnx.json"]
    model = Run.open(run_dir).load_model()
    spec = json.loads((out / "onnx.json").read_text())
    encoder, decoder = _session(out / "encoder.onnx"), _session(out / "decoder.onnx")

    batch = 5  # the export traced a batch of 2: the batch axis must really be free
    gen = torch.Generator().manual_seed(3)
    images = torch.rand((batch, *model.in_shape), generator=gen)
    labels = torch.tensor([0, 3, 9, 1, 3]) if model.conditional else None
    feed = {"image": images.numpy(), **({"label": labels.numpy()} if model.conditional else {})}
    got = dict(zip([o.name for o in encoder.get_outputs()], encoder.run(None, feed)))
    with torch.inference_mode():
        posterior = model.encode(images, labels)
        code = posterior.mode()
        decoded = model.decode(code, labels)
    first = got["mean" if model.variational else "code"]
    np.testing.assert_allclose(first, code.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    if model.variational:
        np.testing.assert_allclose(got["logvar"], posterior.logvar.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    else:
        assert "logvar" not in got

    feed = {"code": code.numpy(), **({"label": labels.numpy()} if model.conditional else {})}
    image = decoder.run(None, feed)[0]
    np.testing.assert_allclose(image, decoded.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    assert image.min() >= 0 and image.max() <= 1  # probabilities, as aekit decodes

    # onnx.json says what the graphs take and give, as onnxruntime sees them
    for part, session in (("encoder", encoder), ("decoder", decoder)):
        described = {i["name"]: i for i in spec[part]["inputs"]}
        for graph_input in session.get_inputs():
            entry = described.pop(graph_input.name)
            assert entry["shape"][0] == "batch" and graph_input.shape[0] == "batch"
            assert entry["shape"][1:] == graph_input.shape[1:]
            assert graph_input.type == {"float32": "tensor(float)", "int64": "tensor(int64)"}[entry["dtype"]]
        assert described == {}, f"onnx.json lists inputs the {part} does not take: {described}"
        assert [o["name"] for o in spec[part]["outputs"]] == [o.name for o in session.get_outputs()]
    assert spec["encoder"]["inputs"][0]["shape"][1:] == list(model.in_shape)
    assert spec["decoder"]["outputs"][0]["shape"][1:] == list(model.out_shape)
    assert spec["latent_dim"] == model.latent_dim and spec["model"] == family


@pytest.mark.parametrize("family", [f for f in model_names() if not is_image_family(f)] or
                         [pytest.param("none", marks=pytest.mark.skip(reason="every family maps images"))])
def test_a_family_that_does_not_map_images_says_so_in_one_line(family, tmp_path):
    run_dir = fabricate_run(tmp_path, family)
    result = CliRunner().invoke(main, ["export", str(run_dir), str(tmp_path / "out"), "--format", "onnx"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"a {family} model cannot be exported to ONNX" in result.output and not (tmp_path / "out").exists()


def test_a_conditional_decoder_uses_its_label(tmp_path):
    run_dir = fabricate_run(tmp_path, "cvae")
    export(run_dir, tmp_path / "onnx", format="onnx")
    decoder = _session(tmp_path / "onnx" / "decoder.onnx")
    code = np.zeros((2, Run.open(run_dir).load_model().latent_dim), np.float32)
    a = decoder.run(None, {"code": code, "label": np.array([0, 0])})[0]
    b = decoder.run(None, {"code": code, "label": np.array([0, 7])})[0]
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a[1] - b[1]).max() > 1e-3  # the label was not baked into the graph at trace time


def test_the_readme_lines_encode_an_image_with_onnxruntime_alone(make_run, tmp_path):
    """A trained run through the command line, then the README's lines in a fresh interpreter
    that never imports torch or aekit."""
    run_dir = make_run("conv-vae")
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", str(run_dir), str(out), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'encoder.onnx'}" in result.output
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "digit.png")
    snippet = (
        "import numpy as np, onnxruntime as ort\n"
        "from PIL import Image\n"
        'x = np.asarray(Image.open("digit.png").convert("L").resize((28, 28)), np.float32)[None, None] / 255\n'
        'mean, logvar = ort.InferenceSession("onnx/encoder.onnx").run(None, {"image": x})\n'
        "print(mean.shape)\n"
        "import sys; assert 'torch' not in sys.modules and 'aekit' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    latent = Run.open(run_dir).config.model_config["latent_dim"]
    assert done.stdout.strip() == f"(1, {latent})"


def test_an_export_is_refused_whole_before_anything_is_written(tmp_path):
    run_dir = fabricate_run(tmp_path, "dense-ae")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["export", str(run_dir), str(busy), "--format", "onnx"])
    assert result.exit_code == 1 and "--force" in result.output and result.output.count("\n") == 1, result.output
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]
    result = CliRunner().invoke(main, ["export", str(run_dir), str(busy), "--format", "onnx", "--force"])
    assert result.exit_code == 0, result.output
    assert (busy / "mine.txt").read_text() == "keep me"  # --force replaces aekit's files, nothing else
    assert (busy / "encoder.onnx").is_file()
    into_itself = CliRunner().invoke(main, ["export", str(run_dir), str(run_dir / "onnx"), "--format", "onnx"])
    assert into_itself.exit_code == 1 and "inside the run folder" in into_itself.output
    assert not (run_dir / "onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging folder was left behind"


def test_a_model_the_exporter_cannot_express_is_one_line(tmp_path, monkeypatch):
    run_dir = fabricate_run(tmp_path, "vae")

    def cannot(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::imaginary' to ONNX opset\nversion 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", cannot)
    result = CliRunner().invoke(main, ["export", str(run_dir), str(tmp_path / "out"), "--format", "onnx"])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and "cannot be exported to ONNX" in result.output, result.output
    assert "aten::imaginary" in result.output and not (tmp_path / "out").exists()


def test_a_missing_onnx_extra_names_the_install(tmp_path, monkeypatch):
    run_dir = fabricate_run(tmp_path, "vae")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "aekit\[onnx\]"'):
        export(run_dir, tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()


def test_an_unfaithful_graph_is_refused(tmp_path, monkeypatch):
    """The export's own check compares onnxruntime with PyTorch: a graph that computes something
    else (here: PyTorch's side changed after tracing) is refused, not written."""
    import aekit.app.export as export_module

    real = export_module.check_onnx

    def drifted(path, wrapper, inputs, names, **kwargs):
        with torch.no_grad():
            for p in wrapper.parameters():
                p.add_(0.01)
        return real(path, wrapper, inputs, names, **kwargs)

    monkeypatch.setattr(export_module, "check_onnx", drifted)
    with pytest.raises(AekitError, match="differs from PyTorch"):
        export(fabricate_run(tmp_path, "dense-ae"), tmp_path / "out", format="onnx")
    assert not (tmp_path / "out").exists()
