"""Time to quality: train each recipe until it reaches its target, and say how long that took.

Each recipe is one `aekit train` run, with aekit's defaults except for what defines the task
(RECIPES below), trained through ``aekit.app.training.train`` exactly as the command trains it.
After every epoch the run's weights (``RUN/model.safetensors``, written by the trainer at the
end of each epoch) are loaded into a fresh model and scored on the whole test split with
``aekit.eval.evaluate.evaluate_model``, the code `aekit evaluate` runs (``Task.score`` is
evaluate_model plus the task's baselines; the baselines are scored once, before training).
The clock is paused while the benchmark evaluates, and the global RNG state is put back after,
so the training is the command's, step for step.

What is timed: from the call of ``train`` (data loading, model building, every epoch with its
validation pass and checkpoint) to the end of the epoch at which the target is first reached;
wall minutes (time.perf_counter) and CPU minutes (time.process_time: all threads of this
process, so about twice the wall time on 2 busy cores).

Stopping: each recipe plans a number of epochs (its own, or --max-epochs), and the learning-rate
schedule (cosine after warm-up) is laid out over that planned length; reaching the target, or
spending the budget (its minutes: checked before every step; its epochs: after each epoch),
only stops the run early.  A run stopped mid-epoch by a time budget is scored on its weights
at that moment.

Baselines in the same command: for the lesson's conv AE, the lesson's own PyTorch loop
(benchmarks/throughput.py: ``lesson_model`` and ``plain_epoch``, Adam 1e-3, batch 256, BCE,
a shuffled DataLoader over the same training split), scored the same way after each epoch for
as many epochs as aekit's run trained; for denoise and super-resolution, the classical
baselines aekit computes (the noisy input and the filters; nearest, bilinear, bicubic).

    python benchmarks/time_to_quality.py                          # every recipe, full MNIST
    python benchmarks/time_to_quality.py --recipes denoise,sr2 --max-epochs 1
    python benchmarks/time_to_quality.py --device cuda --precision both
    python benchmarks/time_to_quality.py --quick --json           # CI-sized: mnist-5k, 1 epoch
    python benchmarks/time_to_quality.py --threads 1 ...          # a shared, busy machine
    python benchmarks/time_to_quality.py --set train.batch_size=256 --lr-scale 2   # another recipe
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aekit.errors import AekitError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")
LESSON_LR = 1e-3  # the lesson's notebook: Adam with its default rate (batch 256: throughput.BATCH)


@dataclass(frozen=True)
class Recipe:
    name: str
    goal: str  # the target in the words
    model: str | None  # None: the task's default model (dn, sr, conv-vae)
    options: dict[str, Any]  # aekit.train's flat options (aekit.app.training.OPTIONS) that define the task
    metric: str  # a key of evaluate_model's result, or "psnr_over_bicubic"
    label: str
    target: float | None  # None: no target, the figure is only reported
    higher_is_better: bool = True
    budget_minutes: float | None = None  # wall minutes of training
    budget_epochs: int | None = None
    # The planned length (the schedule's), None for aekit's default; for a time budget, enough
    # epochs that the budget, not the plan, ends the run on 2 CPU cores.
    epochs: int | None = None
    lesson_loop: bool = False  # also train the lesson's plain PyTorch loop
    settings: tuple[str, ...] = ()  # `--set SECTION.FIELD=VALUE` strings, for a recipe that needs one


RECIPES = (
    # dn on full MNIST: about 3.1 min an epoch on 2 cores (README, batch 128), so 2 outlast 5 minutes
    Recipe("denoise", "denoise gaussian:0.5: >= 20 dB test PSNR in <= 5 minutes", None,
           {"task": "denoise", "noise": "gaussian:0.5", "dataset": "mnist"}, "psnr_db", "test PSNR (dB)",
           20.0, budget_minutes=5.0, epochs=2),
    # sr: about 3.3 min an epoch (README, batch 128)
    Recipe("sr2", "2x super-resolution: >= bicubic + 8 dB in <= 5 minutes", None,
           {"task": "super-resolution", "scale": 2, "dataset": "mnist"}, "psnr_over_bicubic",
           "test PSNR over bicubic (dB)", 8.0, budget_minutes=5.0, epochs=2),
    # Hinton and Salakhutdinov (Science, 2006): 3.00 squared error per image with a 30-d code.
    # dense-ae (784-512-256-30, batch 64): about 6 s an epoch on 2 idle cores (measured 2026-12-04),
    # so 60 planned epochs take about 6.5 minutes; the target fell at epoch 30 (README).
    Recipe("ae30", "30-d autoencoder: squared error per image <= 3.0 in <= 10 minutes", "dense-ae",
           {"latent_dim": 30, "dataset": "mnist"}, "sse_per_image", "test squared error per image",
           3.0, higher_is_better=False, budget_minutes=10.0, epochs=60),
    # The lesson's PyTorch notebook reaches 0.104 after 30 epochs; here the budget is 10, planned as 10.
    Recipe("lesson-conv-ae", "the lesson's conv AE layers: 0.104 BCE per pixel in <= 10 epochs", "conv-ae",
           {"dataset": "mnist"}, "bce_per_pixel", "test BCE per pixel", 0.104, higher_is_better=False,
           budget_epochs=10, epochs=10, lesson_loop=True),
    # README's first command, `aekit train`: conv-vae on mnist-5k, every setting its default
    Recipe("default", "the default `aekit train`: its ELBO and time", None, {}, "elbo",
           "test ELBO (nats per image)", None),
)
BY_NAME = {r.name: r for r in RECIPES}


class BenchmarkError(Exception):
    """A one-line refusal: printed as "error: ..." with ``status`` as the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# -- the clock ----------------------------------------------------------------------------------

