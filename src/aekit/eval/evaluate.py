"""Evaluate a trained model on a split: reconstruction metrics and, for VAEs, the ELBO."""

from __future__ import annotations

import torch

from ..models.base import Autoencoder, Batch, reconstruction_loss
from .metrics import PSNR_CAP_DB, bce_per_pixel, mse_per_image, psnr, sse_per_image, ssim

EVAL_SEED_STREAM = 12_345  # the fixed noise used for evaluation, so numbers repeat


@torch.inference_mode()
def evaluate_model(
    model: Autoencoder,
    data,
    task,
    *,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    with_ssim: bool = True,
) -> dict[str, float]:
    """Per-image metrics averaged over ``data`` (an ImageSet).  ``with_ssim=False`` skips SSIM,
    most of the cost on a CPU, for callers that score often (benchmarks between epochs).

    The reconstruction is decoded from the posterior's mode (deterministic).  For VAEs
    trained with BCE the ELBO is estimated with one posterior sample per image, in nats per
    image: ``elbo = -(elbo_recon + kl)``.  Denoising inputs use a noise fixed per image by ``seed``
    (:meth:`aekit.tasks.Task.fixed_inputs`).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    # This generator only draws the ELBO's posterior samples; the denoising noise is fixed per
    # image by fixed_inputs, so the task's baselines can be scored on the same inputs.
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + EVAL_SEED_STREAM)
    n_total = len(data) if max_images is None else min(len(data), max_images)
    sums: dict[str, float] = {}
    elbo_ok = model.variational and getattr(model.config, "recon_loss", "bce") == "bce"
    for start in range(0, n_total, batch_size):
        stop = min(start + batch_size, n_total)
        clean = data.images[start:stop].to(device)
        y = data.labels[start:stop].to(device) if data.labels is not None and model.conditional else None
        batch = Batch(x=task.fixed_inputs(clean, seed=seed, first_index=start), target=clean, y=y)
        x_hat = model.reconstruct(batch.x, y)
        per_image = {
            "bce_per_pixel": bce_per_pixel(x_hat, clean),
            "mse_per_pixel": mse_per_image(x_hat, clean),
            "sse_per_image": sse_per_image(x_hat, clean),
            "psnr_db": psnr(x_hat, clean, max_db=PSNR_CAP_DB),
        }
        if with_ssim:
            per_image["ssim"] = ssim(x_hat, clean)
        if elbo_ok:
            out = model(batch, gen)
            recon = reconstruction_loss(out.logits, clean, "bce")
            kl = model.kl(out.posterior, out.z)
            per_image.update({"elbo_recon": recon, "kl": kl, "elbo": -(recon + kl)})
        for key, values in per_image.items():
            sums[key] = sums.get(key, 0.0) + float(values.double().sum())
    results = {k: v / n_total for k, v in sums.items()}
    c, h, w = model.out_shape
    results["bce_per_image"] = results["bce_per_pixel"] * c * h * w
    results["n"] = n_total
    return results


METRIC_LABELS = {
    "bce_per_pixel": "BCE per pixel",
    "bce_per_image": "BCE per image (nats)",
    "mse_per_pixel": "MSE per pixel",
    "sse_per_image": "squared error per image",
    "psnr_db": "PSNR (dB)",
    "ssim": "SSIM",
    "elbo": "ELBO (nats per image)",
    "elbo_recon": "  reconstruction (nats)",
    "kl": "  KL (nats)",
    "n": "images",
    "nll": "NLL, importance-sampled (nats per image)",
    "nll_se": "  standard error over images",
    "nll_negative_elbo": "  -ELBO from the same samples",
    "nll_samples": "  samples per image (K)",
    "nll_images": "  images",
    # melodies (aekit.tasks.melody)
    "accuracy": "accuracy, free-running from the mean code",
    "accuracy_note_on": "  on note-on steps",
    "teacher_forced_accuracy": "accuracy, teacher-forced",
    "teacher_forced_accuracy_note_on": "  on note-on steps",
    "nll_per_step": "NLL per step (nats; -ELBO/steps without --nll)",
    "nll_negative_elbo_per_step": "  -ELBO per step (nats)",
    "markov_nll_per_step": "  the Markov chain's NLL per step on the same melodies (nats)",
    "nll_gain_over_markov_per_step": "  gain over the chain per step (nats, paired by melody)",
    "nll_gain_over_markov_se": "    its standard error",
    "melodies": "melodies",
    "steps": "steps per melody",
    "music": "music statistics, against the training windows' pitch classes",
    "pitch_class_distance": "pitch-class distance",
    "in_key": "notes in key",
    "notes_per_bar": "notes per bar",
    "pitch_range": "pitch range",
    "silent": "silent",
}
