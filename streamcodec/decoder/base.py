"""The interface between the session decoder and a frame synthesiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..structure.landmarks import FaceLayout
from ..texture import RegionStats

if TYPE_CHECKING:
    from ..config import DecoderConfig


@dataclass
class Reference:
    """What the receiver knows about the last key frame."""

    image: np.ndarray  # decoded key frame, RGB uint8
    landmarks: np.ndarray  # (N, 2) decoded structure at the key frame
    person: np.ndarray | None  # person mask of the decoded key frame (uint8 0/1) or None
    stats: RegionStats  # region colour statistics measured on the decoded key frame
    coded_bytes: int | None = None  # the key frame's size in the stream (a learned restorer's input)


class FrameSynthesizer(Protocol):
    name: str

    def set_reference(self, ref: Reference, layout: FaceLayout) -> None: ...

    def synthesize(self, landmarks: np.ndarray, texture: RegionStats | None) -> np.ndarray: ...

    def key_frame(self) -> np.ndarray:
        """The key frame as this decoder shows it (a learned decoder may restore it)."""

    def set_codes(self, codes: Any) -> None:
        """The learned texture code from the stream (None: none yet); decoders without a use for it ignore it."""


def get_synthesizer(cfg: "DecoderConfig | str") -> FrameSynthesizer:
    """The decoder a `decoder:` setting names (a bare name takes the other settings' defaults)."""
    from ..config import DecoderConfig

    cfg = DecoderConfig(name=cfg) if isinstance(cfg, str) else cfg
    background = cfg.background == "key"
    if cfg.name == "warp":
        from .warp import WarpSynthesizer

        return WarpSynthesizer(static_background=background)
    # imported only when asked for: it loads torch and the weights
    from .learned import LearnedSynthesizer, weights_path

    return LearnedSynthesizer(weights_path(cfg.weights), static_background=background)
