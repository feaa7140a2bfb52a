"""Decoder-side restoration of the decoded key frame (learned; part of the learned decoder's weights).

A key frame at 1500-6000 bytes carries AV1's blur and ringing into every frame warped
from it: at 1500 bytes that is about a quarter of the warp decoder's LPIPS error
(docs/results/learned/warp_error.md). The restorer runs once per key frame, not per
frame, so it can afford many times the per-frame generator's cost. It is told how
many bits the key frame had (bits per pixel as a constant input plane), which the
receiver knows from the packet length: the right strength of restoration depends on it.

Layout: the frame is folded to half size by pixel-unshuffle (lossless), processed by
residual blocks there, and unfolded; the output is the decoded frame plus a residual
that starts at zero, so an untrained restorer changes nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def bits_per_pixel(coded_bytes: int | np.ndarray, height: int, width: int) -> float | np.ndarray:
    """Coded bits per pixel of a frame (an int, or an array of sizes)."""
    return 8.0 * coded_bytes / (height * width)


def rate_plane(bpp: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bits per pixel -> (B, 1, h, w) log2-scaled plane at `like`'s size (0 near 0.2 bpp,
    the middle of the key frames' range)."""
    v = torch.log2(bpp.clamp_min(1e-3) / 0.2).to(like.dtype)
    return v.view(-1, 1, 1, 1).expand(like.shape[0], 1, *like.shape[-2:])


class _Block(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.leaky_relu(self.c1(x), 0.2))


class KeyRestorer(nn.Module):
    def __init__(self, width: int = 48, blocks: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(12 + 1, width, 3, 1, 1)
        # one level further down, for the wider context that deblurring needs
        self.down = nn.Conv2d(width, width, 3, 2, 1)
        self.low = nn.Sequential(*(_Block(width) for _ in range(blocks)))
        self.body = nn.Sequential(*(_Block(width) for _ in range(max(1, blocks // 2))))
        self.tail = nn.Conv2d(width, 12, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, image: torch.Tensor, bpp: torch.Tensor) -> torch.Tensor:
        """image (B,3,H,W) in [-1,1] with H, W multiples of 4; bpp (B,) its coded bits per pixel."""
        x = F.pixel_unshuffle(image, 2)
        h = F.leaky_relu(self.head(torch.cat([x, rate_plane(bpp, x)], 1)), 0.2)
        low = self.low(F.leaky_relu(self.down(h), 0.2))
        h = self.body(h + F.interpolate(low, size=h.shape[-2:], mode="nearest"))
        return (image + F.pixel_shuffle(self.tail(F.leaky_relu(h, 0.2)), 2)).clamp(-1, 1)

    def macs(self, size: int = 256) -> float:
        """Multiply-accumulates for one size x size frame (for the docs' cost table)."""
        total, half = 0.0, (size / 2) ** 2
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                px = half / 4 if name.startswith(("down", "low")) else half  # output pixels of the layer
                total += px * m.in_channels * m.out_channels * math.prod(m.kernel_size)
        return total
