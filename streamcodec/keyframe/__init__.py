"""Key-frame (reference image) still codecs and rate control."""

from .codecs import (
    CODECS,
    Av1Codec,
    HevcCodec,
    JpegCodec,
    KeyframeDecodeError,
    KeyframeEncodeError,
    StillCodec,
    WebpCodec,
    encode_quality,
    encode_to_budget,
    get_codec,
)

__all__ = [
    "CODECS",
    "Av1Codec",
    "HevcCodec",
    "JpegCodec",
    "KeyframeDecodeError",
    "KeyframeEncodeError",
    "StillCodec",
    "WebpCodec",
    "encode_quality",
    "encode_to_budget",
    "get_codec",
]
