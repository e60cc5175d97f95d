"""A small U-Net, split into its encoder and decoder halves, for the image-to-image models.

The encoder returns the feature map of every level (finest first); the decoder walks them
back up, upsampling each to the exact size of the level above (nearest, like the lesson's
conv AE) and concatenating the skip features before two 3x3 convolutions.  Any image size
works: levels halve with ceil rounding (28 -> 14 -> 7 -> 4) and the decoder returns to the
sizes the encoder saw.  Ronneberger et al., "U-Net" (2015), with far fewer channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_relu(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class UNetEncoder(nn.Module):
    """Level 0 at the input's size, then one stride-2 level per further entry of ``channels``."""

    def __init__(self, in_channels: int, channels: Sequence[int]):
        super().__init__()
        if not channels:
            raise ValueError("a U-Net needs at least one level")
        levels = []
        prev = in_channels
        for i, ch in enumerate(channels):
            # A stride-2 conv halves the size where a pool would: it learns what to keep.
            levels.append(nn.Sequential(conv_relu(prev, ch, stride=1 if i == 0 else 2), conv_relu(ch, ch)))
            prev = ch
        self.levels = nn.ModuleList(levels)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)  # (B, channels[i], ceil(H / 2^i), ceil(W / 2^i))
        return features


class UNetDecoder(nn.Module):
    """From the encoder's features back to ``channels[0]`` features at level 0's size."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        channels = list(channels)
        # Going up from level i+1 to level i: the upsampled features (channels[i+1] wide, or
        # channels[i] once a decoder stage has run) concatenated with level i's skip features.
        stages = []
        below = channels[-1]
        for ch in reversed(channels[:-1]):
            stages.append(nn.Sequential(conv_relu(below + ch, ch), conv_relu(ch, ch)))
            below = ch
        self.stages = nn.ModuleList(stages)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        h = features[-1]
        for stage, skip in zip(self.stages, reversed(features[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = stage(torch.cat([h, skip], dim=1))
        return h  # (B, channels[0], H, W)


def feature_shapes(channels: Sequence[int], height: int, width: int) -> list[tuple[int, int, int]]:
    """(C, H, W) of each level's features for an input of height x width."""
    shapes = []
    for i, ch in enumerate(channels):
        if i:
            height, width = (height + 1) // 2, (width + 1) // 2
        shapes.append((ch, height, width))
    return shapes


def pack(features: Sequence[Tensor]) -> Tensor:
    """Feature maps [(B, C_i, H_i, W_i), ...] flattened into one code.  (B, sum C_i H_i W_i)"""
    return torch.cat([f.flatten(1) for f in features], dim=1)


def unpack(z: Tensor, shapes: Sequence[tuple[int, int, int]]) -> list[Tensor]:
    """The inverse of :func:`pack` for feature maps of the given (C, H, W) shapes."""
    sizes = [c * h * w for c, h, w in shapes]
    return [part.reshape(-1, *shape) for part, shape in zip(torch.split(z, sizes, dim=1), shapes)]
