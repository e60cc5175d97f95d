"""Turning stored pixels into model input: bytes to floats, grey <-> RGB, resizing.

Shared by every dataset loader, so that ``--channels`` and ``--image-size`` mean the same
thing for MNIST, CIFAR-10 and a folder of photos.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

# ITU-R 601-2 luma, the weights Pillow's convert("L") uses: a CIFAR image turned grey here
# matches the same image loaded from a PNG folder with channels=1.
LUMA = (0.299, 0.587, 0.114)


def bytes_to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 array (N, C, H, W) -> float32 tensor in [0, 1], contiguous and writable."""
    if not images.flags.writeable:  # np.frombuffer over bytes; torch refuses to share those
        images = images.copy()
    # torch converts with several threads: about 3x faster than numpy's astype on 60,000 digits.
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) with C in {1, 3} -> (N, channels, H, W): grey is repeated, RGB becomes luma."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    raise ConfigError(f"cannot convert {c}-channel images to {channels} channels; use channels 1 or 3")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size), area-averaged when shrinking.

    Area averaging (each output pixel is the mean of the input pixels it covers) is what a
    camera sensor at the lower resolution would have seen, and it cannot alias thin strokes
    away.  Enlarging, or shrinking one side while growing the other, uses antialiased
    bilinear interpolation instead, since area mode would only repeat pixels.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if size[0] <= h and size[1] <= w:
        out = F.interpolate(x, size=size, mode="area")
    else:
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0).contiguous()


def shape_images(x: torch.Tensor, *, channels: int | None, size: tuple[int, int] | None) -> torch.Tensor:
    """Apply ``channels`` then ``size`` (either may be None), doing the cheaper order.

    RGB -> grey happens before resizing and grey -> RGB after it, so resizing always sees
    the smaller number of channels.
    """
    if channels is not None and channels < x.shape[1]:
        x = convert_channels(x, channels)
    if size is not None:
        x = resize(x, size)
    if channels is not None and channels > x.shape[1]:
        x = convert_channels(x, channels)
    return x.contiguous()
