"""Decoder v1: piecewise-affine warp of the reference driven by the landmarks.

The mesh covers the whole frame: face landmarks, two rings of anchors
extrapolated from the face contour (forehead/hair, ears, neck) that follow the
head less the further out and the lower they are, and fixed frame-border
points so the background stays put.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..structure.landmarks import FaceLayout
from ..texture import RegionStats, region_masks
from .base import Reference

RINGS = (1.3, 1.8)
# Static background: how far (fraction of the frame size) the person masks are grown before the key
# frame is shown outside them, and the feather of that edge (pixels at 256).
BACKGROUND_MARGIN = 0.015
BACKGROUND_FEATHER = 2.0
RING_MIN = (1.12, 1.35)
_YCC2RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def _border_points(size: int, per_side: int = 6) -> np.ndarray:
    s = np.linspace(0, size - 1, per_side)
    e0, e1 = np.zeros_like(s), np.full_like(s, size - 1)
    pts = np.concatenate([np.stack([s, e0], 1), np.stack([s, e1], 1), np.stack([e0, s], 1), np.stack([e1, s], 1)])
    return np.unique(pts, axis=0).astype(np.float32)


class WarpSynthesizer:
    name = "warp"

    def __init__(self, mouth_colour: tuple[int, int, int] = (70, 30, 35), static_background: bool = False) -> None:
        """`static_background`: show the key frame itself away from the person (DecoderConfig.background)."""
        self._default_mouth = np.array(mouth_colour, np.float32)
        self.static_background = static_background
        self.background: np.ndarray | None = None  # last frame's weight of the key frame (H, W, 1), if any
        self.ref: Reference | None = None

    # -- anchors ------------------------------------------------------------
    def _ring_weights(self, oval: np.ndarray) -> np.ndarray:
        c = oval.mean(0)
        down = oval[np.argmax(oval[:, 1])] - oval[np.argmin(oval[:, 1])]
        down /= np.linalg.norm(down) + 1e-6
        d = (oval - c) @ down / (np.linalg.norm(oval - c, axis=1) + 1e-6)
        low = np.clip(d, 0, 1)
        return np.stack([1.0 - 0.45 * low, 0.8 - 0.6 * low])  # (rings, points)

    def _anchors(self, lm: np.ndarray) -> np.ndarray:
        oval = lm[self._oval]
        c = oval.mean(0)
        rings = [c + k * (oval - c) for k in RINGS]
        if self.ref is None or self._ref_rings is None:
            return np.concatenate(rings)
        w = self._w[..., None]
        out = []
        for i, k_min in enumerate(RING_MIN):
            p = w[i] * rings[i] + (1 - w[i]) * self._ref_rings[i]
            # A lagging anchor must not end up inside the face (the band would fold over it):
            # push it out along its spoke to at least k_min times the contour radius.
            spoke = oval - c
            r = ((p - c) * spoke).sum(1) / ((spoke * spoke).sum(1) + 1e-6)
            out.append(p + np.maximum(k_min - r, 0)[:, None] * spoke)
        return np.concatenate(out)

    # -- reference ----------------------------------------------------------
    def set_reference(self, ref: Reference, layout: FaceLayout) -> None:
        self.layout = layout
        self._oval = list(layout.oval)
        self.size = ref.image.shape[0]
        self.ref = None
        self._ref_rings = None
        oval = ref.landmarks[self._oval]
        c = oval.mean(0)
        self._ref_rings = [c + k * (oval - c) for k in RINGS]
        self._w = self._ring_weights(oval)
        self._border = _border_points(self.size)
        self._ref_pts = self._all_points(ref.landmarks)
        self.ref = ref
        self._tri = self._build_mesh(ref.landmarks.shape[0])
        # Face triangles (all vertices landmarks) after the rest: the face is in front of hair and neck.
        face = (self._tri < ref.landmarks.shape[0]).all(1)
        self._draw_order = np.concatenate([np.flatnonzero(~face), np.flatnonzero(face)])
        ref_tri = self._ref_pts[self._tri]
        self._ref_sign = np.sign(np.linalg.det(
            np.concatenate([ref_tri, np.ones((len(ref_tri), 3, 1), np.float32)], 2)))
        self._ref_img = ref.image
        self._ref_person = None if ref.person is None else ref.person.astype(np.float32)
        self._ref_mouth_area = layout.mouth_area(ref.landmarks)
        self._ygrid, self._xgrid = np.mgrid[0:self.size, 0:self.size].astype(np.float32)

    def key_frame(self) -> np.ndarray:
        return self.ref.image

    def set_codes(self, codes) -> None:
        """Learned texture codes: the warp decoder has no use for them."""

    def _all_points(self, lm: np.ndarray) -> np.ndarray:
        # Anchors stay strictly inside the frame so they never coincide with the border points.
        anchors = np.clip(self._anchors(lm), 2, self.size - 3)
        return np.concatenate([lm.astype(np.float32), anchors.astype(np.float32), self._border])

    def _build_mesh(self, n_lm: int) -> np.ndarray:
        """Explicit topology: Delaunay inside the face, quad bands oval->ring1->ring2, Delaunay outside.

        A Delaunay of everything connects contour points to far anchors with long
        thin triangles that fold as soon as the head turns.
        """
        pts = self._ref_pts
        face = Delaunay(pts[:n_lm]).simplices
        m = len(self._oval)
        loops = [np.array(self._oval), n_lm + np.arange(m), n_lm + m + np.arange(m)]
        band = []
        for inner, outer in zip(loops, loops[1:]):
            for i in range(m):
                j = (i + 1) % m
                band += [(inner[i], inner[j], outer[j]), (inner[i], outer[j], outer[i])]
        ring2 = loops[2]
        outside_idx = np.concatenate([ring2, n_lm + 2 * m + np.arange(len(self._border))])
        outer_tri = outside_idx[Delaunay(pts[outside_idx]).simplices]
        centroids = pts[outer_tri].mean(1)
        poly = pts[ring2].astype(np.float32).reshape(-1, 1, 2)
        keep = [cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in centroids]
        return np.concatenate([face, np.array(band), outer_tri[np.array(keep, bool)]]).astype(np.int32)

    # -- warp ---------------------------------------------------------------
    def _maps(self, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        src, dst = self._ref_pts[self._tri], cur[self._tri]  # (T, 3, 2)
        # Affine dst -> src per triangle: solve [dst 1] A = src.
        D = np.concatenate([dst, np.ones((len(dst), 3, 1), np.float32)], 2)
        det = np.linalg.det(D)
        ok = np.abs(det) > 1e-3
        A = np.zeros((len(D), 3, 2), np.float32)
        A[ok] = np.linalg.solve(D[ok], src[ok])
        # Fold-overs: a triangle whose orientation flipped is covered by its neighbours, so it is
        # drawn first and loses wherever anything else lands; among the rest, face triangles
        # (all vertices landmarks) are drawn last, as the face is in front of hair and neck.
        flipped = np.sign(det) != self._ref_sign
        n = len(self._tri)
        A = np.concatenate([A, np.array([[[1, 0], [0, 1], [0, 0]]], np.float32)])  # n: identity, for gaps
        ids = np.full((self.size, self.size), n + 1, np.int32)
        pts = np.round(dst * 16).astype(np.int32)
        order = self._draw_order
        for t in np.concatenate([order[flipped[order]], order[~flipped[order]]]):
            if ok[t]:
                cv2.fillConvexPoly(ids, pts[t], int(t) + 1, lineType=cv2.LINE_8, shift=4)
        ids -= 1
        # Six 1-D gathers beat one gather of (H, W, 3, 2) blocks by 3x.
        At = np.ascontiguousarray(A.reshape(-1, 6).T)
        c = [np.take(At[k], ids) for k in range(6)]
        mx = c[0] * self._xgrid
        mx += c[2] * self._ygrid
        mx += c[4]
        my = c[1] * self._xgrid
        my += c[3] * self._ygrid
        my += c[5]
        return mx, my

    def synthesize(self, landmarks: np.ndarray, texture: RegionStats | None) -> np.ndarray:
        if self.ref is None:
            raise RuntimeError("synthesize() before set_reference()")
        landmarks = landmarks[:, :2]
        cur = self._all_points(landmarks)
        mx, my = self._maps(cur)
        out = cv2.remap(self._ref_img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = self._fill_mouth(out, landmarks, texture)
        self.background = self._background_weight(landmarks, (mx, my)) if self.static_background else None
        if self.background is not None:
            out = blend(out, self._ref_img, self.background)
        if texture:  # after the background: a lighting change shows on the background too
            out = self._correct_colour(out, landmarks, (mx, my), texture)
        return out

    def _background_weight(self, lm: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
        """1 where neither the key frame's person, nor that person warped to this frame, nor this
        frame's face is (all grown by the margin), 0 on them, feathered in between."""
        if self._ref_person is None:
            return None
        person = ((cv2.remap(self._ref_person, *maps, cv2.INTER_LINEAR) > 0.25) | (self._ref_person > 0.5))
        person = person.astype(np.uint8)
        cv2.fillConvexPoly(person, cv2.convexHull(np.round(lm * 16).astype(np.int32)), 1, shift=4)
        r = max(1, round(BACKGROUND_MARGIN * self.size))
        person = cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        sigma = BACKGROUND_FEATHER * self.size / 256
        return cv2.GaussianBlur(1.0 - person.astype(np.float32), (0, 0), sigma)[..., None]

    # -- texture-driven corrections -----------------------------------------
    def _fill_mouth(self, img: np.ndarray, lm: np.ndarray, texture: RegionStats | None) -> np.ndarray:
        """Paint the mouth interior where the mouth opened wider than in the reference."""
        area = self.layout.mouth_area(lm)
        if area < 6.0 or area <= self._ref_mouth_area * 1.15:
            return img
        alpha = float(np.clip(1.0 - self._ref_mouth_area / area, 0.0, 0.9))
        colour = self._default_mouth
        if texture and "mouth" in texture:
            colour = np.clip(_YCC2RGB @ (texture["mouth"] - np.array([0, 128, 128])), 0, 255).astype(np.float32)
        inner = lm[list(self.layout.inner_lips)].astype(np.float32)
        x0, y0 = np.floor(inner.min(0)).astype(int) - 3
        x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        if x1 <= x0 or y1 <= y0:
            return img
        m = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(m, [np.round((inner - [x0, y0]) * 16).astype(np.int32)], 1.0, shift=4)
        m = cv2.GaussianBlur(m, (0, 0), 1.0)[..., None] * alpha
        # Darker towards the centre: a mouth interior is lit from the front only.
        patch = img[y0:y1, x0:x1].astype(np.float32)
        out = img.copy()
        out[y0:y1, x0:x1] = np.clip(patch * (1 - m) + colour * m, 0, 255).astype(np.uint8)
        return out

    def _correct_colour(self, img: np.ndarray, lm: np.ndarray, maps: tuple[np.ndarray, np.ndarray],
                        texture: RegionStats) -> np.ndarray:
        offsets = {r: texture[r] - self.ref.stats[r] for r in texture if r in self.ref.stats and r != "mouth"}
        offsets = {r: v for r, v in offsets.items() if np.abs(v).max() >= 1.0}
        if not offsets:
            return img
        person = None  # warped only when a correction is due: most frames need none
        if self._ref_person is not None:
            person = (cv2.remap(self._ref_person, *maps, cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
        scale = 0.25
        masks = region_masks(lm, self.layout, person, self.size, scale)
        n = masks["skin"].shape[0]
        field = np.zeros((n, n, 3), np.float32)
        for r, v in offsets.items():
            field += masks[r][..., None].astype(np.float32) * (_YCC2RGB @ v).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), 1.5)
        field = cv2.resize(field, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        return np.clip(img.astype(np.float32) + field, 0, 255).astype(np.uint8)


def blend(a: np.ndarray, b: np.ndarray, weight_b: np.ndarray) -> np.ndarray:
    """uint8 images mixed per pixel: `weight_b` (H, W, 1) in [0, 1] of `b`."""
    return np.clip(a * (1 - weight_b) + b * weight_b + 0.5, 0, 255).astype(np.uint8)
