"""The ``aekit`` command: parse options, call the library, print.

Library errors (:class:`aekit.AekitError`) become one line on stderr and exit status 1; a
problem with the command line itself is click's usage error (exit status 2).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from .. import __version__
from ..config import MAX_WIDTH, check_global_batch
from ..errors import AekitError

log = logging.getLogger("aekit")


class AekitGroup(click.Group):
    """Turns aekit's own errors (and OS errors such as a full disk) into one-line messages.

    Click's own usage errors are one line too (no usage block above them): exit status 2 for a
    bad command line, 1 for everything the library refuses.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # `aekit` alone: its help, as click shows it
                click.echo(err.format_message(), err=True)
                sys.exit(err.exit_code)
            # named "aekit" however it was started (python -m aekit, click's test runner)
            command = " ".join(["aekit", *err.ctx.command_path.split()[1:]]) if err.ctx is not None else "aekit"
            click.echo(f"Error: {err.format_message()} (see: {command} --help)", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"Error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(status or 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AekitError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            where = f" ({err.filename})" if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@click.group(cls=AekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aekit")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
def main(verbose: bool) -> None:
    """aekit: train autoencoders, look at what they learned, and use them."""
    _setup_logging(verbose)


# -- option types from the config's own ranges -----------------------------------------------

def setting_type(path: str) -> click.ParamType:
    """The click type for config field ``path`` ("train.epochs"): its range or choices, taken
    from the field's definition in :mod:`aekit.config`, so that a flag and a config file are
    checked by one rule, and a bad flag is refused by the parser before anything starts."""
    from ..config import DataConfig, TrainConfig, field_hints

    section, name = path.split(".")
    hint, fld = field_hints({"data": DataConfig, "train": TrainConfig}[section])[name]
    meta = fld.metadata
    if meta.get("choices"):
        return click.Choice(list(meta["choices"]))
    base = next((t for t in (int, float) if t is hint or t in getattr(hint, "__args__", ())), None)
    if base is None:
        return click.STRING
    low = meta.get("above") if meta.get("above") is not None else meta.get("minimum")
    if base is int:
        return click.IntRange(low, meta.get("maximum"))
    return click.FloatRange(low, meta.get("maximum"), min_open=meta.get("above") is not None)


def _folder_option(value: str | None) -> Path | None:
    # Path("") is ".": an empty --out (a variable that expanded to nothing) would train into the current folder
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; name a folder for the run")
    return None if value is None else Path(value)


# -- train ------------------------------------------------------------------------------------

def _fmt_losses(parts: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in parts.items())