class Clock:
    """Wall and CPU seconds since it started, less the time spent inside :meth:`paused`."""

    def __init__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.paused_wall = self.paused_cpu = 0.0

    def read(self) -> tuple[float, float]:
        """(wall, CPU) seconds counted so far."""
        return (time.perf_counter() - self.wall0 - self.paused_wall,
                time.process_time() - self.cpu0 - self.paused_cpu)

    @contextlib.contextmanager
    def paused(self):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.paused_wall += time.perf_counter() - wall
            self.paused_cpu += time.process_time() - cpu


# -- scoring ------------------------------------------------------------------------------------

def meets(recipe: Recipe, value: float) -> bool:
    if recipe.target is None:
        return False
    return value >= recipe.target if recipe.higher_is_better else value <= recipe.target


def figure(recipe: Recipe, metrics: dict[str, Any], reference: dict[str, Any]) -> float:
    """The recipe's number from evaluate_model's ``metrics`` (and the task's baselines)."""
    if recipe.metric == "psnr_over_bicubic":
        return float(metrics["psnr_db"]) - float(reference["bicubic"]["psnr"])
    return float(metrics[recipe.metric])


def _rng_kept(device: torch.device):
    """The global RNG states (CPU, and the GPU's) restored on exit: building a model draws from them."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def score_run(run_dir: Path, task, test, *, device: torch.device, seed: int) -> dict[str, Any]:
    """What `aekit evaluate RUN` reports for the model (without the baselines): the run's
    weights as saved now, rebuilt from its folder, scored on ``test``."""
    from aekit.eval.evaluate import evaluate_model
    from aekit.run.folder import Run

    with _rng_kept(device):
        model = Run.open(run_dir, device=str(device)).load_model()
        return evaluate_model(model, test, task, seed=seed, with_ssim=False)


@torch.inference_mode()
def lesson_bce(net: torch.nn.Module, test, device: torch.device, batch: int = 1000) -> float:
    """Mean over test images of the BCE per pixel (aekit.eval.metrics.bce_per_pixel, as evaluate_model)."""
    from aekit.eval.metrics import bce_per_pixel

    net.eval()
    total = 0.0
    for start in range(0, len(test), batch):
        x = test.images[start:start + batch].to(device)
        total += float(bce_per_pixel(net(x).float(), x).sum())
    net.train()
    return total / len(test)


def _throughput_module():
    spec = importlib.util.spec_from_file_location("aekit_bench_throughput", REPO / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- one run ------------------------------------------------------------------------------------

@dataclass
class Watch:
    """The trainer's callbacks: scores the run after each epoch and says when to stop."""

    recipe: Recipe
    run_dir: Path
    task: Any
    test: Any
    reference: dict[str, Any]
    device: torch.device
    seed: int
    clock: Clock
    say: Any
    history: list[dict] = field(default_factory=list)
    stop: str | None = None  # "target" or "budget" once the run should stop
    stopped_at: dict | None = None  # where a time budget stopped it: epoch (fractional), wall, cpu
    gpu_peak: int = 0
    _epoch: int = 0
    _batches: int = 1
    _polls: int = 0

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        self._epoch, self._batches, self._polls = epoch, max(1, batches), 0

    def should_stop(self) -> bool:  # polled before every step
        self._polls += 1
        if self.stop is not None:
            return True
        wall, cpu = self.clock.read()
        if self.recipe.budget_minutes is not None and wall >= 60 * self.recipe.budget_minutes:
            self.stop = "budget"
            self.stopped_at = {"epoch": self._epoch + (self._polls - 1) / self._batches, "wall": wall, "cpu": cpu}
            self.say(f"  budget of {self.recipe.budget_minutes:g} minutes spent in epoch {self._epoch + 1} "
                     f"({self._polls - 1} of {self._batches} steps); stopping")
            return True
        return False

    def on_epoch(self, record: dict) -> None:
        wall, cpu = self.clock.read()
        if self.device.type == "cuda":
            self.gpu_peak = max(self.gpu_peak, torch.cuda.max_memory_allocated(self.device))
        with self.clock.paused():
            metrics = score_run(self.run_dir, self.task, self.test, device=self.device, seed=self.seed)
            if self.device.type == "cuda":  # the next epoch's peak is training's, not this evaluation's
                torch.cuda.reset_peak_memory_stats(self.device)
        self.add(record["epoch"], wall, cpu, metrics, record)
        value = self.history[-1]["figure"]
        if meets(self.recipe, value):
            self.stop = "target"
        elif self.recipe.budget_epochs is not None and record["epoch"] >= self.recipe.budget_epochs:
            self.stop = "budget"

    def add(self, epoch: float, wall: float, cpu: float, metrics: dict, record: dict | None) -> None:
        value = figure(self.recipe, metrics, self.reference)
        row = {"epoch": round(epoch, 3), "figure": value, "wall_minutes": wall / 60, "cpu_minutes": cpu / 60,
               "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        if record is not None:
            row["images_per_second"] = record["images_per_second"]
            row["step_seconds"] = record["seconds"]
        self.history.append(row)
        rate = f"   {record['images_per_second']:>9,.0f} img/s" if record is not None else ""
        where = f"epoch {epoch:5.2f}" if epoch != int(epoch) else f"epoch {int(epoch):5d}"
        self.say(f"  {where}  {wall / 60:7.2f} min wall  {cpu / 60:7.2f} CPU-min   "
                 f"{self.recipe.label} {fmt(self.recipe, value)}{rate}")


def plan(recipe: Recipe, args, device: torch.device, precision: str) -> tuple[dict[str, Any], Any, tuple[str, ...]]:
    """The options and settings for aekit.train, and the config they plan (checked, as `aekit train`
    checks them): (options, config, settings)."""
    from aekit.app import training

    options = dict(recipe.options)
    if args.quick and options.get("dataset") == "mnist":
        options["dataset"] = "mnist-5k"
    if options.get("dataset") == "mnist":
        options["data_dir"] = str(args.data_dir)
    epochs = args.max_epochs or (1 if args.quick else recipe.epochs)
    if epochs is not None:
        options["epochs"] = epochs
    options["device"] = device.type
    options["precision"] = precision
    settings = (*recipe.settings, *args.set)
    cfg = training.plan_config(model=recipe.model, options=options, settings=settings)
    if args.lr_scale != 1.0:  # of the rate the recipe would train at (the model family's, or --set's)
        settings = (*settings, f"train.lr={cfg.train.lr * args.lr_scale:g}")
        cfg = training.plan_config(model=recipe.model, options=options, settings=settings)
    return options, cfg, settings


def command_line(recipe: Recipe, options: dict[str, Any], settings: tuple[str, ...]) -> str:
    words = ["aekit train"] + ([f"--model {recipe.model}"] if recipe.model else [])
    words += [f"--{k.replace('_', '-')} {v}" for k, v in options.items()]
    words += [f"--set {item}" for item in settings]
    return " ".join(words)


def run_recipe(recipe: Recipe, precision: str, args, device: torch.device, out: Path, say,
               cache: dict) -> tuple[dict[str, Any], Any]:
    """Train ``recipe`` in ``precision`` into ``out``, scoring it after every epoch: (result, its splits)."""
    from aekit.app import training
    from aekit.data import load_dataset
    from aekit.tasks import task_of
    from aekit.train.loop import Callbacks

    options, cfg, settings = plan(recipe, args, device, precision)
    task = task_of(cfg.data)
    say(f"\n== {recipe.name} ({precision}): {recipe.goal}")
    say(f"   {command_line(recipe, options, settings)}")
    budget = budget_text(recipe)
    say(f"   planned {cfg.train.epochs} epoch(s): the {cfg.train.schedule} schedule is laid out over all of them; "
        f"reaching the target{' or spending the budget (' + budget + ')' if budget != '-' else ''} "
        "only stops the run early")

    key = (cfg.data.dataset, cfg.data.data_dir, task)
    if key not in cache:  # the scored split and the task's baselines: the same for both precisions
        splits = load_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, image_size=cfg.data.image_size,
                              channels=cfg.data.channels, seed=cfg.train.seed, strict=cfg.data.strict)
        started = time.perf_counter()
        reference = task.baselines(splits.val, splits.test, seed=cfg.train.seed)
        cache[key] = (splits, reference, time.perf_counter() - started)
    splits, reference, baseline_seconds = cache[key]
    if reference:
        say(f"   baselines on the same {len(splits.test):,} test images ({baseline_seconds:.0f} s, not timed): "
            + ", ".join(f"{name} {row['psnr']:.2f} dB" for name, row in reference.items()))

    run_dir = out / f"{recipe.name}-{precision}"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = Clock()  # from the call, as `aekit train` is timed from its start
    watch = Watch(recipe, run_dir, task, splits.test, reference, device, cfg.train.seed, clock, say)
    callbacks = Callbacks(on_epoch=watch.on_epoch, on_epoch_start=watch.on_epoch_start,
                          should_stop=watch.should_stop)
    result = training.train(model=recipe.model, out=run_dir, callbacks=callbacks, settings=settings,
                            evaluate_test=False, write_report=False, **options).result
    end_wall, end_cpu = clock.read()
    if device.type == "cuda":
        watch.gpu_peak = max(watch.gpu_peak, torch.cuda.max_memory_allocated(device))
    epochs_done = float(result.epochs_done)
    if watch.stopped_at is not None:
        epochs_done = watch.stopped_at["epoch"]
        end_wall, end_cpu = watch.stopped_at["wall"], watch.stopped_at["cpu"]
        if epochs_done > result.epochs_done:  # stopped mid-epoch: score the weights it stopped with
            metrics = score_run(run_dir, task, splits.test, device=device, seed=cfg.train.seed)
            watch.add(epochs_done, end_wall, end_cpu, metrics, None)
    elif watch.history:
        end_wall, end_cpu = watch.history[-1]["wall_minutes"] * 60, watch.history[-1]["cpu_minutes"] * 60
    if not watch.history:
        raise BenchmarkError(f"{recipe.name}: the run stopped before its first epoch ended; nothing was scored")

    first = next((row for row in watch.history if meets(recipe, row["figure"])), None)
    final = watch.history[-1]["figure"]
    in_budget = first is not None and (
        (recipe.budget_minutes is None or first["wall_minutes"] <= recipe.budget_minutes)
        and (recipe.budget_epochs is None or first["epoch"] <= recipe.budget_epochs))
    stopped = watch.stop or "planned epochs done"
    rates = [row["images_per_second"] for row in watch.history if "images_per_second" in row]
    res = {
        "recipe": recipe.name, "goal": recipe.goal, "precision": precision, "device": str(device),
        "command": command_line(recipe, options, settings), "dataset": cfg.data.dataset, "test_images": len(splits.test),
        "metric": recipe.metric, "label": recipe.label, "target": recipe.target,
        "higher_is_better": recipe.higher_is_better, "budget_minutes": recipe.budget_minutes,
        "budget_epochs": recipe.budget_epochs, "planned_epochs": cfg.train.epochs, "stopped": stopped,
        # None where the recipe has no target (default): there is nothing to reach
        "reached": bool(in_budget) if recipe.target is not None else None,
        "target_met": first is not None if recipe.target is not None else None,
        "epoch_reached": first["epoch"] if first else None,
        "minutes_to_target": {"wall": first["wall_minutes"], "cpu": first["cpu_minutes"]} if first else None,
        "epochs": round(epochs_done, 3), "final": final,
        "minutes_trained": {"wall": end_wall / 60, "cpu": end_cpu / 60},
        "step_minutes": sum(row.get("step_seconds", 0.0) for row in watch.history) / 60,
        "images_per_second": statistics.median(rates) if rates else None,
        "gpu_memory_peak_mb": watch.gpu_peak / 2**20 if device.type == "cuda" else None,
        "baselines": {name: row["psnr"] for name, row in reference.items()},
        "history": watch.history, "run_dir": str(run_dir),
    }
    if first is not None:
        over = "" if in_budget else " (over the budget)"
        say(f"  target reached at epoch {first['epoch']:g}: {first['wall_minutes']:.2f} min wall, "
            f"{first['cpu_minutes']:.2f} CPU-min{over}; final {fmt(recipe, final)}")
    elif recipe.target is not None:
        say(f"  target not reached ({stopped}) after {epochs_done:.2f} epoch(s), {end_wall / 60:.2f} min wall; "
            f"final {fmt(recipe, final)}")
    else:
        say(f"  trained {epochs_done:.2f} epoch(s) in {end_wall / 60:.2f} min wall, {end_cpu / 60:.2f} CPU-min; "
            f"{recipe.label} {fmt(recipe, final)}")
    if device.type == "cuda":
        say(f"  {res['images_per_second']:,.0f} images/s (median over epochs), "
            f"GPU memory peak {res['gpu_memory_peak_mb']:,.0f} MiB")
    return res, splits


