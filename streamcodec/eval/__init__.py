"""Evaluation suite: classical-codec baselines and Bjontegaard-delta comparisons."""

from .baselines import BaselinePoint, default_sweep, encode_decode
from .bdrate import bd_quality, bd_rate, envelope, quality_at_rate, rate_at_quality

__all__ = ["BaselinePoint", "default_sweep", "encode_decode", "bd_rate", "bd_quality", "envelope",
           "rate_at_quality", "quality_at_rate"]
