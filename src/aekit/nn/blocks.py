"""Encoders and decoders built from plain torch layers.

Decoders mirror their encoders exactly: each upsampling step returns to the size the matching
encoder step started from, so any image size the encoder accepts comes back unchanged
(28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28, with ceil rounding on the way down).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_out_size(size: int) -> int:
    """Size after one halving step (stride-2 conv with padding 1, or 2x2 ceil-mode pooling)."""
    return (size + 1) // 2


def spatial_chain(size: int, steps: int) -> list[int]:
    """Sizes seen going down: [size, ceil(size/2), ...], steps + 1 entries."""
    sizes = [size]
    for _ in range(steps):
        sizes.append(conv_out_size(sizes[-1]))
    return sizes


ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "gelu": nn.GELU}
NORMS = ("none", "layer")


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last), each hidden layer
    layer-normalised before it with ``norm="layer"``."""

    def __init__(self, sizes: Sequence[int], *, final_activation: nn.Module | None = None,
                 activation: str = "relu", norm: str = "none"):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                if norm == "layer":
                    layers.append(nn.LayerNorm(b))
                layers.append(ACTIVATIONS[activation]())
        if final_activation is not None:
            layers.append(final_activation)
        super().__init__(*layers)


class ConvEncoder(nn.Module):
    """3x3 convolutions, each followed by a halving step.

    ``downsample="pool"`` is the lesson's conv AE (conv 'same' + ReLU + 2x2 max-pool);
    ``downsample="stride"`` uses stride-2 convolutions (the usual conv-VAE encoder).
    """

    def __init__(self, in_channels: int, channels: Sequence[int], *, downsample: str = "pool"):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            if downsample == "pool":
                # The lesson's conv + ReLU + pool, with the ReLU moved after the pooling: max and
                # ReLU commute (ReLU is monotonic), so outputs and gradients are the same, and
                # the ReLU and its backward run on a quarter of the values.
                layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True),
                           nn.ReLU(inplace=True)]
            elif downsample == "stride":
                layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            else:
                raise ValueError(f"downsample must be 'pool' or 'stride', got {downsample!r}")
            prev = ch
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Upsample(nn.Module):
    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=self.size, mode="nearest")


class OutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` for a decoder's last layer, which on CPUs computes a one-channel output
    (a grey image's logits) as one convolution per input channel, summed.

    That is the same sum, sum_c (w_c * x_c), grouped another way.  oneDNN's convolutions
    vectorise over output channels, so with a single one they run far below the processor's
    peak: in the lesson's conv AE (16 -> 1 channels at 28x28) this layer took half of all
    convolution time.  A per-channel (depthwise) convolution vectorises over the 16 input
    channels instead, and its sum is accumulated in fp32 under bf16 autocast.  Measured on
    2 CPU cores, one process alternating epochs with the plain layer: a whole training step of
    the lesson's conv AE 1.19-1.25x faster at batch 64 in fp32, 1.13x in bf16, 1.17-1.34x at
    batch 256.  GPUs, several output channels, and exports (ONNX, tracing) use the plain
    convolution; the weights are the same either way.
    """

    # False: always the plain convolution (benchmarks count FLOPs on it: torch's counter
    # charges a grouped convolution's backward as if it were a full one)
    per_channel: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if (not self.per_channel or x.is_cuda or self.out_channels != 1 or self.groups != 1
                or self.padding_mode != "zeros"
                or torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        c = self.in_channels
        per_channel = F.conv2d(x, self.weight.reshape(c, 1, *self.kernel_size), None, self.stride, self.padding,
                               self.dilation, groups=c)
        out = per_channel.sum(1, keepdim=True)
        return out if self.bias is None else out + self.bias.view(1, 1, 1, 1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`, ending in a 3x3 conv to ``out_channels`` logits.

    ``sizes`` are the encoder's spatial sizes from the input down, e.g. [(28,28), (14,14),
    (7,7), (4,4)]; the decoder walks them back up.  ``upsample="nearest"`` is the lesson's
    (conv + ReLU + nearest upsampling); ``"transpose"`` uses stride-2 transposed convolutions
    with the output padding that lands exactly on each size.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], out_channels: int,
                 sizes: Sequence[tuple[int, int]], *, upsample: str = "nearest"):
        super().__init__()
        channels = list(channels)  # deepest first, e.g. [8, 8, 16]
        targets = list(reversed(sizes[:-1]))  # e.g. [(7,7), (14,14), (28,28)]
        if len(channels) != len(targets):
            raise ValueError("one channel count per upsampling step")
        layers: list[nn.Module] = []
        prev = in_channels
        for i, (ch, size) in enumerate(zip(channels, targets)):
            if upsample == "nearest":
                layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(inplace=True), _Upsample(size)]
            elif upsample == "transpose":
                here = sizes[len(sizes) - 1 - i]
                pad = (size[0] - (2 * here[0] - 1), size[1] - (2 * here[1] - 1))
                layers += [nn.ConvTranspose2d(prev, ch, 3, stride=2, padding=1, output_padding=pad),
                           nn.ReLU(inplace=True)]
            else:
                raise ValueError(f"upsample must be 'nearest' or 'transpose', got {upsample!r}")
            prev = ch
        layers.append(OutputConv2d(prev, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)