def run_lesson_loop(recipe: Recipe, res: dict, splits, device: torch.device, say, *, seed: int = 0) -> dict[str, Any]:
    """The lesson's loop on the same training split, for as many whole epochs as aekit's run trained."""
    from torch.utils.data import DataLoader, TensorDataset

    from aekit.train.distributed import cpu_threads

    epochs = max(1, int(res["epochs"]))
    tp = _throughput_module()
    torch.manual_seed(seed)
    net = tp.lesson_model().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LESSON_LR)
    loader = DataLoader(TensorDataset(splits.train.images), batch_size=tp.BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    say(f"  the lesson's loop (benchmarks/throughput.py: Adam {LESSON_LR:g}, batch {tp.BATCH}, BCE, fp32), "
        f"{epochs} epoch(s) on the same {len(splits.train):,} training images:")

    def batches():  # the lesson moves each batch to the device inside its loop
        for (x,) in loader:
            yield (x.to(device, non_blocking=True),)

    history, first = [], None
    clock = Clock()
    with cpu_threads(device):
        for epoch in range(1, epochs + 1):
            tp.plain_epoch(net, opt, batches(), device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall, cpu = clock.read()
            with clock.paused():
                value = lesson_bce(net, splits.test, device)
            history.append({"epoch": epoch, "figure": value, "wall_minutes": wall / 60, "cpu_minutes": cpu / 60})
            say(f"  epoch {epoch:5d}  {wall / 60:7.2f} min wall  {cpu / 60:7.2f} CPU-min   "
                f"{recipe.label} {fmt(recipe, value)}")
            if first is None and meets(recipe, value):
                first = history[-1]
    final = history[-1]["figure"]
    mine = next(row["figure"] for row in res["history"] if row["epoch"] == epochs)
    mine_minutes = next(row["wall_minutes"] for row in res["history"] if row["epoch"] == epochs)
    loop = {"epochs": epochs, "final": final, "history": history, "reached": first is not None,
            "epoch_reached": first["epoch"] if first else None,
            "minutes_to_target": {"wall": first["wall_minutes"], "cpu": first["cpu_minutes"]} if first else None,
            "minutes": history[-1]["wall_minutes"], "aekit_figure_same_epochs": mine,
            "figure_ratio": mine / final if final else None,
            "time_ratio": history[-1]["wall_minutes"] / mine_minutes if mine_minutes else None}
    reached = (f"at epoch {first['epoch']}, {first['wall_minutes']:.2f} min" if first else "not reached")
    say(f"  after {epochs} epoch(s): aekit {fmt(recipe, mine)} in {mine_minutes:.2f} min, the lesson's loop "
        f"{fmt(recipe, final)} in {history[-1]['wall_minutes']:.2f} min (aekit/lesson figure "
        f"{loop['figure_ratio']:.3f}; lesson/aekit minutes {loop['time_ratio']:.2f}); target by the lesson's loop "
        f"within these {epochs} epoch(s): {reached}")
    return loop


def compare_precisions(fp32: dict, bf16: dict) -> dict[str, Any]:
    """bf16 against fp32: images/s ratio, and the figure change at the last epoch both finished."""
    both = {row["epoch"] for row in fp32["history"]} & {row["epoch"] for row in bf16["history"]}
    whole = sorted(e for e in both if e == int(e))
    at = whole[-1] if whole else None
    pick = (lambda res: next(r["figure"] for r in res["history"] if r["epoch"] == at)) if at else None
    speed = (bf16["images_per_second"] / fp32["images_per_second"]
             if bf16["images_per_second"] and fp32["images_per_second"] else None)
    return {"speedup_images_per_second": speed, "at_epoch": at,
            "figure_change": pick(bf16) - pick(fp32) if at else None}


# -- text -----------------------------------------------------------------------------------------

def fmt(recipe: Recipe, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    if recipe.metric == "psnr_over_bicubic":
        return f"{value:+.2f} dB"
    if recipe.metric == "psnr_db":
        return f"{value:.2f} dB"
    if recipe.metric == "bce_per_pixel":
        return f"{value:.4f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"


def target_text(recipe: Recipe) -> str:
    if recipe.target is None:
        return "-"
    sign = ">=" if recipe.higher_is_better else "<="
    if recipe.metric == "psnr_over_bicubic":
        return f"{sign} bicubic + {recipe.target:g} dB"
    return f"{sign} {fmt(recipe, recipe.target)}"


def budget_text(recipe: Recipe) -> str:
    if recipe.budget_minutes is not None:
        return f"{recipe.budget_minutes:g} min"
    if recipe.budget_epochs is not None:
        return f"{recipe.budget_epochs} epochs"
    return "-"


def table(results: list[dict]) -> str:
    head = ("recipe", "prec", "target", "reached", "to target wall/CPU min", "trained wall/CPU min", "epochs",
            "final", "budget", "baseline", "ratio")
    rows = [head]
    for res in results:
        recipe = BY_NAME[res["recipe"]]
        to = res["minutes_to_target"]
        reached = "-" if recipe.target is None else ("yes" if res["reached"] else
                                                   "late" if res["target_met"] else "no")
        baseline, ratios = "-", []
        if res.get("lesson_loop"):
            loop = res["lesson_loop"]
            baseline = f"lesson loop {fmt(recipe, loop['final'])} @{loop['epochs']}"
            ratios.append(f"{loop['figure_ratio']:.3f}")
        elif "bicubic" in res["baselines"]:
            baseline = f"bicubic {res['baselines']['bicubic']:.2f} dB"
        elif "noisy input" in res["baselines"]:
            baseline = f"noisy input {res['baselines']['noisy input']:.2f} dB"
        if res.get("bf16_vs_fp32") and res["bf16_vs_fp32"]["speedup_images_per_second"]:
            ratios.append(f"bf16 speed x{res['bf16_vs_fp32']['speedup_images_per_second']:.2f}")
        ratio = ", ".join(ratios) or "-"
        rows.append((res["recipe"], res["precision"], target_text(recipe), reached,
                     f"{to['wall']:.2f} / {to['cpu']:.2f}" if to else "-",
                     f"{res['minutes_trained']['wall']:.2f} / {res['minutes_trained']['cpu']:.2f}",
                     f"{res['epochs']:g}", fmt(recipe, res["final"]), budget_text(recipe), baseline, ratio))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("reached: yes = target met within the budget, late = met past it; minutes exclude the benchmark's "
                 "own scoring; ratio: aekit's figure / the lesson loop's after as many epochs")
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    from aekit.train.distributed import available_cores

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {available_cores()} cores, "
            f"device {device}, load average {load}")
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text


# -- the command ----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(BY_NAME),
                        help=f"comma-separated, of: {', '.join(BY_NAME)}  [default: all]")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the folder with mnist/ (the four IDX files)  [default: ../shared/data]")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"), default="fp32",
                        help="both: each recipe in fp32, then bf16, with the speed-up and the figure change")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (aekit trains with at most one per core)  [default: torch's]")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="the planned length of every recipe (its schedule's), instead of its own")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="a setting for every recipe, as `aekit train --set` (e.g. train.batch_size=256)")
    parser.add_argument("--lr-scale", type=float, default=1.0,
                        help="multiply every recipe's learning rate (its model family's default) by this")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized: mnist-5k instead of MNIST, 1 epoch (unless --max-epochs)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per recipe (and precision) on stdout; the rest goes to stderr")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the run folders here  [default: a temporary folder, removed]")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        parser.error(f"--recipes: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(BY_NAME)}")
    if args.max_epochs is not None and args.max_epochs < 1:
        parser.error("--max-epochs must be 1 or more")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be 1 or more")
    if not args.lr_scale > 0:
        parser.error("--lr-scale must be above 0")
    args.recipe_list = [BY_NAME[n] for n in names]
    args.data_dir = args.data_dir.resolve()
    return args


