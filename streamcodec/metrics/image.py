"""Pixel metrics (PSNR, SSIM) and the face crop the perceptual metrics are taken on."""

from __future__ import annotations

import math

import cv2
import numpy as np

PSNR_CAP_DB = 100.0
_PEAK = 255.0
# Wang et al. 2004: 11x11 Gaussian, sigma 1.5, K1 = 0.01, K2 = 0.03.
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * _PEAK) ** 2
_C2 = (0.03 * _PEAK) ** 2

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, half-open


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {a.dtype} and {b.dtype}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 images over all pixels and channels, capped for identical inputs."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(_PEAK * _PEAK / mse))


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA,
                                borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    smap = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    # Averaging only where the window fits matches the reference 'valid' filtering.
    r = _SSIM_WIN // 2
    if smap.shape[0] > 2 * r and smap.shape[1] > 2 * r:
        smap = smap[r:-r, r:-r]
    return float(smap.mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 images; (H,W) grey or (H,W,C), averaged over channels."""
    _check_pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected (H,W) or (H,W,C), got {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    return float(np.mean([_ssim_channel(x[..., c], y[..., c]) for c in range(x.shape[2])]))


def face_box(landmarks_xy: np.ndarray, shape: tuple[int, ...], margin: float = 0.15) -> Box:
    """Square box around the landmarks, grown by ``margin`` of their extent on each side.

    The box stays centred on the landmarks even where it leaves the image
    (``face_crop`` fills that part by edge replication), so a face near the
    border is not shifted off-centre. ``shape`` is the image shape the box is for.
    """
    pts = np.asarray(landmarks_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0 or not np.all(np.isfinite(pts)):
        raise ValueError("landmarks must be a non-empty (N,2) array of finite values")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = (hi - lo) * (1.0 + 2.0 * margin)
    side = max(1, int(round(float(extent.max()))))
    cx, cy = (lo + hi) / 2.0
    x0 = int(math.floor(cx - side / 2.0 + 0.5))
    y0 = int(math.floor(cy - side / 2.0 + 0.5))
    h, w = shape[:2]
    if x0 >= w or y0 >= h or x0 + side <= 0 or y0 + side <= 0:
        raise ValueError(f"face box {(x0, y0, x0 + side, y0 + side)} lies outside a {w}x{h} image")
    return x0, y0, x0 + side, y0 + side


def face_crop(img: np.ndarray, box: Box) -> np.ndarray:
    """Pixels of ``box``; parts outside the image repeat the nearest edge pixel."""
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        raise ValueError(f"box {box} does not intersect a {w}x{h} image")
    crop = img[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_REPLICATE)
    return crop


def face_region(img: np.ndarray, landmarks_xy: np.ndarray, size: int = 128,
                margin: float = 0.15) -> np.ndarray:
    """The face's square box (see ``face_box``) resized to ``size`` x ``size``."""
    crop = face_crop(img, face_box(landmarks_xy, img.shape, margin))
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
