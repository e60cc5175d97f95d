"""Model families, one module each.  Importing this package registers all of them.

Every public module here (not ``base``, not ``_private`` ones) is imported on the way in, so a
new family is registered by its file being in this folder: there is no list to forget to
extend.  ``FAMILIES`` holds the modules' short names.
"""

import sys

from ..registry import import_modules
from .base import Autoencoder, Batch, Losses, Output, Posterior

FAMILIES = tuple(import_modules(sys.modules[__name__]))

__all__ = ["FAMILIES", "Autoencoder", "Batch", "Losses", "Output", "Posterior"]
