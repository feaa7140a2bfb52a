"""Frame synthesis: the generative decoders that turn structure + texture + reference into frames.

Every decoder implements `FrameSynthesizer`; the session decoder picks one by
name, so the same bitstream decodes with the warp decoder or a learned one.
"""

from .base import FrameSynthesizer, Reference, get_synthesizer
from .warp import WarpSynthesizer

__all__ = ["FrameSynthesizer", "Reference", "get_synthesizer", "WarpSynthesizer"]
