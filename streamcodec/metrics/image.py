"""Pixel metrics (PSNR, SSIM, MS-SSIM) and the face crop the perceptual metrics are taken on."""

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

# Wang et al. 2003, finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_LUMA_RGB = (0.299, 0.587, 0.114)

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


def _ssim_terms(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term (the MS-SSIM cs) of one float channel."""
    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA,
                                borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    cs = (2 * cxy + _C2) / (vx + vy + _C2)
    smap = ((2 * mx * my + _C1) / (mx * mx + my * my + _C1)) * cs
    # Averaging only where the window fits matches the reference 'valid' filtering.
    r = _SSIM_WIN // 2
    if smap.shape[0] > 2 * r and smap.shape[1] > 2 * r:
        smap, cs = smap[r:-r, r:-r], cs[r:-r, r:-r]
    return float(smap.mean()), float(cs.mean())


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    return _ssim_terms(x, y)[0]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 images; (H,W) grey or (H,W,C), averaged over channels."""
    _check_pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"expected (H,W) or (H,W,C), got {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    return float(np.mean([_ssim_channel(x[..., c], y[..., c]) for c in range(x.shape[2])]))


def _luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma in float64, unrounded; (H,W) input is taken as already grey."""
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected (H,W) grey or (H,W,3) RGB, got {img.shape}")
    return img.astype(np.float64) @ np.array(_LUMA_RGB)


def _halve(img: np.ndarray) -> np.ndarray:
    # 2x2 box average then decimation, the low-pass/downsample of Wang 2003;
    # an odd last row/column is dropped.
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    return img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim_scales(shape: tuple[int, ...]) -> int:
    """How many MS-SSIM scales fit: each needs the 11x11 window inside the image."""
    side = min(shape[:2])
    n = 1
    while n < len(MS_SSIM_WEIGHTS) and side // 2 ** n >= _SSIM_WIN:
        n += 1
    return n


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) of uint8 images, on BT.601 luma.

    Luma, not a mean over RGB, as in video-codec practice (libvmaf, x264's
    tools) and the grey-scale original. Five scales with weights
    ``MS_SSIM_WEIGHTS`` at 256x256 (the coarsest 16x16); smaller images use
    only the scales whose side is still >= 11 (4 at 128x128) with the leading
    weights renormalised to sum 1. Negative cs/SSIM values, possible for
    very noisy inputs, are clipped to 0 before the fractional powers (as in
    TensorFlow's ``ssim_multiscale``).
    """
    _check_pair(a, b)
    x, y = _luma(a), _luma(b)
    n = ms_ssim_scales(x.shape)
    weights = np.array(MS_SSIM_WEIGHTS[:n])
    if n < len(MS_SSIM_WEIGHTS):  # the published 5 weights are used as they are (sum 1.0001)
        weights /= weights.sum()
    result = 1.0
    for j, w in enumerate(weights):
        s, cs = _ssim_terms(x, y)
        # Contrast-structure at the finer scales, full SSIM (with luminance) at the coarsest.
        term = s if j == n - 1 else cs
        result *= max(term, 0.0) ** w
        if j < n - 1:
            x, y = _halve(x), _halve(y)
    return float(result)


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


def as_frames(x: np.ndarray, metric: str = "metric") -> np.ndarray:
    """uint8 RGB (H,W,3) or (N,H,W,3) as a batch (N,H,W,3); clear errors otherwise."""
    if x.dtype != np.uint8:
        raise TypeError(f"{metric} expects uint8 RGB images, got {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (H,W,3) or (N,H,W,3), got shape {x.shape}")
    return x