class _Progress:
    """tqdm bar with live losses, and a one-line summary per epoch."""

    def __init__(self, total_epochs: int, enabled: bool):
        self.total_epochs = total_epochs
        self.enabled = enabled
        self.bar = None
        self.losses_shown = -math.inf  # time.monotonic() of the last losses shown

    def epoch_start(self, epoch: int, batches: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{self.total_epochs}", unit="batch",
                        leave=False, dynamic_ncols=True, file=sys.stderr)

    def step(self, info) -> None:
        if self.bar is not None:
            self.bar.update(1)
            # Reading the losses waits for the step to finish (on a GPU, the CPU would stop queueing
            # the next steps), so they are read twice a second, not at every step.
            now = time.monotonic()
            if now - self.losses_shown >= 0.5 or info.batch_in_epoch == info.batches_per_epoch:
                self.losses_shown = now
                self.bar.set_postfix_str(_fmt_losses(info.losses))

    def epoch_end(self, record: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            click.echo(f"epoch {record['epoch']}/{self.total_epochs}  train {_fmt_losses(record['train'])}  "
                       f"val {_fmt_losses(record['val'])}  {record['seconds']:.1f}s "
                       f"({record['images_per_second']:.0f} img/s)")


def _print_metrics(metrics: dict, as_json: bool = False, labels: dict[str, str] | None = None) -> None:
    """``labels``: the metrics' labels in the words of the run's data (app.evaluation.metric_labels)."""
    from ..eval.evaluate import METRIC_LABELS

    names = labels or METRIC_LABELS
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    baselines = metrics.get("baselines")
    quality = metrics.get("sample_quality")
    # other tables ({row: {column: value}}, e.g. a melody run's music statistics) follow the scalars
    tables = {k: v for k, v in metrics.items() if k not in ("baselines", "sample_quality") and isinstance(v, dict)}
    metrics = {k: v for k, v in metrics.items() if k not in ("baselines", "sample_quality") and k not in tables}
    width = max(len(names.get(k, k)) for k in metrics)
    ordered = [k for k in names if k in metrics] + [k for k in metrics if k not in names]
    for key in ordered:
        value = metrics[key]
        label = names.get(key, key)
        text = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
        click.echo(f"  {label:<{width}}  {text}")
    if baselines and any("psnr" in b for b in baselines.values()):
        _print_baselines(metrics, baselines)
    elif baselines:  # in the model's own metrics, one column each (melodies: accuracies, NLL per step)
        columns = {key for b in baselines.values() for key in b} - {"param"}
        tuned = "; ".join(f"{name}: {b['param']}" for name, b in baselines.items() if b.get("param"))
        _print_table("baselines on the same data" + (f" ({tuned})" if tuned else ""),
                     {"this model": {k: v for k, v in metrics.items() if k in columns}, **baselines}, names)
    for key, table in tables.items():
        _print_table(names.get(key, key), table, names)
    if quality:
        click.echo(f"samples ({quality['n']:,} from {quality['sampler']}), {quality['score']}:")
        click.echo(f"  Fréchet distance to the test images  {quality['fd']:.3f}   ({quality['note']})")
        click.echo(f"  classifier confidence                {quality['confidence']:.4f}")
        click.echo(f"  classes covered (>= 1% of samples)   {quality['classes_covered']} of {len(quality['classes'])}")
        shares = "  ".join(f"{c}:{k / quality['n']:.0%}" for c, k in zip(quality["classes"], quality["class_histogram"]))
        click.echo(f"  samples per class                    {shares}")


def _print_table(title: str, rows: dict[str, dict], labels: dict[str, str]) -> None:
    """{row: {column: value}} as a table, turned whichever way is narrower; ``labels`` names the metrics."""
    keys = list(dict.fromkeys(k for values in rows.values() for k in values if k != "param"))

    def label(name: str) -> str:
        return name if name in rows else labels.get(name, name.replace("_", " "))

    def span(names: list[str]) -> int:
        return sum(max(len(label(n)), 8) + 2 for n in names)

    across, down = (list(rows), keys) if span(list(rows)) < span(keys) else (keys, list(rows))

    def cell(row: str, column: str) -> str:
        name, key = (column, row) if column in rows else (row, column)
        value = rows[name].get(key)
        if value is None or isinstance(value, str):
            return "-" if value is None else value
        return f"{value:d}" if isinstance(value, int) else f"{value:.4f}"

    click.echo(f"{title}:")
    width = max(len(label(d)) for d in down)
    widths = [max(len(label(a)), 8) for a in across]
    click.echo(f"  {'':<{width}}  " + "  ".join(f"{label(a):>{w}}" for a, w in zip(across, widths)))
    for d in down:
        click.echo(f"  {label(d):<{width}}  " + "  ".join(f"{cell(d, a):>{w}}" for a, w in zip(across, widths)))


def _print_baselines(model_metrics: dict, baselines: dict) -> None:
    """The model's PSNR and SSIM above the baselines', scored on the same images."""
    tuned = any(b.get("param") is not None for b in baselines.values())
    click.echo("baselines on the same images" + (" (parameters tuned on validation images):" if tuned else ":"))
    rows = [("this model", model_metrics.get("psnr_db"), model_metrics.get("ssim"), None, model_metrics.get("n"))]
    rows += [(name, b.get("psnr"), b.get("ssim"), b.get("param"), b.get("n")) for name, b in baselines.items()]
    width = max(len(r[0]) for r in rows)
    click.echo(f"  {'':<{width}}  {'PSNR (dB)':>9}  {'SSIM':>6}  {'images':>6}  parameter")
    for name, psnr, ssim, param, n in rows:
        psnr_text = "-" if psnr is None else f"{psnr:.2f}"
        ssim_text = "-" if ssim is None else f"{ssim:.4f}"
        n_text = "" if n is None else str(n)
        click.echo(f"  {name:<{width}}  {psnr_text:>9}  {ssim_text:>6}  {n_text:>6}  {'' if param is None else param}")


_SET_HELP = ("Set any field of the run's config: SECTION.FIELD=VALUE, SECTION being model, data or train "
             "(repeatable), e.g. --set model.channels=16,32 --set train.warmup_steps=200. "
             "`aekit models --fields NAME` lists a model's fields; `aekit train --settings` the data and train ones.")


@main.command()
@click.option("--model", default=None,
              help="Model name (see `aekit models`)  [default: conv-vae; dn for --task denoise, "
                   "sr for --task super-resolution, music-vae for melodies]")
@click.option("--dataset", default=None, help="Dataset name (see `aekit datasets`) or folder:PATH.  [default: mnist-5k]")
@click.option("--latent-dim", type=click.IntRange(0, MAX_WIDTH), default=None,
              help="Size of the latent code (model default if omitted).")
@click.option("--beta", type=click.FloatRange(min=0), default=None, help="Weight of the KL term for VAEs (beta-VAE).")
@click.option("--loss", "recon_loss", type=click.Choice(["bce", "mse"]), default=None,
              help="Reconstruction loss, summed over pixels.")
@click.option("--epochs", type=setting_type("train.epochs"), default=None, help="Epochs to train; with --resume, extends the run  [default: 15]")
@click.option("--batch-size", type=setting_type("train.batch_size"), default=None, help="Global batch size  [default: 64]")
@click.option("--lr", type=setting_type("train.lr"), default=None, help="Peak learning rate (AdamW)  [default: 0.001]")
@click.option("--seed", type=setting_type("train.seed"), default=None,
              help="Seed for initialisation, splits and noise  [default: 0]")
@click.option("--out", type=click.Path(), default=None, callback=lambda ctx, param, value: _folder_option(value),
              help="Run folder  [default: runs/<date-time>-<model>-<dataset>/]")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder from its last checkpoint.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Start from this config: a run's config.json (to reproduce it) or a JSON/TOML file with any of "
                   "model, model_config, data, train; options given here override it.")
