"""Model families.  Importing this package registers each of them."""

from . import aae, conv_ae, cvae, denoise, dense_ae, sr, vae  # noqa: F401  (registration side effect)
from .base import Autoencoder, Batch, Losses, Output, Posterior

__all__ = ["Autoencoder", "Batch", "Losses", "Output", "Posterior"]
