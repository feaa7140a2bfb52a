"""Texture code v2: a learned code per semantic region.

The encoder looks at the original frame (never the decoded key frame: the code
is there to say what the key frame's coding lost) and pools its features per
region with a learned attention map per region, so a region is described by
the pixels that matter for it (the teeth rather than the lips around them)
instead of a plain average: the thesis' non-uniform texture modelling.
The codes are coded by `CodeEntropyModel`; the payload is its strings, each
preceded by its length.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..entropy import EntropyError
from .regions import REGIONS


class TextureEncoder(nn.Module):
    def __init__(self, code_ch: int, width: int = 32) -> None:
        super().__init__()
        r = len(REGIONS)
        self.feat = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2))
        self.attn = nn.Conv2d(width, r, 1)  # one attention map per region
        self.proj = nn.Linear(width, code_ch)

    def forward(self, img: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """img (B,3,H,W) in [-1,1], masks (B,R,h,w) -> codes (B,C,R); a region without pixels gets 0."""
        f = self.feat(img)
        m = masks if masks.shape[-2:] == f.shape[-2:] else F.interpolate(masks, size=f.shape[-2:], mode="area")
        inside = m > 0.5
        logit = torch.where(inside, self.attn(f), torch.full_like(m, -1e4)).flatten(2)
        w = logit.softmax(-1) * inside.flatten(2).any(-1, keepdim=True)
        pooled = torch.einsum("brn,bcn->brc", w, f.flatten(2))
        return self.proj(pooled).transpose(1, 2) * inside.flatten(2).any(-1)[:, None, :]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pack_strings(strings: list[bytes]) -> bytes:
    return b"".join(_varint(len(s)) + s for s in strings)


def unpack_strings(data: bytes, count: int) -> list[bytes]:
    """Inverse of pack_strings; raises EntropyError on a short or overlong payload."""
    out, pos = [], 0
    for _ in range(count):
        n = shift = 0
        while True:
            if pos >= len(data) or shift > 21:
                raise EntropyError("truncated learned texture code")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if pos + n > len(data):
            raise EntropyError("truncated learned texture code")
        out.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise EntropyError(f"{len(data) - pos} stray bytes after the learned texture code")
    return out


# A stream with texture codec 2 carries, in each texture packet, the colour statistics of v1
# (which the warp decoder uses) followed by the learned code (which the learned decoder uses):
# one bitstream that both decoders read.
LEARNED_CODEC_ID = 2


def join_payload(colour: bytes, code: bytes) -> bytes:
    return pack_strings([colour]) + code


def split_payload(payload: bytes) -> tuple[bytes, bytes]:
    if not payload:
        raise EntropyError("empty texture packet")
    n = shift = pos = 0
    while True:
        if pos >= len(payload) or shift > 21:
            raise EntropyError("truncated texture packet")
        b = payload[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if pos + n > len(payload):
        raise EntropyError("truncated texture packet")
    return payload[pos:pos + n], payload[pos + n:]
