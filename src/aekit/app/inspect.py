"""Looking at a trained run: samples, plots of its latent space, embeddings, and PCA as a yardstick.

The Python side of ``aekit sample``, ``aekit plot``, ``aekit embed`` and ``aekit compare-pca``:
each function loads a run folder and the data it was trained on, prepares tensors with
:mod:`aekit.latent`, and draws them with :mod:`aekit.viz.plots`.  A notebook can call these, or
the layers below them directly.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..errors import ConfigError, DataError
from ..fileio import atomic_write_bytes, atomic_write_text, check_outputs
from ..latent import encode_dataset
from ..latent import views as lv
from ..run import METRICS_NAME, Run
from ..tasks import make_task
from ..viz import plots

log = logging.getLogger(__name__)

PLOT_KINDS = {
    "reconstructions": "test images above the model's reconstructions (and its input, for denoise/SR runs)",
    "scatter": "test-set latent means coloured by class (PCA above 2-D; --method tsne)",
    "manifold": "decodes of a grid over the latent space (the lesson's digit manifold)",
    "interpolate": "decodes along the line between two test images' codes (--between I J)",
    "latent-noise": "codes plus growing Gaussian noise, decoded (the lesson's Task 2)",
    "curves": "training and validation losses by part, per epoch",
    "ood": "reconstruction-error histograms against another dataset (--against NAME), with ROC-AUC",
    "labels": "conditional models: one code decoded under every label",
}

# Encoding a whole training set is quick, but a few thousand codes pin down the mean and the
# covariance that a plain AE's samples are drawn from just as well.
MAX_CODES_FOR_SAMPLING = 10_000

SPLITS = ("train", "val", "test")


@dataclass
class PlotOptions:
    """What ``aekit plot`` may be told beyond the kind; None means the kind's default."""

    n: int | None = None  # images per row, grid side, interpolation steps or points, by kind
    seed: int = 0
    method: str | None = None  # scatter: pca or tsne
    between: tuple[int, int] | None = None  # interpolate: two test-image indices
    against: str | None = None  # ood: the other dataset
    label: int | None = None  # manifold of a conditional model: the label to decode under


# -- a run and its data ---------------------------------------------------------------------------

def _title(run: Run) -> str:
    return f"{run.config.model} ({run.name})"


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Upper limits on -n where it multiplies work without a dataset to bound it: every image of a
# figure is decoded and drawn, and a figure of more than a few thousand images helps no one.
MAX_SAMPLES = 1024  # sample: a 32 x 32 grid
MAX_MANIFOLD_SIDE = 64  # manifold: 64 x 64 decodes
MAX_STEPS = 256  # interpolate: steps along each row


def _check_n(n: int | None, what: str, minimum: int = 1, maximum: int | None = None) -> None:
    if n is not None and n < minimum:
        raise ConfigError(f"-n must be at least {minimum} for {what}, got {n}")
    if n is not None and maximum is not None and n > maximum:
        raise ConfigError(f"-n must be at most {maximum:,} for {what}, got {n:,}")


def _require_vector_latent(model, images: Tensor, labels: Tensor | None, kind: str) -> None:
    if not lv.is_bottleneck(model):
        raise ConfigError(f"`{kind}` needs a model with a bottleneck; {model.registry_name}'s code "
                          f"({model.latent_dim} numbers) is larger than its input, so it maps nothing: "
                          "plot a run of an autoencoder or VAE instead")
    if not lv.has_vector_latent(model, images, labels):
        raise ConfigError(f"`{kind}` needs a model whose codes are vectors that decode back to images; "
                          f"{model.registry_name}'s are not")


# -- sample ---------------------------------------------------------------------------------------

