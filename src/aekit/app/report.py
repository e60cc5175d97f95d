"""The run report: one self-contained HTML page per run folder (``RUN_DIR/report.html``).

Everything is inlined (CSS in a <style> element, figures as base64 PNG data URIs), so the page
opens offline, can be mailed as one file, and fetches nothing from anywhere.  ``aekit train``
writes it at the end of every run (through :func:`aekit.app.training.train`) and ``aekit report``
rewrites it, so it has to be quick: no t-SNE, small subsets, one mosaic per image grid.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import AekitError
from ..fileio import atomic_write_text
from ..latent import encode_dataset
from ..latent import views as lv
from ..run import REPORT_NAME, Run
from ..viz import plots
from ..viz.figures import figure_png
from . import inspect

log = logging.getLogger(__name__)


# Subset sizes that keep the whole page to a few seconds on two CPU cores.
SCATTER_POINTS = 2000
CODES_FOR_SAMPLING = 2000
RECONSTRUCTIONS = 10
SAMPLES = 32
MANIFOLD_SIDE = 10
DPI = 100

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       background: #f6f7f9; margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 1.5rem 1.2rem 3rem; }
header h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
header p { margin: 0; color: #5b6572; }
nav { margin: 1rem 0 1.5rem; font-size: .9rem; }
nav a { color: #2d62c8; text-decoration: none; margin-right: .9rem; }
section { background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 1rem 1.2rem;
          margin-bottom: 1.2rem; }
h2 { font-size: 1.15rem; margin: 0 0 .6rem; }
figure { margin: .4rem 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #5b6572; font-size: .88rem; margin-top: .35rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .3rem 0 .6rem; }
th, td { text-align: left; padding: .18rem .9rem .18rem 0; border-bottom: 1px solid #eef0f3; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th.group { padding-top: .6rem; color: #5b6572; font-weight: 600; border-bottom: none; }
code { font-size: .88em; background: #f0f2f5; padding: 0 .25em; border-radius: 3px; }
.note { color: #5b6572; font-style: italic; }
.section-error { color: #a33; }
footer { color: #8a93a0; font-size: .8rem; text-align: center; }
"""


# -- HTML pieces -------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _img(fig, caption: str, alt: str) -> str:
    data = base64.b64encode(figure_png(fig, dpi=DPI)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _fmt(value, digits: int | None = None) -> str:
    """A value for a table cell: metrics with ``digits`` decimals, settings as written (6 digits)."""
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int):
        return f"{value:d}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return _e(value)
        if digits is None or abs(value) >= 1e5 or (value != 0 and abs(value) < 10 ** -digits):
            return f"{value:.6g}"
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return _e(", ".join(str(v) for v in value))
    return _e(value)


def _kv_table(groups: dict[str, dict], digits: int | None = None) -> str:
    rows = []
    for group, values in groups.items():
        if group:
            rows.append(f'<tr><th class="group" colspan="2">{_e(group)}</th></tr>')
        for key, value in values.items():
            num = isinstance(value, (int, float)) and not isinstance(value, bool)
            cell = '<td class="num">' if num else "<td>"
            rows.append(f"<tr><td>{_e(key)}</td>{cell}{_fmt(value, digits)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


_COLUMN_NAMES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "n": "images", "param": "parameter"}


def _grid_table(rows: dict[str, dict]) -> str:
    """{row name: {column: value}} as a table with the union of the columns."""
    columns: list[str] = []
    for values in rows.values():
        for key in values:
            if key not in columns:
                columns.append(key)
    head = "<tr><th></th>" + "".join(f"<th>{_e(_COLUMN_NAMES.get(c, c))}</th>" for c in columns) + "</tr>"
    body = []
    for name, values in rows.items():
        cells = "".join(f'<td class="num">{_fmt(values.get(c, ""), 4)}</td>' for c in columns)
        body.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    return "<table>" + head + "".join(body) + "</table>"


# -- the sections ------------------------------------------------------------------------------

class _Context:
    """What the sections share: the run (its config, model and task) and its data."""

    def __init__(self, run: Run, splits):
        self.run, self.splits = run, splits
        self.cfg, self.model, self.task = run.config, run.model, run.task
        self.seed = self.cfg.train.seed
        self._vector: bool | None = None

    @property
    def name(self) -> str:
        return f"{self.cfg.model} on {self.cfg.data.dataset}"

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def vector_latent(self) -> bool:
        """Whether the latent-space sections apply: a bottleneck of vectors that decode."""
        if self._vector is None and self.task.data_kind != "image":
            self._vector = False  # those sections draw images; a melody run's rolls are in their own sections
        if self._vector is None:
            test = self.splits.test
            self._vector = lv.is_bottleneck(self.model) and lv.has_vector_latent(self.model, test.images, test.labels)
        return self._vector


