"""Task evaluation: the fixed corrupted inputs a denoise or super-resolution model is scored
on, and the baselines scored on exactly the same images.

A denoising model's PSNR means little alone: it has to beat the noisy input itself and the
classical filters (median, Gaussian blur, total variation, non-local means), each with its
parameter tuned on *validation* images.  A super-resolution model has to beat nearest,
bilinear and bicubic interpolation of the same small images.

Noise at evaluation is fixed per image: image ``i`` of a split gets noise drawn from a
generator seeded by (seed, i), on the CPU, so the numbers repeat whatever the batch size or
the device, and the baselines see the very inputs the model saw.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from .baselines import evaluate_denoisers, evaluate_upsamplers, tune_denoisers

log = logging.getLogger(__name__)

TEST_STREAM = 12_345  # noise stream of the split being scored
TUNING_STREAM = 54_321  # a different stream for the images the baselines are tuned on

# Tuning tries every grid value of every filter; the best parameter barely moves beyond a
# thousand images, and the slow filters (TV, non-local means) would otherwise take minutes.
MAX_TUNING_IMAGES = 1000


def _image_seed(seed: int, stream: int, index: int) -> int:
    # Large odd multipliers keep (seed, stream, index) triples from colliding.
    return (seed * 1_000_003 + stream * 104_729 + index * 7_919) % (2**63 - 1)


def fixed_inputs(task, clean: Tensor, *, seed: int, first_index: int = 0, stream: int = TEST_STREAM) -> Tensor:
    """The model's inputs for ``clean`` images (B, C, H, W), noise fixed per image.

    ``first_index`` is the index of ``clean[0]`` in its split, so a split scored in batches
    gets the same noise as scored in one go.  Tasks without randomness just apply the task.
    """
    if task.kind != "denoise":
        return task.corrupt(clean, None)
    source = clean.detach().to("cpu")
    noisy = torch.empty_like(source)
    gen = torch.Generator(device="cpu")
    for i in range(source.shape[0]):
        gen.manual_seed(_image_seed(seed, stream, first_index + i))
        noisy[i : i + 1] = task.corrupt(source[i : i + 1], gen)
    return noisy.to(clean.device)


def evaluate_task_baselines(task, val_set, test_set, *, seed: int = 0, max_images: int | None = None,
                            max_tuning_images: int | None = None) -> dict[str, dict[str, Any]]:
    """Baselines for ``task`` on ``test_set``'s first ``max_images`` images (all if None).

    Returns {name: {"psnr": mean dB, "ssim": mean SSIM, ...}}, nothing for "reconstruct":
      - denoise: "noisy input", then each classical denoiser with "param" (tuned on the first
        ``max_tuning_images`` (default :data:`MAX_TUNING_IMAGES`) of ``val_set``, with noise of
        its own) and "n" (images scored;
        non-local means is scored on the first 2000 only, as it is slow);
      - super-resolution: "nearest", "bilinear", "bicubic" enlargements of the small inputs.
    """
    if task.kind == "reconstruct":
        return {}
    n = len(test_set) if max_images is None else min(len(test_set), max_images)
    clean_test = test_set.images[:n].cpu()
    inputs_test = fixed_inputs(task, clean_test, seed=seed)
    started = time.perf_counter()
    if task.kind == "super-resolution":
        results = evaluate_upsamplers(inputs_test, clean_test, task.scale)
        for row in results.values():
            row["n"] = n
    else:
        k = min(len(val_set), MAX_TUNING_IMAGES if max_tuning_images is None else max_tuning_images)
        clean_val = val_set.images[:k].cpu()
        noisy_val = fixed_inputs(task, clean_val, seed=seed, stream=TUNING_STREAM)
        params = tune_denoisers(noisy_val, clean_val)
        results = evaluate_denoisers(inputs_test, clean_test, params)
    log.info("baselines for %s on %d test images in %.1f s", task.describe(), n, time.perf_counter() - started)
    return results
