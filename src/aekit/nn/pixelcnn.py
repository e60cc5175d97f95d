"""A gated PixelCNN over a grid of discrete codes: the VQ-VAE's autoregressive prior.

van den Oord et al., "Conditional Image Generation with PixelCNN Decoders" (2016): two stacks
of gated convolutions, a vertical one that sees the rows above and a horizontal one that sees
the pixels to the left on the same row, so that the model has no blind spot.  Position (i, j)
in raster order is predicted from positions (i', j') with i' < i, or i' = i and j' < j.

Masked convolutions are written here as convolutions whose kernels only cover the allowed
side, padded on that side and cropped (the usual trick, e.g. in the paper's reference code):
nothing is multiplied by a mask at each step, and no weight exists that a mask must keep at
zero.  The first block sees strictly above / strictly left (mask "A"); later blocks also see
their own position in the stack below (mask "B"), which still only holds earlier positions.
``tests/test_vq_vae.py`` checks causality by perturbing inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _gate(x: Tensor) -> Tensor:
    """tanh(a) * sigmoid(b) for the two halves of the channels.  (B, 2C, H, W) -> (B, C, H, W)"""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated layer of both stacks; ``first`` excludes the current position (mask "A").

    ``kernel`` (odd) is the width of the vertical stack's kernel; it reaches ``kernel // 2``
    rows up and ``kernel // 2`` columns left.
    """

    def __init__(self, width: int, kernel: int, *, first: bool):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"a PixelCNN kernel must be odd and at least 3, got {kernel}")
        self.reach = kernel // 2
        self.first = first
        own = 0 if first else 1  # mask "B": the stack's own row (vertical) or position (horizontal)
        self.vertical = nn.Conv2d(width, 2 * width, (self.reach + own, kernel))
        self.horizontal = nn.Conv2d(width, 2 * width, (1, self.reach + own))
        self.vertical_to_horizontal = nn.Conv2d(2 * width, 2 * width, 1)
        self.out = nn.Conv2d(width, width, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """Both stacks (B, C, H, W) in, both out, same shapes."""
        height, width = v.shape[-2:]
        r = self.reach
        # Padding `reach` rows on top and cropping to the first `height` rows: output row i sees
        # rows i - r .. i - 1 with a kernel r high ("A"), or i - r .. i with one r + 1 high ("B").
        v_pre = self.vertical(F.pad(v, (r, r, r, 0)))[:, :, :height]  # (B, 2C, H, W)
        h_pre = self.horizontal(F.pad(h, (r, 0, 0, 0)))[:, :, :, :width]  # (B, 2C, H, W)
        # The vertical stack at row i only holds rows above i, so the horizontal stack may read it.
        h_new = self.out(_gate(h_pre + self.vertical_to_horizontal(v_pre)))
        # No residual in the first block: the input at the current position must not pass through.
        return _gate(v_pre), h_new if self.first else h + h_new


class GatedPixelCNN(nn.Module):
    """Logits over ``num_codes`` for every position of a grid of code indices.

    ``width`` channels, ``layers`` gated blocks; the first block's kernel is ``first_kernel``
    wide (a large one sees much of a small grid at once), the others 3.  (B, H, W) int64 ->
    (B, num_codes, H, W), where the logits at (i, j) depend only on earlier positions.
    """

    def __init__(self, num_codes: int, *, width: int = 64, layers: int = 6, first_kernel: int = 7):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a PixelCNN needs at least one layer, got {layers}")
        self.num_codes = num_codes
        self.embed = nn.Embedding(num_codes, width)
        self.blocks = nn.ModuleList([GatedBlock(width, first_kernel, first=True)]
                                    + [GatedBlock(width, 3, first=False) for _ in range(layers - 1)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, num_codes, 1))

    def forward(self, indices: Tensor) -> Tensor:
        x = self.embed(indices).permute(0, 3, 1, 2)  # (B, C, H, W)
        v = h = x
        for block in self.blocks:
            v, h = block(v, h)
        return self.head(h)  # (B, K, H, W)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, *, temperature: float = 1.0,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """``n`` grids drawn position by position in raster order, logits divided by
        ``temperature``; the draws use ``generator`` on the CPU, so they do not depend on the
        device the network runs on.  (n, H, W) int64, on the CPU"""
        grid = torch.zeros((n, height, width), dtype=torch.long)
        for i in range(height):
            for j in range(width):
                logits = self(grid.to(device))[:, :, i, j].float().cpu() / temperature  # (n, K)
                grid[:, i, j] = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
        return grid
