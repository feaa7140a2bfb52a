"""Semantic regions of a face frame, from landmarks and a person mask."""

from __future__ import annotations

import cv2
import numpy as np

from ..structure.landmarks import FaceLayout

REGIONS = ("skin", "brows", "eyes", "lips", "mouth", "nose", "hair", "clothes", "background")


def _poly(mask: np.ndarray, pts: np.ndarray, scale: float) -> None:
    p = np.round(pts * scale * 16).astype(np.int32)  # 4 fractional bits: sub-pixel accurate edges
    cv2.fillPoly(mask, [p], 1, lineType=cv2.LINE_8, shift=4)


def _hull(mask: np.ndarray, pts: np.ndarray, scale: float) -> None:
    _poly(mask, cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2), scale)


def region_masks(lm: np.ndarray, layout: FaceLayout, person: np.ndarray | None, size: int,
                 scale: float = 1.0) -> dict[str, np.ndarray]:
    """Binary uint8 masks at `size * scale`; landmarks `lm` (N, 2) are in pixels of `size`."""
    n = max(1, int(round(size * scale)))
    shape = (n, n)
    face = np.zeros(shape, np.uint8)
    _poly(face, lm[list(layout.oval)], scale)
    masks: dict[str, np.ndarray] = {}
    for name, loops in layout.loops.items():
        m = np.zeros(shape, np.uint8)
        for loop in loops:
            _poly(m, lm[list(loop)], scale)
        masks[name] = m
    for name, sets in layout.hulls.items():
        m = np.zeros(shape, np.uint8)
        for s in sets:
            _hull(m, lm[list(s)], scale)
        masks[name] = m
    masks["lips"] = masks["lips"] & (1 - masks["mouth"])
    parts = masks["brows"] | masks["eyes"] | masks["lips"] | masks["mouth"] | masks["nose"]
    masks["skin"] = face & (1 - parts)
    if person is None:
        person = np.ones(shape, np.uint8)
    elif person.shape != shape:
        person = cv2.resize(person, shape[::-1], interpolation=cv2.INTER_NEAREST)
    chin_y = float(lm[list(layout.oval), 1].max()) * scale
    rows = np.arange(n)[:, None]
    body = person & (1 - face)
    masks["hair"] = body & (rows < chin_y).astype(np.uint8)
    masks["clothes"] = body & (rows >= chin_y).astype(np.uint8)
    masks["background"] = (1 - person) & (1 - face)
    return {r: masks[r] for r in REGIONS}


def ycbcr(img: np.ndarray) -> np.ndarray:
    """Full-range BT.601 Y, Cb, Cr as float32."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)[..., [0, 2, 1]]


def region_means(img: np.ndarray, masks: dict[str, np.ndarray], min_pixels: int = 12) -> dict[str, np.ndarray]:
    """Mean (Y, Cb, Cr) per region with enough pixels; masks may be at a lower resolution than img."""
    n = next(iter(masks.values())).shape[0]
    small = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA) if img.shape[0] != n else img
    yc = ycbcr(small)
    out = {}
    for name, m in masks.items():
        sel = m.astype(bool)
        if sel.sum() >= min_pixels:
            out[name] = yc[sel].mean(0)
    return out


class PersonSegmenter:
    """mediapipe selfie segmentation (person vs background)."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        m = self._seg.process(np.ascontiguousarray(img)).segmentation_mask
        return (m > 0.5).astype(np.uint8)
