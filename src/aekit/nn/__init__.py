"""Building blocks shared by the model families: torch only, integers in, no losses."""

from .blocks import (
    ACTIVATIONS,
    MLP,
    NORMS,
    ConvDecoder,
    ConvEncoder,
    OutputConv2d,
    conv_out_size,
    spatial_chain,
)
from .pixelcnn import GatedPixelCNN
from .trunk import ConvTrunk, halving_sizes

__all__ = ["ACTIVATIONS", "MLP", "NORMS", "ConvDecoder", "ConvEncoder", "ConvTrunk", "GatedPixelCNN", "OutputConv2d",
           "conv_out_size", "halving_sizes", "spatial_chain"]
