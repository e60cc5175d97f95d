"""``aekit train-prior``: the second stage of a VQ-VAE run, its PixelCNN prior."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import main, setting_type


@main.command("train-prior")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--epochs", type=click.IntRange(min=1), default=6, show_default=True,
              help="Passes over the run's training codes.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True, help="Grids per step.")
@click.option("--lr", type=setting_type("train.lr"), default=1e-3, show_default=True,
              help="Peak learning rate (AdamW, warm-up then cosine decay).")
@click.option("--seed", type=setting_type("train.seed"), default=None,
              help="Seed for the order of the batches  [default: the run's]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--data-dir", default=None, help="Folder holding the run's dataset (else where it was trained from).")
@click.option("--no-progress", is_flag=True, help="No progress bar (one line per epoch only).")
def train_prior(run_dir, epochs, batch_size, lr, seed, device, data_dir, no_progress):
    """Train the prior of the VQ-VAE run in RUN, so that it can sample.

    Encodes the training split to code indices and fits the model's PixelCNN to them; the
    autoencoder's weights are left unchanged.  Writes RUN/model.safetensors (the prior's weights
    with the rest) and RUN/prior_metrics.json.
    """
    from ..app.prior import PRIOR_METRICS_NAME, PriorCallbacks
    from ..app.prior import train_prior as run_train_prior
    from ..run import WEIGHTS_NAME

    bar = {"bar": None}

    def epoch_start(epoch: int, batches: int) -> None:
        if no_progress:
            return
        from tqdm import tqdm

        bar["bar"] = tqdm(total=batches, desc=f"prior epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                          dynamic_ncols=True, file=sys.stderr)

    def step() -> None:
        if bar["bar"] is not None:
            bar["bar"].update(1)

    def epoch_end(record: dict) -> None:
        if bar["bar"] is not None:
            bar["bar"].close()
            bar["bar"] = None
        click.echo(f"prior epoch {record['epoch']}/{epochs}  train NLL {record['train_nll_nats']:.2f} nats  "
                   f"val NLL {record['val_nll_nats']:.2f} nats ({record['val_nll_bits']:.2f} bits) per image  "
                   f"{record['seconds']:.1f}s")

    try:
        result = run_train_prior(run_dir, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                                 data_dir=data_dir, callbacks=PriorCallbacks(epoch_start, step, epoch_end))
    finally:
        if bar["bar"] is not None:
            bar["bar"].close()
    m = result.metrics
    click.echo(f"prior trained: NLL {m['nll_nats_before']:.2f} -> {m['nll_nats']:.2f} nats per image "
               f"({m['nll_bits']:.2f} bits; a uniform prior: {m['uniform_nll_nats']:.2f} nats); codebook perplexity "
               f"{m['codebook_perplexity']:.1f} of {m['codebook_size']} ({m['codes_used']:.0%} of codes used)")
    click.echo(f"wrote {run_dir / WEIGHTS_NAME} and {run_dir / PRIOR_METRICS_NAME}; sample with: aekit sample {run_dir}")