def check_data(args) -> None:
    if args.quick or not any(r.options.get("dataset") == "mnist" for r in args.recipe_list):
        return
    for folder in (args.data_dir, args.data_dir / "mnist"):
        if all((folder / name).is_file() for name in MNIST_FILES):
            return
    raise BenchmarkError(f"MNIST not found in {args.data_dir}: put {', '.join(MNIST_FILES)} in "
                         f"{args.data_dir / 'mnist'} (or pass --data-dir DIR, or --quick for mnist-5k)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stream = sys.stderr if args.json else sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    threads = torch.get_num_threads()
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu",
                                 status=2)
        check_data(args)
        device = torch.device(args.device)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        say(f"time to quality: {machine(device)}")
        precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
        results: list[dict] = []
        cache: dict = {}
        with contextlib.ExitStack() as stack:
            out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aekit-ttq-")))
            for recipe in args.recipe_list:
                runs = [run_recipe(recipe, p, args, device, out, say, cache) for p in precisions]
                mine = [res for res, _ in runs]
                if recipe.lesson_loop:
                    loop = run_lesson_loop(recipe, mine[0], runs[0][1], device, say)
                    for res in mine:
                        res["lesson_loop"] = loop
                if len(mine) == 2:
                    cmp = mine[1]["bf16_vs_fp32"] = compare_precisions(*mine)
                    speed = f"x{cmp['speedup_images_per_second']:.2f}" if cmp["speedup_images_per_second"] else "-"
                    change = (f"{cmp['figure_change']:+.4g} after epoch {cmp['at_epoch']:g}"
                              if cmp["at_epoch"] else "no epoch finished by both")
                    say(f"  bf16 against fp32: images/s {speed}; {recipe.label} {change}")
                for res in mine:
                    if args.json:
                        print(json.dumps(res), flush=True)
                results.extend(mine)
        say(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        say(table(results))
        return 0
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.status
    except AekitError as err:  # bad data, a refused option: one line, as in the CLI
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