@click.option("--set", "settings", multiple=True, metavar="SECTION.FIELD=VALUE", help=_SET_HELP)
@click.option("--settings", "list_settings", is_flag=True, help="List the data and train fields --set reaches, and exit.")
@click.option("--data-dir", default=None, help="Folder holding the dataset's files (else the cache).")
@click.option("--image-size", type=setting_type("data.image_size"), default=None, help="Resize images to this many pixels square.")
@click.option("--channels", type=setting_type("data.channels"), default=None, help="1 (grey) or 3 (RGB).")
@click.option("--device", type=setting_type("train.device"), default=None, help="[default: auto]")
@click.option("--precision", type=setting_type("train.precision"), default=None, help="auto: bf16 where the processor computes it natively  [default: fp32]")
@click.option("--strict", is_flag=True, default=None,
              help="Refuse a folder dataset (folder:PATH, melodies:PATH) with an unreadable file instead of skipping it.")
@click.option("--task", type=click.Choice(["reconstruct", "denoise", "super-resolution", "melody"]), default=None,
              help="What the model learns to map  [default: reconstruct; melody for --dataset melodies]")
@click.option("--noise", default=None, help="For --task denoise: gaussian:SIGMA, lesson, salt-pepper:P, mask:P.")
@click.option("--scale", type=int, default=None, help="For --task super-resolution: 2, 3, 4 or 8.")
@click.option("--stop-after-epoch", type=click.IntRange(min=1), default=None,
              help="Stop (resumably) after this epoch, e.g. to split a long run into sessions.")
@click.option("--no-progress", is_flag=True, help="No progress bar (one line per epoch only).")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Train with N processes (DistributedDataParallel): runs this command under torchrun.")
@click.option("--workers", type=setting_type("train.num_workers"), default=None,
              help="DataLoader worker processes decoding a streamed folder  [default: 0]")
@click.option("--stream/--no-stream", default=None,
              help="Read a folder:PATH training split from disk while training  [default: if it decodes to > 1 GiB]")
@click.option("--tensorboard/--no-tensorboard", default=None,
              help="Also write TensorBoard event files to RUN/tensorboard/ (losses, learning rate, images/s, "
                   "reconstructions and samples each epoch): `tensorboard --logdir runs/`. Needs "
                   "pip install \"aekit[tensorboard]\"; may be switched on or off when resuming  [default: off]")