def _section_config(ctx: _Context) -> str:
    cfg = ctx.cfg
    data = {k: v for k, v in vars(cfg.data).items() if v is not None}
    train = {k: v for k, v in vars(cfg.train).items()}
    shapes = {"input (C, H, W)": cfg.in_shape, "output (C, H, W)": cfg.out_shape,
              "classes": len(cfg.classes) or "none", "aekit": cfg.aekit_version, "torch": cfg.torch_version}
    return _kv_table({f"model: {cfg.model}": cfg.model_config, "data": data, "training": train, "shapes and versions": shapes})


def _section_metrics(ctx: _Context) -> str | None:
    metrics = ctx.run.test_metrics()
    if metrics is None:
        return None
    from .evaluation import metric_labels

    labels = metric_labels(ctx.task)  # "ELBO (nats per melody)" for a melody run
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    ordered = [k for k in labels if k in scalars] + [k for k in scalars if k not in labels]
    out = [_kv_table({"": {labels.get(k, k).strip(): scalars[k] for k in ordered}}, digits=4)]
    elbo = f"; the ELBO uses one posterior sample per {ctx.task.data_kind}" if "elbo" in scalars else ""
    out.append(f'<p class="note">On the test split of {_e(ctx.cfg.data.dataset)}, outputs decoded from the '
               f"posterior mode{elbo}.</p>")
    for key, value in metrics.items():
        if not isinstance(value, dict):
            continue
        title = "Baselines on the same test data" if key == "baselines" else labels.get(key, key)
        out.append(f"<h3>{_e(title)}</h3>")
        if value and all(isinstance(v, dict) for v in value.values()):
            out.append(_grid_table(value))
        else:
            out.append(_kv_table({"": value}, digits=4))
    return "".join(out)


def _section_curves(ctx: _Context) -> str | None:
    if not ctx.run.history():
        return None
    kind = ctx.task.data_kind
    fig = inspect.curves_figure(ctx.run, title=f"losses per {kind} by epoch")
    units = f"in nats per {kind} where the loss is a likelihood (BCE, cross-entropy)"
    return _img(fig, "Training (solid, averaged over each epoch) and validation (dashed, at the end of each epoch) "
                     f"losses by part, {units}.", "loss curves")


def _section_reconstructions(ctx: _Context) -> str:
    if ctx.task.data_kind != "image":
        return _melody_reconstructions(ctx)
    n = min(RECONSTRUCTIONS, len(ctx.splits.test))
    fig = inspect.reconstructions_figure(ctx.model, ctx.task, ctx.splits.test, n=n, seed=ctx.seed,
                                         title=ctx.task.describe())
    if ctx.task.target_is_input:
        caption = f"The first {n} test images above their reconstructions (decoded from the posterior mode)."
    else:
        caption = (f"The first {n} test images, what the model was given ({ctx.task.describe()}; small inputs "
                   "enlarged by repeating pixels) and what it made of them.")
    return _img(fig, caption, "reconstructions")


def _section_samples(ctx: _Context) -> str | None:
    model = ctx.model
    if ctx.task.data_kind != "image":
        return _melody_samples(ctx)
    if not model.generative and (not ctx.task.target_is_input or not ctx.vector_latent()):
        return None
    codes = None
    if not model.generative:
        images, labels = lv.first_images(ctx.splits.train, CODES_FOR_SAMPLING)
        codes = encode_dataset(model, images, labels if model.conditional else None)
    panels = lv.sample_panels(model, SAMPLES, codes=codes, generator=ctx.generator())
    cols = model.num_classes if model.conditional else 8
    fig = plots.panels_figure(panels, cols=cols)
    if model.generative:
        caption = f"Decodes of draws from the prior, {model.describe_prior()}"
        caption += ", one label per column." if model.conditional else "."
    else:
        caption = ("A plain autoencoder has no prior. Left: draws from a Gaussian fitted to encoded training "
                   "images decode to plausible images. Right: random codes of the same overall scale mostly "
                   "land where no image was encoded, and decode to blobs.")
    return _img(fig, caption, "samples")


