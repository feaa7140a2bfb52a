"""Quality metrics for the codec: PSNR, SSIM, MS-SSIM, LPIPS, DISTS, face metrics, face crops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .image import face_box, face_crop, face_region, ms_ssim, psnr, ssim

if TYPE_CHECKING:
    from .dists import DISTS
    from .face import IdentityDistance, KeypointDistance, KeypointReport
    from .lpips import LPIPS
    from .weights import ensure_dists_weights, ensure_lpips_weights

__all__ = ["LPIPS", "DISTS", "KeypointDistance", "KeypointReport", "IdentityDistance",
           "psnr", "ssim", "ms_ssim", "face_region", "face_box", "face_crop",
           "ensure_lpips_weights", "ensure_dists_weights"]

# Imported on first use: pixel metrics should not pay for importing torch, and
# `python -m streamcodec.metrics.weights` warns if the package already loaded it.
# The face metrics also defer mediapipe and dlib.
_LAZY = {"LPIPS": ".lpips", "DISTS": ".dists", "KeypointDistance": ".face",
         "KeypointReport": ".face", "IdentityDistance": ".face",
         "ensure_lpips_weights": ".weights", "ensure_dists_weights": ".weights"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
