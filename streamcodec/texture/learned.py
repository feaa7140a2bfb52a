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

from ..bitstream.format import BitstreamError, read_varint, write_varint
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


def pack_strings(strings: list[bytes]) -> bytes:
    return b"".join(write_varint(len(s)) + s for s in strings)


def _read_length(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """A length prefix (at most 3 varint bytes) and the position after it, checked against the data."""
    try:
        n, pos = read_varint(data, pos, 3)
    except BitstreamError:
        raise EntropyError(f"truncated {what}") from None
    if pos + n > len(data):
        raise EntropyError(f"truncated {what}")
    return n, pos


def unpack_strings(data: bytes, count: int) -> list[bytes]:
    """Inverse of pack_strings; raises EntropyError on a short or overlong payload."""
    out, pos = [], 0
    for _ in range(count):
        n, pos = _read_length(data, pos, "learned texture code")
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
    n, pos = _read_length(payload, 0, "texture packet")
    return payload[pos:pos + n], payload[pos + n:]
