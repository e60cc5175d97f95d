"""The convolutional trunk that the conv VAE, the conditional VAE and the adversarial AE share.

Going down: stride-2 3x3 convolutions (:class:`ConvEncoder`), flattened, then optional dense
layers.  Coming back: dense layers from the code to the conv features, reshaped, then
stride-2 transposed convolutions that land on each size the encoder saw (:class:`ConvDecoder`).
The families differ only in what sits between the two (Gaussian heads, a label joined to the
features, a point code), so that part stays in each model.

:class:`ConvTrunk` is a builder, not a module: each model keeps the layers it returns as its
own attributes (``encoder``, ``from_latent``, ``decoder``), so parameter names in a state dict
are the same as before the trunk was shared, and saved checkpoints still load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from .blocks import MLP, ConvDecoder, ConvEncoder, spatial_chain


def halving_sizes(height: int, width: int, steps: int, *, owner: str, stage: str) -> list[tuple[int, int]]:
    """(H, W) before each of ``steps`` halvings and after the last: ``steps + 1`` entries, input first.

    Refuses images smaller than ``2**steps`` on a side (the last stage would see less than one
    pixel), naming ``owner`` (the model) and its ``stage`` kind ("stride-2", "pooling").
    """
    if min(height, width) < 2**steps:
        side = 2**steps
        raise ConfigError(f"{owner} with {steps} {stage} stages needs images of at least {side}x{side}, "
                          f"got {height}x{width}")
    return list(zip(spatial_chain(height, steps), spatial_chain(width, steps)))


class ConvTrunk:
    """Shapes and layers of a stride-2 conv encoder and its transposed-conv mirror.

    ``in_shape`` is (C, H, W) and ``channels`` the encoder's widths, one per stride-2 stage
    (28 -> 14 -> 7 for two stages).  ``owner`` names the model in errors.  The layer factories
    build fresh layers on each call; call them in the order the model has always built its
    layers, so ``torch.manual_seed`` gives the same initial weights.
    """

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int], *, owner: str):
        c, h, w = in_shape
        self.in_channels = c
        self.channels = tuple(channels)
        self.sizes = halving_sizes(h, w, len(self.channels), owner=owner, stage="stride-2")
        self.feature_shape = (self.channels[-1], *self.sizes[-1])  # (64, 7, 7): 28x28 images, channels (32, 64)
        self.features = math.prod(self.feature_shape)

    def encoder(self, dense: Sequence[int] = (), *, final_relu: bool = True) -> nn.Sequential:
        """Conv stages, flattened, then Linear layers to each width in ``dense`` with ReLUs between.

        ``final_relu`` puts a ReLU after the last Linear too (features for heads to read);
        without it the last Linear gives the code itself.  (B, C, H, W) -> (B, dense[-1]), or
        (B, features) when ``dense`` is empty.
        """
        convs = ConvEncoder(self.in_channels, self.channels, downsample="stride")
        layers: list[nn.Module] = [convs, nn.Flatten()]
        if dense:
            final = nn.ReLU(inplace=True) if final_relu else None
            layers += list(MLP([self.features, *dense], final_activation=final))
        return nn.Sequential(*layers)

    def from_latent(self, in_features: int, hidden: int) -> nn.Sequential:
        """Two Linear + ReLU layers from a code (with anything joined to it) to the conv features.

        (B, in_features) -> (B, features); reshape to ``feature_shape`` for :meth:`decoder`.
        """
        layers = MLP([in_features, hidden, self.features], final_activation=nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def decoder(self) -> ConvDecoder:
        """Transposed convs back to the input's size, ending in logits.

        (B, *feature_shape) -> (B, C, H, W)
        """
        # Upsampling steps narrow as they grow (64 -> 32 -> 16 channels for (32, 64)), so the
        # full-resolution layers, where most of the arithmetic is, stay cheap.
        widths = [*reversed(self.channels[:-1]), max(self.channels[0] // 2, 1)]
        return ConvDecoder(self.channels[-1], widths, self.in_channels, self.sizes, upsample="transpose")
