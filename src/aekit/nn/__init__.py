"""Building blocks shared by the model families: torch only, integers in, no losses."""

from .blocks import MLP, ConvDecoder, ConvEncoder, conv_out_size, spatial_chain

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "conv_out_size", "spatial_chain"]