def sample_figure(run_dir: str | Path, *, n: int = 64, label: int | None = None, temperature: float = 1.0,
                  seed: int = 0, dataset: str | None = None, data_dir: str | None = None,
                  device: str = "auto", sampler: str = "prior") -> Figure:
    """Generated images.  ``sampler="prior"``: prior draws for generative models, and for a plain
    AE draws where its codes lie next to random codes (:func:`aekit.latent.views.sample_panels`).
    ``sampler="gmm"`` or ``"gmm:K"``: draws from a K-component Gaussian mixture fitted to the
    training codes (:func:`code_mixture`), for any model with vector codes."""
    from ..latent.gmm import parse_sampler

    _check_n(n, "sample", 1, MAX_SAMPLES)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"--temperature must be a positive number, got {temperature}")
    source, components = parse_sampler(sampler)
    run = Run.open(run_dir, device=device)
    model = run.model
    lv.check_label(model, label)
    if source == "gmm":
        if model.conditional:
            raise ConfigError("--sampler gmm draws codes without a label; for a conditional model use --sampler prior")
        mixture = code_mixture(run, components, dataset=dataset, data_dir=data_dir)
        z = mixture.sample(n, temperature=temperature, generator=_generator(seed))  # (n, D)
        t = f", temperature {temperature:g}" if temperature != 1 else ""
        panels = {f"Gaussian mixture of {components} fitted to the training codes{t}": lv.decode_latents(model, z)}
        return plots.panels_figure(panels, title=f"samples from {_title(run)}")
    if source == "normal":
        if model.conditional:
            raise ConfigError("--sampler normal draws codes without a label; for a conditional model use --sampler prior")
        z = torch.randn((n, model.latent_dim), generator=_generator(seed)) * temperature
        return plots.panels_figure({"codes drawn from N(0, I)": lv.decode_latents(model, z)},
                                   title=f"samples from {_title(run)}")
    if not model.generative and type(model).generative:
        model.sample(n)  # a family that samples once a second stage is trained says which (vq-vae: train-prior)
    codes = None
    if not model.generative:
        train = run.splits(dataset, data_dir).train
        images, labels = lv.first_images(train, MAX_CODES_FOR_SAMPLING)
        _require_vector_latent(model, images, labels, "sample")
        codes = encode_dataset(model, images, labels if model.conditional else None)
    panels = lv.sample_panels(model, n, codes=codes, label=label, temperature=temperature,
                              generator=_generator(seed))
    cols = model.num_classes if model.conditional and label is None and n >= model.num_classes else None
    return plots.panels_figure(panels, title=f"samples from {_title(run)}", cols=cols)


def writes_sample_files(run_dir: str | Path) -> bool:
    """Whether the run's samples are files of their own kind (melodies: MIDI) rather than a
    figure of images: what its task's data is decides."""
    return Run.open(run_dir).task.data_kind != "image"


def write_sample_files(run_dir: str | Path, out_dir: str | Path | None = None, *, label: int | None = None,
                       sampler: str = "prior", **options):
    """Samples of a run whose data is not images, as files in ``out_dir`` (default: the run's
    ``samples/`` folder; for melodies, :func:`aekit.app.music.write_samples`, whose ``options`` these are)."""
    from .music import write_samples

    if label is not None:
        raise ConfigError("--label is for conditional image models; melody models take none")
    if sampler != "prior":
        raise ConfigError("--sampler applies to image runs; melody runs sample their prior")
    out_dir = Run.open(run_dir).output_file("samples") if out_dir is None else out_dir
    return write_samples(run_dir, out_dir, **options)


def code_mixture(run: Run, components: int, *, dataset: str | None = None, data_dir: str | None = None):
    """The run's Gaussian mixture over its training codes: read from ``RUN/gmm-K.npz`` (arrays,
    no pickle; :meth:`aekit.run.Run.output_file` for read-only runs), or fitted on the first :data:`MAX_CODES_FOR_SAMPLING` training images' code
    means and stored there for next time.  A mixture for another dataset is fitted, never stored."""
    from ..latent.gmm import CodeMixture

    model = run.model
    path = run.output_file(f"gmm-{components}.npz")  # a pretrained or Hub model's in aekit's cache, not in the package
    own_data = dataset in (None, run.config.data.dataset)
    if own_data and path.is_file():
        return CodeMixture.from_bytes(path.read_bytes(), source=str(path), latent_dim=model.latent_dim)
    train = run.splits(dataset, data_dir).train
    images, labels = lv.first_images(train, MAX_CODES_FOR_SAMPLING)
    _require_vector_latent(model, images, labels, "sample --sampler gmm")
    mixture = CodeMixture.fit(encode_dataset(model, images, None), components, seed=run.config.train.seed)
    if own_data:
        try:
            atomic_write_bytes(path, mixture.to_bytes())
        except OSError as err:  # a read-only run folder: sample anyway, fit again next time
            log.warning("could not store the fitted mixture in %s (%s)", path, err.strerror)
    return mixture


