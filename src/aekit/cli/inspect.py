"""Commands that look at a trained run: sample, plot, embed, compare-pca, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main, setting_type

_DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
_DATASET = click.option("--dataset", default=None, help="Use another dataset of the same image shape "
                                                        "(default: the run's own).")
_DATA_DIR = click.option("--data-dir", default=None, help="Folder holding the dataset's files (default: the run's).")
_RUN_DIR = click.argument("run_dir", type=click.Path(path_type=Path))
_OVERWRITE = click.option("--overwrite", is_flag=True,
                          help="Replace the output file if it exists (without it, an existing file is refused).")


def _png_path(run_dir: Path, out: Path | None, default_name: str, *, overwrite: bool,
              datasets: tuple[str | None, ...] = ()) -> Path:
    """The PNG to write (default inside the run folder), checked before any work is done.

    An existing file is refused unless ``overwrite``; an image of a folder dataset the command
    reads (the run's, ``--dataset``, ``--against``) is refused even then.
    """
    from ..errors import ConfigError
    from ..fileio import check_outputs
    from ..run import read_config
    from ..run.sources import resolve

    source = resolve(run_dir)  # a pretrained or Hub model's default output goes to aekit's cache, not the package
    cfg = read_config(source.path)  # a missing or broken run folder is the first thing to report
    path = out or source.output_file(default_name)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"-o {path}: figures are written as PNG; end the name in .png")
    if not path.parent.is_dir():
        raise ConfigError(f"-o {path}: folder {path.parent} does not exist; create it first")
    inputs = []
    for name in (cfg.data.dataset, *datasets):
        if name and name.startswith("folder:") and path.exists():  # a PNG in a folder dataset is one of its images
            root = Path(name.split(":", 1)[1]).expanduser().resolve()
            if path.resolve().is_relative_to(root):
                inputs.append(path)
    check_outputs([(path, "-o" if out else "the default output; choose another with -o")], inputs=inputs,
                  overwrite=overwrite)
    return path


def _write_png(fig, path: Path, *, overwrite: bool) -> Path:
    """The figure as a PNG, written atomically; never over a file that appeared meanwhile unless ``overwrite``."""
    from ..fileio import atomic_write_bytes
    from ..viz.figures import figure_png

    atomic_write_bytes(path, figure_png(fig), overwrite=overwrite)
    return path


@main.command(short_help="Generate images: prior draws, or where a plain AE's codes lie.")
@_RUN_DIR
@click.option("-n", "n", type=click.IntRange(1, 1024), default=64, show_default=True, help="How many images to generate.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="PNG to write  [default: RUN_DIR/samples.png]; for a melody run, the folder for its MIDI files "
                   "and piano roll  [default: RUN_DIR/samples/]")
@click.option("--label", type=click.IntRange(min=0), default=None, help="Conditional models: the class to generate.")
@click.option("--temperature", type=click.FloatRange(0, 100, min_open=True), default=1.0, show_default=True,
              help="Scale of the latent draws; below 1 gives more typical, less varied images. For a melody "
                   "run, the decoder's softmax temperature, as MusicVAE's (0.5: tidier tunes).")
@click.option("--seed", type=setting_type("train.seed"), default=0, show_default=True)
@_DATASET
@_DATA_DIR
@_DEVICE
@_OVERWRITE
@click.option("--sampler", default="prior", show_default=True, metavar="prior|normal|gmm[:K]",
              help="prior: the model's own prior (for a plain AE, a Gaussian where its codes lie); normal: N(0, I) "
                   "codes; gmm[:K]: a "
                   "K-component Gaussian mixture (default 10) fitted to the training codes once, stored in the run.")
def sample(run_dir, n, out, label, temperature, seed, dataset, data_dir, device, overwrite, sampler):
    """Generate images: prior draws for VAEs; for plain AEs, draws where the codes lie next to random codes.

    --sampler gmm fits a Gaussian mixture to the codes of the training images (once; it is kept
    in the run folder as gmm-K.npz, arrays only) and decodes draws from it: for a VAE, samples
    from where its codes really are rather than its N(0, I) prior; for a plain AE, a generator.
    """
    from ..app import inspect

    if inspect.writes_sample_files(run_dir):  # melody runs: MIDI files and a piano roll in the -o folder
        written = inspect.write_sample_files(run_dir, out, n=n, temperature=temperature,
                                             seed=seed, device=device, overwrite=overwrite, label=label,
                                             sampler=sampler)
        click.echo(f"wrote {len(written.midi)} MIDI files ({written.midi[0].name}...) and {written.sheet}")
        return
    path = _png_path(run_dir, out, "samples.png", overwrite=overwrite, datasets=(dataset,))
    fig = inspect.sample_figure(run_dir, n=n, label=label, temperature=temperature, seed=seed, dataset=dataset,
                                data_dir=data_dir, device=device, sampler=sampler)
    click.echo(f"wrote {_write_png(fig, path, overwrite=overwrite)}")


# Kept here as text (not read from aekit.app.inspect) so that `aekit --help` needs no torch import;
# tests/test_explore.py checks that every kind is listed.
_KINDS_HELP = """\b
KIND:
  reconstructions  test images above the reconstructions (and the input, for denoise/SR)
  scatter          test-set latent means coloured by class (PCA above 2-D; --method tsne)
  manifold         decodes of a grid over the latent space (the lesson's digit manifold)
  interpolate      decodes between two test images' codes (--between I J)
  latent-noise     codes plus growing Gaussian noise, decoded (the lesson's Task 2)
  curves           training and validation losses by part
  ood              reconstruction-error histograms against --against NAME, with ROC-AUC
  labels           conditional models: one code decoded under every label
"""


@main.command(epilog=_KINDS_HELP, short_help="Draw one figure of a run: scatter, manifold, curves, ood, ...")
@_RUN_DIR
@click.argument("kind")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="PNG to write  [default: RUN_DIR/plot-KIND.png]")
@click.option("-n", "n", type=click.IntRange(min=1), default=None,
              help="Images per row (reconstructions, latent-noise, labels), grid side (manifold), steps "
                   "(interpolate), points (scatter) or images per dataset (ood).")
@click.option("--seed", type=setting_type("train.seed"), default=0, show_default=True)
@click.option("--method", type=click.Choice(["pca", "tsne"]), default=None,
              help="scatter: how codes above 2-D are projected  [default: pca]")
@click.option("--between", type=click.IntRange(min=0), nargs=2, default=None, metavar="I J",
              help="interpolate: the two test-image indices  [default: the first two of different classes]")
@click.option("--against", default=None, metavar="NAME", help="ood: the other dataset, e.g. fashion-mnist.")
@click.option("--label", type=click.IntRange(min=0), default=None,
              help="manifold of a conditional model: the class to decode under.")
@_DATASET
@_DATA_DIR
@_DEVICE
@_OVERWRITE
def plot(run_dir, kind, out, n, seed, method, between, against, label, dataset, data_dir, device, overwrite):
    """Draw one figure of a trained run (see KIND below)."""
    from ..app import inspect

    if kind not in inspect.PLOT_KINDS:  # before any loading, so the message comes at once
        from ..errors import ConfigError

        raise ConfigError(f"unknown plot kind {kind!r}; choose one of: {', '.join(inspect.PLOT_KINDS)}")
    path = _png_path(run_dir, out, f"plot-{kind}.png", overwrite=overwrite, datasets=(dataset, against))
    options = inspect.PlotOptions(n=n, seed=seed, method=method, between=tuple(between) if between else None,
                                  against=against, label=label)
    fig = inspect.plot(run_dir, kind, dataset=dataset, data_dir=data_dir, device=device, options=options)
    click.echo(f"wrote {_write_png(fig, path, overwrite=overwrite)}")


@main.command(short_help="Write a split's latent means and labels to .npy, .npz or .csv.")
@_RUN_DIR
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="File to write: .npy (codes), .npz (codes and labels) or .csv (z0..zD-1,label).")
@click.option("--split", default="test", show_default=True, help="train, val, test or all.")
@_DATASET
@_DATA_DIR
@_DEVICE
@_OVERWRITE
def embed(run_dir, out, split, dataset, data_dir, device, overwrite):
    """Write the latent means (posterior modes) of a split, with their labels."""
    from ..app import inspect

    path, (n, d) = inspect.embed(run_dir, out, dataset=dataset, data_dir=data_dir, split=split, device=device,
                                 overwrite=overwrite)
    click.echo(f"wrote {n} codes of {d} dimensions to {path}")


@main.command("compare-pca", short_help="Compare with PCA of the same size: error, PSNR, k-NN.")
@_RUN_DIR
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Neighbours for the k-NN accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_DATASET
@_DATA_DIR
@_DEVICE
def compare_pca(run_dir, k, as_json, dataset, data_dir, device):
    """The autoencoder against PCA with as many components, on the test split.

    PCA is fitted on the training split; both are scored on the test split: squared error per
    image (summed over pixels), PSNR, and k-NN accuracy of test codes against training codes.
    """
    from ..app import inspect

    result = inspect.compare_pca(run_dir, dataset=dataset, data_dir=data_dir, k=k, device=device)
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    ae, pca = summary["autoencoder"], summary["pca"]

    def acc(v):
        return "n/a" if v is None else f"{v:.4f}"

    click.echo(f"{run_dir}: {summary['latent_dim']}-D codes; PCA fitted on {summary['n_train']} training images, "
               f"both scored on {summary['n_test']} test images")
    click.echo(f"  {'':<28}{'autoencoder':>12}{'PCA':>12}")
    click.echo(f"  {'squared error per image':<28}{ae['sse_per_image']:>12.3f}{pca['sse_per_image']:>12.3f}")
    click.echo(f"  {'PSNR (dB)':<28}{ae['psnr_db']:>12.2f}{pca['psnr_db']:>12.2f}")
    click.echo(f"  {f'{k}-NN accuracy':<28}{acc(ae['knn_accuracy']):>12}{acc(pca['knn_accuracy']):>12}")
    click.echo(f"  autoencoder / PCA squared error: {summary['sse_ratio_ae_to_pca']:.3f} "
               f"(PCA clamped to [0, 1]: {summary['pca_clamped_sse_per_image']:.3f})")


@main.command(short_help="Write RUN_DIR/report.html: the whole run on one page.")
@_RUN_DIR
@_DATA_DIR
@_DEVICE
def report(run_dir, data_dir, device):
    """(Re)write RUN_DIR/report.html: one self-contained page with the run's figures and numbers."""
    from ..app.report import write_report
    from ..errors import AekitError
    from ..run import Run

    run = Run.open(run_dir, device=device)
    try:
        splits = run.splits(data_dir=data_dir)
    except AekitError as err:  # the page is still useful without images; it says why they are missing
        click.echo(f"warning: {err}", err=True)
        splits = None
    click.echo(f"wrote {write_report(run, splits=splits, data_dir=data_dir)}")
