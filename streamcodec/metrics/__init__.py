"""Quality metrics for the codec: PSNR, SSIM, LPIPS and face-region crops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .image import face_box, face_crop, face_region, psnr, ssim

if TYPE_CHECKING:
    from .lpips import LPIPS
    from .weights import ensure_lpips_weights

__all__ = ["LPIPS", "psnr", "ssim", "face_region", "face_box", "face_crop",
           "ensure_lpips_weights"]

# Imported on first use: pixel metrics should not pay for importing torch, and
# `python -m streamcodec.metrics.weights` warns if the package already loaded it.
_LAZY = {"LPIPS": ".lpips", "ensure_lpips_weights": ".weights"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