# -- plot -----------------------------------------------------------------------------------------

def _check_kind_options(figure: str, opts: PlotOptions, model) -> None:
    """Refuse options the kind of figure would ignore, so nobody reads a plot that ignored them."""
    uses = {"method": ("scatter",), "between": ("interpolate",), "against": ("ood",), "label": ("manifold",)}
    for option, figures in uses.items():
        if getattr(opts, option) is not None and figure not in figures:
            flag = "--" + option
            raise ConfigError(f"{flag} applies to `aekit plot {' / '.join(figures)}`, not to `{figure}`; drop {flag}")
    if figure == "labels" and not model.conditional:
        raise ConfigError(f"`labels` plots need a conditional model (cvae); {model.registry_name} is not conditional")
    if figure == "ood" and not opts.against:
        raise ConfigError("`ood` needs the other dataset: pass --against NAME (for MNIST runs, fashion-mnist)")
    lv.check_label(model, opts.label)


def plot(run_dir: str | Path, kind: str, *, dataset: str | None = None, data_dir: str | None = None,
         device: str = "auto", options: PlotOptions | None = None) -> Figure:
    """One of :data:`PLOT_KINDS` for the run in ``run_dir``, drawn on its test split."""
    if kind not in PLOT_KINDS:
        raise ConfigError(f"unknown plot kind {kind!r}; choose one of: {', '.join(PLOT_KINDS)}")
    opts = options or PlotOptions()
    run = Run.open(run_dir, device=device)
    if kind not in _FROM_HISTORY and run.task.data_kind != "image":
        raise ConfigError(f"`aekit plot {kind}` draws images, and {run.path} holds {run.task.data_plural}: see its "
                          "report (piano rolls), `aekit sample`, `aekit interpolate` or `aekit serve`")
    _check_kind_options(kind, opts, run.model)
    if kind in _FROM_HISTORY:
        return _FROM_HISTORY[kind](run)
    return _PLOTTERS[kind](run, run.splits(dataset, data_dir), opts, data_dir)


def curves_figure(run: Run, *, title: str | None = None) -> Figure:
    history = run.history()
    if not history:
        raise DataError(f"{run.path}: no epochs in {METRICS_NAME}; train the run for an epoch first")
    epochs, parts = plots.loss_series(history)
    return plots.curves_figure(epochs, parts, title=title or f"losses of {_title(run)} (per image)")


