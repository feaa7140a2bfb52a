"""Texture layer: semantic regions and their texture codes.

A texture codec turns per-region statistics into a compact code and back; the
colour-statistics codec is v1, a learned encoder will implement the same calls.
"""

from .colour import TEXTURE_CODECS, ColourStatsCodec, RegionStats, drift
from .regions import REGIONS, PersonSegmenter, region_masks, region_means, ycbcr

__all__ = ["TEXTURE_CODECS", "ColourStatsCodec", "RegionStats", "drift", "REGIONS", "PersonSegmenter",
           "region_masks", "region_means", "ycbcr"]