def train(model, out, resume, config_file, settings, list_settings, stop_after_epoch, no_progress, nproc, stream,
          **options):
    """Train a model; writes a run folder with weights, metrics and figures.

    Every option, --set and --config become one config, written to the run's config.json;
    `aekit train --config RUN/config.json` trains the same run again.

    Distributed: `aekit train --nproc N ...` on one machine, or
    `torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT] -m aekit train ...`.
    """
    from ..app import training
    from ..train.distributed import launched_by_torchrun
    from ..train.loop import Callbacks

    if list_settings:
        click.echo(training.settings_help())
        return
    model_options = {k: options.pop(k) for k in ("latent_dim", "beta", "recon_loss")}
    if resume is not None:
        from ..run import read_config

        planned = read_config(resume)
    else:
        planned = training.plan_config(config_file=config_file, model=model, options=options,
                                       settings=settings, model_options=model_options)
    if nproc is not None and nproc > 1:
        if launched_by_torchrun():
            raise click.UsageError("--nproc starts torchrun itself; under torchrun, leave it out")
        # checked here, once, rather than by every process torchrun would start
        check_global_batch(options["batch_size"] or planned.train.batch_size, nproc)
        sys.exit(_run_under_torchrun(click.get_current_context(), nproc))
    # The process group does not exist yet (training.train joins it), so read the rank torchrun set.
    rank = int(os.environ.get("RANK", "0"))
    stop = {"requested": False, "signal": None}

    # Ctrl-C (SIGINT) and SIGTERM (what schedulers, `timeout` and `docker stop` send) both finish
    # the step, save a checkpoint and exit with the resume command; a second one stops at once.
    # Under torchrun the workers run in sessions of their own: the launcher passes the signal on
    # to them (and kills them 30 s later), and the ranks agree on the step to stop at.
    def on_stop_signal(signum, frame):
        if stop["requested"]:  # a second signal: stop at once
            raise KeyboardInterrupt
        stop["requested"], stop["signal"] = True, signum
        if rank == 0:
            again = "Ctrl-C" if signum == signal.SIGINT else "a second SIGTERM"
            click.echo(f"\nstopping after this step and saving a checkpoint ({again} to abort)", err=True)

    previous = {sig: signal.signal(sig, on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    total_epochs = (options["epochs"] or planned.train.epochs) if resume is not None else planned.train.epochs
    progress = _Progress(total_epochs, enabled=rank == 0 and not no_progress)
    summary = _Progress(total_epochs, enabled=rank == 0)
    callbacks = Callbacks(on_step=progress.step, on_epoch=summary.epoch_end,
                          on_epoch_start=progress.epoch_start, should_stop=lambda: stop["requested"])
    if progress.enabled is False:
        callbacks.on_step = None
    try:
        run = training.train(model=model, out=out, resume=resume, config_file=config_file, settings=settings,
                             model_options={k: v for k, v in model_options.items() if v is not None},
                             callbacks=callbacks, stop_after_epoch=stop_after_epoch, stream=stream, **options)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress.bar is not None:
            progress.bar.close()
    if rank != 0:
        return
    if run.result.interrupted:
        click.echo(f"stopped at epoch {run.result.epochs_done + 1}, step {run.result.steps}; "
                   f"continue with: aekit train --resume {run.run_dir}")
        sys.exit(143 if stop["signal"] == signal.SIGTERM else 130)  # 128 + the signal, as shells report it
    if run.test_metrics is not None:
        click.echo("test metrics:")
        from ..app.evaluation import metric_labels

        _print_metrics(run.test_metrics, labels=metric_labels(run.task))
    if stop_after_epoch is not None and run.test_metrics is None:
        click.echo(f"stopped after epoch {run.result.epochs_done}; continue with: aekit train --resume {run.run_dir}")
    click.echo(f"run folder: {run.run_dir}")


def _command_line(ctx: click.Context, *, leave_out: str) -> list[str]:
    """The options given on ``ctx``'s command line (its group's too), without ``leave_out``.

    Rebuilt from the parsed values rather than taken from sys.argv, which holds something else
    when the command is invoked from Python (click's test runner, a notebook).  Defaults are
    left out, so that the relaunched command means what the user typed (a resume, say, does
    not get a --dataset it would then have to ignore).
    """
    def options(c: click.Context) -> list[str]:
        out: list[str] = []
        for param in c.command.params:
            value = c.params.get(param.name)
            if (not isinstance(param, click.Option) or param.name == leave_out or value is None
                    or c.get_parameter_source(param.name) in (None, ParameterSource.DEFAULT)):
                continue
            if param.is_flag:
                if value:
                    out.append(param.opts[0])
                elif param.secondary_opts:
                    out.append(param.secondary_opts[0])
                continue
            for item in value if param.multiple else [value]:
                out += [param.opts[0], str(item)]
        return out

    parent = options(ctx.parent) if ctx.parent is not None else []
    return [*parent, ctx.info_name, *options(ctx)]


def _run_under_torchrun(ctx: click.Context, nproc: int) -> int:
    """Run the same command in ``nproc`` processes started by torch's launcher; its exit status."""
    from ..train.distributed import threads_per_process

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "aekit", *_command_line(ctx, leave_out="nproc")]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads_per_process(nproc)))  # else torchrun picks 1
    log.info("launching: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)
    # Ctrl-C reaches torchrun too (same process group), which passes it on to the workers: they
    # agree on a step, save a checkpoint and exit.  This process only waits, then exits as an
    # interrupted run does (torchrun itself reports a failure).  A SIGTERM is passed on.
    interrupted = []
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    try:
        status = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    return 130 if interrupted and status else status


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dataset", default=None, help="Evaluate on another dataset of the same image shape.")
@click.option("--data-dir", default=None, help="Folder holding that dataset's files.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--nll", is_flag=True,
              help="Also estimate the negative log-likelihood by importance sampling (variational models).")
@click.option("--nll-samples", type=click.IntRange(1, 1_000_000), default=None, metavar="K",
              help="Samples per image for --nll  [default: 1000; 5000 is the figure papers publish]")
@click.option("--nll-images", type=click.IntRange(min=1), default=None, metavar="N",
              help="Estimate the likelihood on N images spread evenly over the split  [default: all]")
@click.option("--samples", type=click.IntRange(2, 100_000), default=None, metavar="N",
              help="Also score N generated images by their Fréchet distance to the test images in aekit's "
                   "own classifier's features (not Inception FID), confidence and classes covered.")
@click.option("--sampler", default="prior", show_default=True, metavar="prior|normal|gmm[:K]",
              help="What --samples draws from: the model's prior, N(0, I) codes (the naive sampler of a plain "
                   "AE), or a Gaussian mixture fitted to its codes.")
def evaluate(run_dir, dataset, data_dir, device, as_json, nll, nll_samples, nll_images, samples, sampler):
    """Metrics of a trained run on the test split: BCE, MSE, PSNR, SSIM, and the ELBO for VAEs.

    Denoise and super-resolution runs are also compared with baselines on the same images:
    the noisy input and classical denoisers (tuned on validation images), or nearest,
    bilinear and bicubic enlargement.

    --nll adds the importance-sampled negative log-likelihood (the IWAE bound with K samples
    from q(z|x)) in nats per image, with its standard error over the images.  It is a
    likelihood in nats for binary images (--dataset binarized-mnist); on grey images it is the
    quantity the ELBO reports.
    """
    from ..app.evaluation import evaluate as evaluate_run

    if (nll_samples is not None or nll_images is not None) and not nll:
        nll = True  # asking for K or N means asking for the estimate
    bar = None

    def progress(n: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(desc=f"likelihood, K={nll_samples or 1000}", unit="image", file=sys.stderr,
                       disable=as_json, leave=False)
        bar.update(n)

    try:
        metrics = evaluate_run(run_dir, dataset=dataset, data_dir=data_dir, device=device,
                               nll_samples=(nll_samples or 1000) if nll else None, nll_images=nll_images,
                               progress=progress, samples=samples, sampler=sampler)
    finally:
        if bar is not None:
            bar.close()
    if not as_json:
        click.echo(f"{run_dir} on {dataset or 'its own dataset'} (test split):")
    from ..app.evaluation import metric_labels
    from ..run import Run

    _print_metrics(metrics, as_json, labels=metric_labels(Run.open(run_dir).task))


@main.command()
@click.option("--fields", "fields_of", metavar="NAME", default=None,
              help="List one model's config fields (what `aekit train --set model.FIELD=VALUE` reaches).")
def models(fields_of):
    """List the model families."""
    from ..registry import lookup, model_names

    if fields_of is not None:
        import json as _json

        from ..config import field_hints, to_plain

        config_cls, _ = lookup(fields_of)
        defaults = to_plain(config_cls())
        for name, (hint, _fld) in field_hints(config_cls).items():
            kind = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            click.echo(f"model.{name} = {_json.dumps(defaults[name])}  ({kind})")
        _, model_cls = lookup(fields_of)
        for name, value in model_cls.train_defaults.items():
            click.echo(f"train.{name} = {_json.dumps(value)}  (this model's default)")
        return
    for name in model_names():
        _, cls = lookup(name)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name:<12} {doc}")


@main.command()
def datasets():
    """List the datasets that can be named with --dataset."""
    from ..data import DATASETS

    for name, text in DATASETS.items():
        click.echo(f"{name:<16} {text}")


def _register_command_modules() -> None:
    """Commands that live in their own modules (cli/<topic>.py) add themselves to ``main``."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_command_modules()
