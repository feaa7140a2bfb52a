"""Texture code v1: mean colour (Y, Cb, Cr) per semantic region.

Coded as the difference from the same statistics measured on the decoded key
frame, which the receiver computes itself, so a code sent with a key frame
costs a few bits and a code sent after a lighting change says only what changed.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..entropy import ArithmeticDecoder, ArithmeticEncoder, EntropyError, SignedCoder
from ..entropy.models import AdaptiveModel
from .regions import REGIONS

RegionStats = dict[str, np.ndarray]

_NEUTRAL = np.array([128.0, 128.0, 128.0])


class ColourStatsCodec:
    name = "colourstats"
    codec_id = 1

    def __init__(self, step: float = 2.0) -> None:
        self.step = step

    @property
    def model_id(self) -> bytes:
        return hashlib.sha256(f"{self.name}-v1-step{self.step}-{','.join(REGIONS)}".encode()).digest()[:8]

    def _coders(self) -> tuple[AdaptiveModel, SignedCoder]:
        laplace = [max(1, int(200 * 0.55 ** abs(v))) for v in range(-6, 7)] + [2]
        return AdaptiveModel([4, 60], increment=16), SignedCoder(6, laplace, increment=16)

    def quantise(self, cur: RegionStats, ref: RegionStats) -> dict[str, np.ndarray]:
        return {r: np.round((cur[r] - ref.get(r, _NEUTRAL)) / self.step).astype(np.int64)
                for r in REGIONS if r in cur}

    def dequantise(self, q: dict[str, np.ndarray], ref: RegionStats) -> RegionStats:
        return {r: ref.get(r, _NEUTRAL) + v * self.step for r, v in q.items()}

    def encode(self, q: dict[str, np.ndarray]) -> bytes:
        present, values = self._coders()
        enc = ArithmeticEncoder()
        for r in REGIONS:
            present.encode(enc, int(r in q))
            if r in q:
                for v in q[r]:
                    values.encode(enc, int(v))
        return enc.finish()

    def decode(self, payload: bytes) -> dict[str, np.ndarray]:
        present, values = self._coders()
        dec = ArithmeticDecoder(payload)
        out = {}
        for r in REGIONS:
            if present.decode(dec):
                out[r] = np.array([values.decode(dec) for _ in range(3)], np.int64)
        return out


def drift(cur: RegionStats, sent: RegionStats, weights: dict[str, float] | None = None,
          appear: frozenset[str] = frozenset({"mouth"})) -> float:
    """Largest weighted colour difference between what the receiver has and the current frame.

    A region in `appear` that the receiver has no code for (a mouth opening for the first
    time) counts as maximal drift whatever its weight.
    """
    w = weights or {}
    worst = 0.0
    for r, v in cur.items():
        if r not in sent:
            if r in appear or w.get(r, 1.0) > 0:
                worst = 255.0
            continue
        d = np.abs(v - sent[r]) * np.array([1.0, 0.7, 0.7])
        worst = max(worst, w.get(r, 1.0) * float(d.max()))
    return worst


TEXTURE_CODECS = {ColourStatsCodec.codec_id: ColourStatsCodec}