def _plot_reconstructions(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    _check_n(opts.n, "reconstructions")
    return reconstructions_figure(run.model, run.task, splits.test, n=opts.n or 10, seed=opts.seed,
                                  title=f"{_title(run)}: {run.task.describe()} on {splits.name} test images")


def reconstructions_figure(model, task, test, *, n: int, seed: int, title: str) -> Figure:
    """The first ``n`` test images above the model's outputs (and its input, where the task corrupts it)."""
    n = min(n, len(test))
    rows = lv.before_after(model, task, test.images[:n], _labels(test, n), generator=_generator(seed))
    return plots.reconstructions_figure(rows, title=title)


def _labels(data, n: int | None = None) -> Tensor | None:
    if data.labels is None:
        return None
    return data.labels if n is None else data.labels[:n]


def _plot_scatter(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    model = run.model
    _check_n(opts.n, "scatter", 10)
    method = opts.method or "pca"
    n = opts.n or (1000 if method == "tsne" else 5000)
    test = splits.test
    images, labels = test.images[:n], _labels(test, n)
    _require_vector_latent(model, images, labels, "scatter")
    codes = encode_dataset(model, images, labels if model.conditional else None)
    view = lv.project_codes(codes, method, seed=opts.seed)
    return plots.scatter_figure(view.points, labels, splits.classes,
                                title=f"{_title(run)}: {codes.shape[0]} {splits.name} test codes (means); "
                                      f"{view.description}",
                                xlabel=view.xlabel, ylabel=view.ylabel)


def _plot_manifold(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    _check_n(opts.n, "manifold", 2, MAX_MANIFOLD_SIDE)
    test = splits.test
    _require_vector_latent(run.model, test.images[:5000], _labels(test, 5000), "manifold")
    fig, _ = manifold_figure(run.model, test, side=opts.n or 10, label=opts.label, title_prefix=f"{_title(run)}: ")
    return fig


def manifold_figure(model, test, *, side: int, label: int | None = None, n_codes: int = 5000,
                    title_prefix: str = "") -> tuple[Figure, str]:
    """Decodes of a ``side`` x ``side`` grid over the latent space, and the grid's description.

    A 2-D VAE's grid is laid over the prior's quantiles (the lesson's digit manifold); other
    latents get a grid over the plane of the first two principal axes of ``n_codes`` test codes.
    A conditional model decodes every point under ``label`` (default 0).
    """
    codes = None
    if not (model.variational and model.latent_dim == 2):
        images, labels = test.images[:n_codes], _labels(test, n_codes)
        codes = encode_dataset(model, images, labels if model.conditional else None)
    grid = lv.manifold_latents(side, latent_dim=model.latent_dim, variational=model.variational, codes=codes)
    y = None
    extra = ""
    if model.conditional:
        label = 0 if label is None else label
        y = torch.full((grid.latents.shape[0],), label)
        extra = f", label {label}"
    decoded = lv.decode_latents(model, grid.latents, y)
    fig = plots.manifold_figure(decoded, grid.xs, grid.ys, title=f"{title_prefix}{grid.description}{extra}",
                                xlabel=grid.xlabel, ylabel=grid.ylabel)
    return fig, grid.description


def _plot_interpolate(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    model = run.model
    _check_n(opts.n, "interpolate", 2, MAX_STEPS)
    steps = opts.n or 10
    test = splits.test
    labels = _labels(test)
    _require_vector_latent(model, test.images, labels, "interpolate")
    i, j = opts.between if opts.between is not None else lv.pick_pair(labels, len(test))
    rows = lv.interpolation_rows(model, test.images, labels, i, j, steps)
    return plots.interpolation_figure(rows, title=f"{_title(run)}: decodes between the codes of "
                                                  f"{splits.name} test images {i} and {j}")


def _plot_latent_noise(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    model = run.model
    _check_n(opts.n, "latent-noise")
    n = opts.n or 8
    test = splits.test
    labels = _labels(test, 2000)
    _require_vector_latent(model, test.images, labels, "latent-noise")
    codes = encode_dataset(model, test.images[:2000], labels if model.conditional else None)
    scale = lv.code_scale(codes)
    rows = lv.latent_noise_rows(model, test.images[:n], _labels(test, n), scale=scale,
                                generator=_generator(opts.seed))
    return plots.latent_noise_figure(rows, lv.LATENT_NOISE_LEVELS, scale,
                                     title=f"{_title(run)}: Gaussian noise added to the codes, decoded")


def _plot_ood(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    model = run.model
    from ..eval.baselines import roc_auc

    _check_n(opts.n, "ood", 2)
    other = run.splits(opts.against, data_dir)
    n = opts.n
    task = run.task
    inside = splits.test.images[:n] if n else splits.test.images
    outside = other.test.images[:n] if n else other.test.images
    # The same noise seed for both sets, so a denoising run sees equally noisy inputs.
    err_in = lv.reconstruction_errors(model, task, inside, _labels(splits.test, n), generator=_generator(opts.seed))
    err_out = lv.reconstruction_errors(model, task, outside, _labels(other.test, n), generator=_generator(opts.seed))
    auc = roc_auc(err_in, err_out)
    log.info("OOD ROC-AUC of %s against %s: %.4f", splits.name, other.name, auc)
    return plots.ood_figure(err_in, err_out, name_in=splits.name, name_out=other.name, auc=auc,
                            title=f"{_title(run)}: reconstruction error, {splits.name} vs {other.name} (test)")


def _plot_labels(run: Run, splits, opts: PlotOptions, data_dir) -> Figure:
    model = run.model
    _check_n(opts.n, "labels")
    n = opts.n or 6
    test = splits.test
    if test.labels is None:
        raise ConfigError(f"{splits.name} has no labels; `labels` plots need a labelled dataset")
    sweep = lv.label_sweep(model, test.images[:n], test.labels[:n])
    return plots.label_sweep_figure(test.images[:n], sweep, splits.classes,
                                    title=f"{_title(run)}: each test image's code decoded under every label")


_FROM_HISTORY = {"curves": curves_figure}  # figures drawn from metrics.jsonl alone: no data is loaded
_PLOTTERS = {
    "reconstructions": _plot_reconstructions,
    "scatter": _plot_scatter,
    "manifold": _plot_manifold,
    "interpolate": _plot_interpolate,
    "latent-noise": _plot_latent_noise,
    "ood": _plot_ood,
    "labels": _plot_labels,
}


# -- embed ----------------------------------------------------------------------------------------

EMBED_FORMATS = (".npy", ".npz", ".csv")


def embed_split(model, splits, split: str) -> tuple[Tensor, Tensor | None]:
    """Latent means of one split (or all three, train then val then test), with labels."""
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}, all")
    parts = [lv.first_images(getattr(splits, s)) for s in (SPLITS if split == "all" else (split,))]
    images = torch.cat([images for images, _ in parts])
    labels = None if any(labels is None for _, labels in parts) else torch.cat([labels for _, labels in parts])
    codes = encode_dataset(model, images, labels if model.conditional else None)
    return codes.reshape(codes.shape[0], -1), labels


def check_embedding_path(path: str | Path, *, overwrite: bool = False) -> Path:
    """The file ``aekit embed -o`` may write: a known format, in an existing folder, and not an
    existing file unless ``overwrite``.  ConfigError naming ``-o`` otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EMBED_FORMATS:
        raise ConfigError(f"-o {path}: unknown format {suffix or '(none)'}; end the name in .npy, .npz or .csv")
    if not path.parent.is_dir():
        raise ConfigError(f"-o {path}: folder {path.parent} does not exist; create it first")
    check_outputs([(path, "-o")], overwrite=overwrite)
    return path


def write_embedding(path: str | Path, codes: Tensor, labels: Tensor | None, *, overwrite: bool = False) -> Path:
    """Write codes (and labels) by the file's extension, atomically.

    ``.npy``: the (N, D) float32 codes alone.  ``.npz``: arrays ``codes`` and, for labelled
    data, ``labels``.  ``.csv``: a header ``z0,...,z{D-1},label`` and one row per image (no
    label column for unlabelled data).  An existing file is replaced only if ``overwrite``.
    """
    path = check_embedding_path(path, overwrite=overwrite)
    suffix = path.suffix.lower()
    arr = codes.detach().float().cpu().numpy()
    if suffix == ".csv":
        header = [f"z{k}" for k in range(arr.shape[1])] + ([] if labels is None else ["label"])
        lines = [",".join(header)]
        lab = None if labels is None else labels.cpu().numpy()
        for i, row in enumerate(arr):
            cells = [f"{v:.7g}" for v in row]
            if lab is not None:
                cells.append(str(int(lab[i])))
            lines.append(",".join(cells))
        atomic_write_text(path, "\n".join(lines) + "\n", overwrite=overwrite)
        return path
    buf = io.BytesIO()  # np.save given a file name would append .npy to the temporary name
    if suffix == ".npy":
        np.save(buf, arr)
    elif labels is None:
        np.savez(buf, codes=arr)
    else:
        np.savez(buf, codes=arr, labels=labels.cpu().numpy().astype(np.int64))
    atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)
    return path


def embed(run_dir: str | Path, out: str | Path, *, dataset: str | None = None, data_dir: str | None = None,
          split: str = "test", device: str = "auto", overwrite: bool = False) -> tuple[Path, tuple[int, int]]:
    """Encode a split to latent means and write them to ``out``; returns the path and (N, D).

    ``out`` is checked before any work: an existing file is refused unless ``overwrite``.
    """
    if Path(out).suffix.lower() not in EMBED_FORMATS:
        raise ConfigError(f"-o {out}: unknown format; end the name in .npy, .npz or .csv")
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}, all")
    run = Run.open(run_dir, device=device)
    check_embedding_path(out, overwrite=overwrite)
    splits = run.splits(dataset, data_dir)
    codes, labels = embed_split(run.model, splits, split)
    return write_embedding(out, codes, labels, overwrite=overwrite), tuple(codes.shape)


# -- PCA as the yardstick --------------------------------------------------------------------------

@dataclass
class PCAComparison:
    """An autoencoder next to PCA with as many components, on the same test images.

    Per-image arrays are kept so that a test (or a reader) can check the means independently.
    PCA's reconstructions are its own, unclamped (the projection error PCA minimises);
    ``pca_sse_clamped`` gives it the free clamp to [0, 1] that the AE's sigmoid has.
    """

    latent_dim: int
    n_train: int
    ae_sse: Tensor  # (N_test,) float64
    pca_sse: Tensor  # (N_test,) float64
    pca_sse_clamped: Tensor  # (N_test,) float64
    ae_psnr: float
    pca_psnr: float
    ae_knn: float | None  # k-NN accuracy, train codes -> test codes; None without labels
    pca_knn: float | None
    k: int

    def summary(self) -> dict:
        ae, pca = float(self.ae_sse.mean()), float(self.pca_sse.mean())
        return {
            "latent_dim": self.latent_dim,
            "n_train": self.n_train,
            "n_test": int(self.ae_sse.shape[0]),
            "k": self.k,
            "autoencoder": {"sse_per_image": ae, "psnr_db": self.ae_psnr, "knn_accuracy": self.ae_knn},
            "pca": {"sse_per_image": pca, "psnr_db": self.pca_psnr, "knn_accuracy": self.pca_knn},
            "pca_clamped_sse_per_image": float(self.pca_sse_clamped.mean()),
            "sse_ratio_ae_to_pca": ae / pca if pca > 0 else float("nan"),
        }


def compare_with_pca(model, train, test, *, k: int = 5) -> PCAComparison:
    """Fit PCA (as many components as the model's latent) on ``train``; score both on ``test``.

    Reconstruction: squared error summed over each image's pixels, and PSNR (mean over images,
    capped at 100 dB).  Embedding: k-NN accuracy of test codes against training codes.
    """
    from ..eval.baselines import fit_pca, knn_accuracy
    from ..eval.metrics import PSNR_CAP_DB, psnr, sse_per_image

    dim = model.latent_dim
    conditional = model.conditional
    pca = fit_pca(train.images, dim)
    _, ae_out = lv.model_outputs(model, make_task("reconstruct"), test.images, test.labels)
    pca_out = pca.reconstruct(test.images)
    ae_knn = pca_knn = None
    if train.labels is not None and test.labels is not None:
        tr_codes = encode_dataset(model, train.images, train.labels if conditional else None)
        te_codes = encode_dataset(model, test.images, test.labels if conditional else None)
        ae_knn = knn_accuracy(tr_codes.flatten(1), train.labels, te_codes.flatten(1), test.labels, k=k)
        pca_knn = knn_accuracy(pca.encode(train.images), train.labels, pca.encode(test.images), test.labels, k=k)
    return PCAComparison(
        latent_dim=dim, n_train=len(train),
        ae_sse=sse_per_image(ae_out, test.images), pca_sse=sse_per_image(pca_out, test.images),
        pca_sse_clamped=sse_per_image(pca_out.clamp(0, 1), test.images),
        ae_psnr=float(psnr(ae_out, test.images, max_db=PSNR_CAP_DB).mean()),
        pca_psnr=float(psnr(pca_out, test.images, max_db=PSNR_CAP_DB).mean()),
        ae_knn=ae_knn, pca_knn=pca_knn, k=k,
    )


def compare_pca(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | None = None, k: int = 5,
                device: str = "auto") -> PCAComparison:
    """:func:`compare_with_pca` on the run's training and test splits."""
    from ..data import ImageSet

    run = Run.open(run_dir, device=device)
    if not run.task.target_is_input or run.task.data_kind != "image":
        raise ConfigError(f"compare-pca compares reconstructions of images; this run was trained for "
                          f"{run.task.describe()}. Use a run trained with --task reconstruct")
    splits = run.splits(dataset, data_dir)
    train = ImageSet(*lv.first_images(splits.train))  # a streamed training set is decoded here
    return compare_with_pca(run.model, train, splits.test, k=k)


def comparison_json(result: PCAComparison) -> str:
    return json.dumps(result.summary(), indent=2)
