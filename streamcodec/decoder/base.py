"""The interface between the session decoder and a frame synthesiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..structure.landmarks import FaceLayout
from ..texture import RegionStats


@dataclass
class Reference:
    """What the receiver knows about the last key frame."""

    image: np.ndarray  # decoded key frame, RGB uint8
    landmarks: np.ndarray  # (N, 2) decoded structure at the key frame
    person: np.ndarray | None  # person mask of the decoded key frame (uint8 0/1) or None
    stats: RegionStats  # region colour statistics measured on the decoded key frame


class FrameSynthesizer(Protocol):
    name: str

    def set_reference(self, ref: Reference, layout: FaceLayout) -> None: ...

    def synthesize(self, landmarks: np.ndarray, texture: RegionStats | None) -> np.ndarray: ...


def get_synthesizer(name: str) -> FrameSynthesizer:
    from .warp import WarpSynthesizer

    known = {"warp": WarpSynthesizer}
    if name not in known:
        raise ValueError(f"unknown decoder {name!r}; available: {sorted(known)}")
    return known[name]()
