"""``denoise``: a corrupted copy goes in, the clean image is the target.

During training the noise is drawn fresh for every batch.  A denoiser's PSNR means little
alone: it has to beat the noisy input itself and the classical filters (median, Gaussian blur,
total variation, non-local means), each with its parameter tuned on *validation* images with
noise of their own, and scored on exactly the test inputs the model is scored on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from ..data.corrupt import NoiseSpec, parse_noise
from ..errors import ConfigError
from . import register_task
from .base import TEST_STREAM, TUNING_STREAM, Task, image_seed

log = logging.getLogger(__name__)

DEFAULT_NOISE = "gaussian:0.5"  # strong enough that the classical filters struggle; the lesson's sigma
# Tuning tries every grid value of every filter; the best parameter barely moves beyond a
# thousand images, and the slow filters (TV, non-local means) would otherwise take minutes.
MAX_TUNING_IMAGES = 1000


@register_task
class Denoise(Task):
    name = "denoise"
    default_model = "dn"  # models/denoise.py: a small U-Net built for the job
    apply_command = "denoise"
    train_hint = f"aekit train --task denoise --noise {DEFAULT_NOISE}"

    def __init__(self, noise: NoiseSpec):
        self.noise = noise

    @classmethod
    def from_options(cls, *, noise=None, scale=None) -> Denoise:
        if scale:
            raise ConfigError("--scale only applies to --task super-resolution")
        return cls(parse_noise(noise or DEFAULT_NOISE))

    def options(self) -> dict[str, Any]:
        return {"noise": str(self.noise), "scale": None}

    def corrupt(self, clean: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.noise.apply(clean, generator)

    def fixed_inputs(self, clean: Tensor, *, seed: int, first_index: int = 0, stream: int = TEST_STREAM) -> Tensor:
        # Noise is drawn image by image on the CPU, so it does not depend on the batch or the device.
        source = clean.detach().to("cpu")
        noisy = torch.empty_like(source)
        gen = torch.Generator(device="cpu")
        for i in range(source.shape[0]):
            gen.manual_seed(image_seed(seed, stream, first_index + i))
            noisy[i : i + 1] = self.corrupt(source[i : i + 1], gen)
        return noisy.to(clean.device)

    def baselines(self, val_set, test_set, *, seed: int = 0, max_images: int | None = None,
                  max_tuning_images: int | None = None) -> dict[str, dict[str, Any]]:
        """"noisy input", then each classical denoiser with "param" (tuned on the first
        ``max_tuning_images`` (default :data:`MAX_TUNING_IMAGES`) of ``val_set``) and "n"
        (images scored; non-local means is scored on the first 2000 only, as it is slow)."""
        from ..eval.baselines import evaluate_denoisers, tune_denoisers

        n = len(test_set) if max_images is None else min(len(test_set), max_images)
        clean_test = test_set.images[:n].cpu()
        inputs_test = self.fixed_inputs(clean_test, seed=seed)
        started = time.perf_counter()
        k = min(len(val_set), MAX_TUNING_IMAGES if max_tuning_images is None else max_tuning_images)
        clean_val = val_set.images[:k].cpu()
        noisy_val = self.fixed_inputs(clean_val, seed=seed, stream=TUNING_STREAM)
        results = evaluate_denoisers(inputs_test, clean_test, tune_denoisers(noisy_val, clean_val))
        log.info("baselines for %s on %d test images in %.1f s", self.describe(), n, time.perf_counter() - started)
        return results

    def describe(self) -> str:
        return f"denoise ({self.noise})"
