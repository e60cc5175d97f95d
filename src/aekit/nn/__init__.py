"""Building blocks shared by the model families: torch only, integers in, no losses."""

from .blocks import MLP, ConvDecoder, ConvEncoder, conv_out_size, spatial_chain
from .trunk import ConvTrunk, halving_sizes

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "ConvTrunk", "conv_out_size", "halving_sizes",
           "spatial_chain"]