MELODIES = 8  # piano rolls of reconstructions and samples on a melody run's report


def _melody_reconstructions(ctx: _Context) -> str:
    from .music import reconstructions_figure

    n = min(MELODIES, len(ctx.splits.test))
    fig = reconstructions_figure(ctx.model, ctx.splits.test, n=n)
    return _img(fig, f"The first {n} test melodies (top) above their reconstructions: each encoded to its posterior "
                     "mean and decoded greedily, every step reading the decoder's own last choice. Dark: a note "
                     "struck; light: held; grey lines: bar lines.", "piano rolls of test melodies and reconstructions")


def _melody_samples(ctx: _Context) -> str:
    from .music import draw_samples, samples_figure

    fig = samples_figure(draw_samples(ctx.model, MELODIES, temperature=1.0, seed=ctx.seed))
    return _img(fig, f"{MELODIES} samples: codes drawn from {ctx.model.describe_prior()}, each step drawn from the "
                     "decoder's softmax (temperature 1; `aekit sample RUN -o DIR --temperature 0.5` writes tidier "
                     "ones as MIDI files).", "piano rolls of samples")


def _section_scatter(ctx: _Context) -> str | None:
    test = ctx.splits.test
    if test.labels is None or not ctx.vector_latent():
        return None
    n = min(SCATTER_POINTS, len(test))
    codes = encode_dataset(ctx.model, test.images[:n], test.labels[:n] if ctx.model.conditional else None)
    view = lv.project_codes(codes, "pca")
    fig = plots.scatter_figure(view.points, test.labels[:n], ctx.splits.classes,
                               title=f"{n} test codes: {view.description}", xlabel=view.xlabel, ylabel=view.ylabel)
    return _img(fig, f"Latent means of {n} test images, coloured by class ({view.description}).", "latent scatter")


def _section_manifold(ctx: _Context) -> str | None:
    if not ctx.vector_latent():
        return None
    fig, description = inspect.manifold_figure(ctx.model, ctx.splits.test, side=MANIFOLD_SIDE, n_codes=SCATTER_POINTS)
    extra = " All decoded under label 0." if ctx.model.conditional else ""
    return _img(fig, f"Decodes of a {MANIFOLD_SIDE}x{MANIFOLD_SIDE} grid of latent points: {description}.{extra}",
                "latent manifold")


REPORT_SAMPLES = 1000  # a quick sample score when `aekit evaluate --samples` stored none


def _section_generative(ctx: _Context) -> str | None:
    """The likelihood and sample scores `aekit evaluate` stored; a quick sample score when none."""
    from ..eval.sample_quality import SCORERS

    rows: dict[str, dict] = {}
    for record in ctx.run.evaluations().values():
        when = {"date": record.get("date", ""), "seconds": record.get("seconds", "")}
        if record.get("measured") == "nll":
            name = (f"NLL, K={record.get('nll_samples')} importance samples, {record.get('nll_images')} "
                    f"{record.get('split')} {ctx.task.data_plural} of {record.get('dataset')}")
            rows[name] = {f"nats per {ctx.task.data_kind}": record.get("nll"), "standard error": record.get("nll_se"),
                          "-ELBO (same samples)": record.get("nll_negative_elbo"), **when}
        elif record.get("measured") == "sample_quality":
            name = f"{record.get('n')} samples from {record.get('sampler')} ({record.get('dataset')})"
            rows[name] = {"FD": record.get("fd"), "confidence": record.get("confidence"),
                          "classes covered": record.get("classes_covered"), **when}
    scored = any("FD" in row for row in rows.values())
    if (not scored and ctx.model.generative and ctx.cfg.data.dataset in SCORERS and ctx.task.target_is_input
            and tuple(ctx.model.out_shape) == (1, 28, 28)):
        from .evaluation import sample_quality

        quick = sample_quality(ctx.run, REPORT_SAMPLES)
        rows[f"{quick['n']} samples from {quick['sampler']} (drawn for this report)"] = {
            "FD": quick["fd"], "confidence": quick["confidence"], "classes covered": quick["classes_covered"]}
    if not rows:
        return None
    return _grid_table(rows) + (
        '<p class="note">NLL: the importance-sampled negative log-likelihood (lower is better; K = 5000 is the '
        "figure papers publish), from <code>aekit evaluate RUN --nll --nll-samples K</code>. FD: the Fréchet "
        "distance between samples and the test images on the features of aekit's shipped LeNet (lower is "
        "better; not comparable with Inception FID), from <code>aekit evaluate RUN --samples N [--sampler gmm:K]"
        "</code>; confidence: the classifier's mean top probability on the samples.</p>")


