"""``reconstruct``: the plain autoencoder, whose input is its target."""

from __future__ import annotations

from ..errors import ConfigError
from . import register_task
from .base import Task


@register_task
class Reconstruct(Task):
    name = "reconstruct"
    default_model = "conv-vae"  # the lesson's convolutional VAE: reconstructs, embeds and generates
    target_is_input = True
    train_hint = "aekit train --task reconstruct"

    @classmethod
    def from_options(cls, *, noise=None, scale=None) -> Reconstruct:
        if noise:
            raise ConfigError("--noise only applies to --task denoise")
        if scale:
            raise ConfigError("--scale only applies to --task super-resolution")
        return cls()