# (id, heading, builder, needs data)
_SECTIONS: list[tuple[str, str, Callable[[_Context], str | None], bool]] = [
    ("config", "Configuration", _section_config, False),
    ("metrics", "Test metrics", _section_metrics, False),
    ("curves", "Loss curves", _section_curves, False),
    ("reconstructions", "Reconstructions", _section_reconstructions, True),
    ("samples", "Samples", _section_samples, True),
    ("generative", "Likelihood and sample quality", _section_generative, True),
    ("scatter", "Latent space", _section_scatter, True),
    ("manifold", "Latent manifold", _section_manifold, True),
]


def render_report(run: Run | str | Path, *, splits=None, data_dir: str | None = None) -> str:
    """The report page as a string (see :func:`write_report`)."""
    if not isinstance(run, Run):
        run = Run.open(run, device="auto")
    cfg, model = run.config, run.model
    data_note = None
    if splits is None:
        try:
            splits = run.splits(data_dir=data_dir)
        except AekitError as err:  # the page is still worth having without the images
            data_note = f"The data could not be loaded, so figures of images are left out: {err}"
            log.warning("report for %s: %s", run.path, data_note)
    was_training = model.training
    ctx = _Context(run, splits)
    # Denoising and super-resolution runs show their input too: the section says so.
    titles = {} if ctx.task.target_is_input else {"reconstructions": "Before and after"}
    parts, links = [], []
    try:
        for sid, heading, build, needs_data in _SECTIONS:
            if needs_data and splits is None:
                continue
            try:
                body = build(ctx)
            except Exception as err:  # any error: see below
                # The report is written after training has finished and saved its weights; one
                # figure that cannot be drawn must not turn a finished run into a failed one.
                # The error is logged and shown in its section rather than hidden.
                log.warning("report for %s: section %r could not be drawn (%s: %s); the report is written "
                            "without it", run.path, sid, type(err).__name__, " ".join(str(err).split())[:200])
                log.debug("the section's error", exc_info=True)  # the traceback, with aekit -v
                body = f'<p class="section-error">This section could not be drawn: {_e(type(err).__name__)}: {_e(err)}</p>'
            if body is None:
                continue
            heading = titles.get(sid, heading)
            links.append(f'<a href="#{sid}">{_e(heading)}</a>')
            parts.append(f'<section id="{sid}"><h2>{_e(heading)}</h2>{body}</section>')
    finally:
        model.train(was_training)
    epochs = len(run.history())
    params = sum(p.numel() for p in model.parameters())
    subtitle = (f"{_e(cfg.model)} &middot; {_e(cfg.data.dataset)} &middot; {_e(ctx.task.describe())} &middot; "
                f"latent {model.latent_dim}-D &middot; {params:,} parameters &middot; "
                f"{epochs} epoch{'s' if epochs != 1 else ''}")
    note = f'<p class="note">{_e(data_note)}</p>' if data_note else ""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>aekit report: {_e(run.name)}</title><style>{CSS}</style></head>\n<body><main>"
        f"<header><h1>{_e(run.name)}</h1><p>{subtitle}</p></header>"
        f"<nav>{''.join(links)}</nav>{note}{''.join(parts)}"
        f"<footer>Written by aekit {_e(cfg.aekit_version or '')} on {stamp}. "
        "Self-contained: every image is inlined, nothing is fetched.</footer>"
        "</main></body></html>\n"
    )


def write_report(run: Run | str | Path, *, splits=None, data_dir: str | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` atomically and return its path.

    ``run`` is a :class:`Run` or its folder; ``splits`` (its DatasetSplits) saves loading the
    data again when the caller has it, as ``aekit train`` does; else it is loaded from
    ``data_dir`` (default: the run's own) and, where it cannot be, the page says why and leaves
    the figures of images out.
    """
    if not isinstance(run, Run):
        run = Run.open(run, device="auto")
    path = run.output_file(REPORT_NAME)  # a pretrained or Hub model's goes to aekit's cache, not the package
    atomic_write_text(path, render_report(run, splits=splits, data_dir=data_dir))
    log.info("wrote %s", path)
    return path
