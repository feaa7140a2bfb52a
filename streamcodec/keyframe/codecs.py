"""Still-image codecs for the key frame (the reference face image of a stream).

Every codec takes and returns uint8 RGB HxWx3 (H, W even) and produces raw
bytes with as little container overhead as the format allows, because every
byte of the key frame counts in the stream's bitrate.

Quality is normalised so that a higher value is always a better image:

=====  ==  ==========  ===================================================
codec  id  quality     maps to
=====  ==  ==========  ===================================================
av1    1   0 .. 62     libsvtav1 ``crf = 63 - quality`` (crf 1..63)
webp   2   0 .. 100    libwebp ``quality`` (the same number)
jpeg   3   1 .. 100    libjpeg quality (the same number), via OpenCV
hevc   4   0 .. 51     libx265 ``crf = 51 - quality``
=====  ==  ==========  ===================================================

Colour: each codec gets planar BT.601 YCbCr made here (not by swscale), so the
chroma filters are the same for all codecs: 2x2 box average down,
bilinear up. AV1 and HEVC get 10-bit full range (10 bits measured ~+0.1-0.3 dB
PSNR at equal bytes on faces), WebP 8-bit limited range (what the WebP format
defines). JPEG goes through libjpeg's own conversion (see JpegCodec).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

import av
import cv2
import numpy as np

from .. import StreamcodecError

# SVT-AV1 prints its whole configuration to stderr for every encoder it opens
# unless told otherwise; one still image per key frame would flood the logs.
os.environ.setdefault("SVT_LOG", "1")


class KeyframeDecodeError(StreamcodecError):
    """The key-frame bytes are corrupt, truncated or not of the stated codec."""


class KeyframeEncodeError(StreamcodecError):
    """The image cannot be encoded (bad shape, or no quality fits the budget)."""


@runtime_checkable
class StillCodec(Protocol):
    name: str
    codec_id: int
    min_quality: int
    max_quality: int

    def encode(self, img: np.ndarray, quality: int) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


# ---------------------------------------------------------------- colour


_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_RGB_TO_YCC = np.array(
    [
        [_KR, _KG, _KB],
        [-_KR / (2 - 2 * _KB), -_KG / (2 - 2 * _KB), 0.5],
        [0.5, -_KG / (2 - 2 * _KR), -_KB / (2 - 2 * _KR)],
    ],
    dtype=np.float32,
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC).astype(np.float32)


@dataclass(frozen=True)
class _Yuv:
    bits: int
    full_range: bool

    @property
    def dtype(self) -> type:
        return np.uint16 if self.bits > 8 else np.uint8

    def scale(self) -> tuple[float, float, float, float]:
        """(luma scale, luma offset, chroma scale, chroma centre) in code values."""
        k = float(1 << (self.bits - 8))
        mx = float((1 << self.bits) - 1)
        if self.full_range:
            return mx, 0.0, mx, 128.0 * k
        return 219.0 * k, 16.0 * k, 224.0 * k, 128.0 * k


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise KeyframeEncodeError(f"expected uint8 HxWx3 RGB, got {getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
    h, w = img.shape[:2]
    if h % 2 or w % 2 or h < 16 or w < 16:
        raise KeyframeEncodeError(f"image sides must be even and >= 16, got {w}x{h}")


def rgb_to_yuv420(img: np.ndarray, fmt: _Yuv) -> np.ndarray:
    """RGB -> planar 4:2:0 packed as the (H*3/2, W) array PyAV's from_ndarray wants."""
    h, w = img.shape[:2]
    ycc = img.astype(np.float32) @ (_RGB_TO_YCC.T / 255.0)
    ys, yo, cs, cc = fmt.scale()
    mx = (1 << fmt.bits) - 1
    y = np.clip(np.rint(ycc[..., 0] * ys + yo), 0, mx)
    # INTER_AREA at exactly 1/2 is the 2x2 box average (centred chroma siting).
    uv = cv2.resize(ycc[..., 1:], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    uv = np.clip(np.rint(uv * cs + cc), 0, mx)
    planes = [y.ravel(), uv[..., 0].ravel(), uv[..., 1].ravel()]
    return np.concatenate(planes).astype(fmt.dtype).reshape(h * 3 // 2, w)


def yuv420_to_rgb(packed: np.ndarray, h: int, w: int, fmt: _Yuv) -> np.ndarray:
    flat = packed.reshape(-1)
    n, c = h * w, (h // 2) * (w // 2)
    ys, yo, cs, cc = fmt.scale()
    y = (flat[:n].reshape(h, w).astype(np.float32) - yo) / ys
    uv = np.stack([flat[n : n + c], flat[n + c : n + 2 * c]], axis=-1).reshape(h // 2, w // 2, 2)
    uv = (uv.astype(np.float32) - cc) / cs
    uv = cv2.resize(uv, (w, h), interpolation=cv2.INTER_LINEAR)
    ycc = np.concatenate([y[..., None], uv], axis=-1)
    rgb = ycc @ (_YCC_TO_RGB.T * 255.0)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- PyAV plumbing


_MAX_SIDE = 4096  # a decoded size beyond this means the header is garbage
# Make FFmpeg's decoders fail on bitstream errors instead of concealing them.
_STRICT = {"err_detect": "crccheck+bitstream+buffer+explode+careful+compliant+aggressive"}


@contextmanager
def keep_thread_scheduling() -> Iterator[None]:
    """Restores the calling thread's scheduling policy when the block ends.

    SVT-AV1, run as root (as here and in CI), switches the thread that opens an encoder to
    SCHED_FIFO and leaves it there. Every thread started from it afterwards inherits real-time
    priority; on two cores a busy real-time thread then starves everything else (the call's event
    loop stalls, other processes crawl). Wrap every encoder use in this.
    """
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # not Linux: nothing to restore
        yield
        return
    try:
        yield
    finally:
        if os.sched_getscheduler(0) != policy:
            os.sched_setscheduler(0, policy, param)


def _encode_one(encoder: str, img: np.ndarray, pix_fmt: str, fmt: _Yuv, options: dict[str, str]) -> bytes:
    with keep_thread_scheduling():
        return _encode_one_picture(encoder, img, pix_fmt, fmt, options)


def _encode_one_picture(encoder: str, img: np.ndarray, pix_fmt: str, fmt: _Yuv, options: dict[str, str]) -> bytes:
    h, w = img.shape[:2]
    cc = av.CodecContext.create(encoder, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, pix_fmt
    cc.time_base = Fraction(1, 25)
    cc.framerate = Fraction(25)
    cc.color_range = 2 if fmt.full_range else 1  # AVCOL_RANGE_JPEG / _MPEG
    cc.options = options
    frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(img, fmt), format=pix_fmt)
    frame.pts = 0
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    data = b"".join(bytes(p) for p in packets)
    if not data:
        raise KeyframeEncodeError(f"{encoder} produced no bytes")
    return data


def _decode_one(decoder: str, data: bytes, fmt: _Yuv, formats: tuple[str, ...]) -> np.ndarray:
    if not data:
        raise KeyframeDecodeError(f"{decoder}: empty key frame")
    try:
        cc = av.CodecContext.create(decoder, "r")
        cc.options = dict(_STRICT)
        frames = list(cc.decode(av.Packet(data))) + list(cc.decode(None))
    except (av.error.FFmpegError, ValueError, MemoryError) as exc:
        raise KeyframeDecodeError(f"{decoder}: cannot decode key frame ({exc})") from None
    if len(frames) != 1:
        raise KeyframeDecodeError(f"{decoder}: key frame decoded to {len(frames)} pictures, expected 1")
    frame = frames[0]
    if frame.is_corrupt:
        raise KeyframeDecodeError(f"{decoder}: decoder flagged the key frame as corrupt")
    h, w = frame.height, frame.width
    if frame.format.name not in formats or h % 2 or w % 2 or not (16 <= h <= _MAX_SIDE and 16 <= w <= _MAX_SIDE):
        raise KeyframeDecodeError(f"{decoder}: unexpected picture {w}x{h} {frame.format.name}")
    packed = np.concatenate([_plane(frame.planes[i], fmt, w >> (i > 0), h >> (i > 0)) for i in range(3)])
    return yuv420_to_rgb(packed, h, w, fmt)


def _plane(plane: av.video.plane.VideoPlane, fmt: _Yuv, w: int, h: int) -> np.ndarray:
    """Drop the decoder's row padding (line_size can exceed the visible width)."""
    buf = np.frombuffer(plane, dtype=fmt.dtype)
    stride = plane.line_size // np.dtype(fmt.dtype).itemsize
    return buf[: stride * h].reshape(h, stride)[:, :w].ravel()


def _check_quality(codec: StillCodec, quality: int) -> int:
    q = int(quality)
    if not codec.min_quality <= q <= codec.max_quality:
        raise ValueError(f"{codec.name}: quality {quality} outside {codec.min_quality}..{codec.max_quality}")
    return q


# ---------------------------------------------------------------- codecs


# An AV1 temporal unit starts with a 2-byte temporal delimiter OBU that carries
# nothing for a single picture; it is stripped on encode and put back on decode.
_AV1_TD = b"\x12\x00"


class Av1Codec:
    """AV1 intra picture: libsvtav1 encode, libdav1d decode, raw OBUs.

    preset 1 is the slowest preset that encodes 256x256 in < 0.5 s on 2 cores
    (measured ~0.2 s; preset 0 ~0.9 s for +0.2 dB). tune=3 is SVT-AV1's "IQ"
    still-image tune (as used for AVIF); on faces it beat the default tune by
    ~0.1-0.4 dB PSNR at equal bytes at preset 4 and is 5x faster to encode.
    """

    name = "av1"
    codec_id = 1
    min_quality = 0
    # crf 0 means "unset" to FFmpeg's libsvtav1 wrapper (it falls back to the
    # default crf), so the best usable setting is crf 1.
    max_quality = 62
    preset = 1
    _fmt = _Yuv(10, True)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        _check_image(img)
        crf = 63 - _check_quality(self, quality)
        opts = {"crf": str(crf), "preset": str(self.preset), "svtav1-params": "tune=3:color-range=1"}
        data = _encode_one("libsvtav1", img, "yuv420p10le", self._fmt, opts)
        return data[len(_AV1_TD) :] if data.startswith(_AV1_TD) else data

    def decode(self, data: bytes) -> np.ndarray:
        return _decode_one("libdav1d", _AV1_TD + bytes(data), self._fmt, ("yuv420p10le",))


class WebpCodec:
    """WebP lossy (VP8 intra): PyAV's libwebp encodes, libwebp via OpenCV decodes.

    Only the VP8 chunk payload is kept.

    The 20-byte RIFF/WEBP/'VP8 ' header is fixed apart from two sizes that
    follow from the payload length, so it is rebuilt on decode.
    """

    name = "webp"
    codec_id = 2
    min_quality = 0
    max_quality = 100
    _fmt = _Yuv(8, False)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        _check_image(img)
        q = _check_quality(self, quality)
        opts = {"quality": str(q), "compression_level": "6", "lossless": "0", "preset": "photo"}
        data = _encode_one("libwebp", img, "yuv420p", self._fmt, opts)
        if data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8 ":
            raise KeyframeEncodeError("libwebp did not produce a simple lossy WebP")
        size = int.from_bytes(data[16:20], "little")
        return data[20 : 20 + size]

    def decode(self, data: bytes) -> np.ndarray:
        data = bytes(data)
        pad = b"\x00" if len(data) % 2 else b""  # RIFF chunks are even-sized
        chunk = b"VP8 " + len(data).to_bytes(4, "little") + data + pad
        riff = b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk
        # libwebp (through OpenCV) rather than FFmpeg: FFmpeg's VP8 decoder
        # conceals a truncated token partition, libwebp reports it.
        bgr = cv2.imdecode(np.frombuffer(riff, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.ndim != 3 or bgr.shape[0] % 2 or bgr.shape[1] % 2:
            raise KeyframeDecodeError("webp: cannot decode key frame (corrupt or truncated)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class JpegCodec:
    """Baseline JPEG via OpenCV (libjpeg-turbo, optimised Huffman tables, 4:2:0).

    Not PyAV: FFmpeg's mjpeg stops at qscale 31, which still costs ~2.9 KB on a
    256x256 face, so it cannot reach the 1-2 KB budgets; libjpeg's quality
    1..100 can. The file keeps its JFIF headers (quant + Huffman tables, a few
    hundred bytes): that is the format's real cost at small budgets. libjpeg
    does its own colour conversion (full-range BT.601, like the others).
    """

    name = "jpeg"
    codec_id = 3
    min_quality = 1
    max_quality = 100
    _fmt = _Yuv(8, True)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        _check_image(img)
        q = _check_quality(self, quality)
        params = [
            cv2.IMWRITE_JPEG_QUALITY, q,
            cv2.IMWRITE_JPEG_OPTIMIZE, 1,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ]  # fmt: skip
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise KeyframeEncodeError("OpenCV could not encode the JPEG")
        return buf.tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        data = bytes(data)
        # libjpeg fills a missing tail with grey and only warns, so check the ends.
        if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
            raise KeyframeDecodeError("jpeg: truncated or not a JPEG (SOI/EOI marker missing)")
        # Decoded by FFmpeg (strict) so the chroma upsampling matches the other codecs.
        return _decode_one("mjpeg", data, self._fmt, ("yuvj420p", "yuv420p"))


class HevcCodec:
    """HEVC intra picture: libx265 (all-intra, 10-bit) encode, FFmpeg hevc decode, Annex B."""

    name = "hevc"
    codec_id = 4
    min_quality = 0
    max_quality = 51
    _fmt = _Yuv(10, True)

    def encode(self, img: np.ndarray, quality: int) -> bytes:
        _check_image(img)
        crf = 51 - _check_quality(self, quality)
        # info=0: x265 otherwise embeds its settings string (~1.5 KB) in an SEI.
        params = "log-level=error:info=0:keyint=1:range=full:repeat-headers=0:annexb=1"
        opts = {"crf": str(crf), "preset": "slower", "x265-params": params}
        return _encode_one("libx265", img, "yuv420p10le", self._fmt, opts)

    def decode(self, data: bytes) -> np.ndarray:
        return _decode_one("hevc", bytes(data), self._fmt, ("yuv420p10le",))


# ---------------------------------------------------------------- registry and rate control


CODECS: dict[int, StillCodec] = {c.codec_id: c for c in (Av1Codec(), WebpCodec(), JpegCodec(), HevcCodec())}
_BY_NAME: dict[str, StillCodec] = {c.name: c for c in CODECS.values()}


def get_codec(name_or_id: str | int) -> StillCodec:
    if isinstance(name_or_id, (int, np.integer)) and not isinstance(name_or_id, bool):
        codec = CODECS.get(int(name_or_id))
    else:
        codec = _BY_NAME.get(str(name_or_id).strip().lower())
    if codec is None:
        known = ", ".join(f"{c.codec_id}={c.name}" for c in CODECS.values())
        raise KeyError(f"unknown key-frame codec {name_or_id!r} (known: {known})")
    return codec


def encode_quality(codec: StillCodec, img: np.ndarray, quality: int) -> bytes:
    return codec.encode(img, _check_quality(codec, quality))


def encode_to_budget(codec: StillCodec, img: np.ndarray, max_bytes: int,
                     hint: int | None = None) -> tuple[bytes, int]:
    """Best quality whose encoding is <= max_bytes; returns (bytes, quality).

    Binary search assumes size grows with quality, which holds for these
    encoders up to small wiggles; a wiggle can only make the pick one step
    conservative, never over budget, because every candidate is measured.
    With `hint` (the quality the previous key frame of the stream got) the
    search walks from there instead: 2-3 encodes rather than ~7, which matters
    for AV1 at ~0.2 s an encode in a live call.
    """
    if hint is not None:
        return _walk_from(codec, img, max_bytes, int(np.clip(hint, codec.min_quality, codec.max_quality)))
    lo, hi = codec.min_quality, codec.max_quality
    best: tuple[bytes, int] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = codec.encode(img, mid)
        if len(data) <= max_bytes:
            best = (data, mid)
            lo = mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise KeyframeEncodeError(f"{codec.name}: even quality {codec.min_quality} exceeds {max_bytes} bytes")
    return best


def _walk_from(codec: StillCodec, img: np.ndarray, max_bytes: int, q: int) -> tuple[bytes, int]:
    data = codec.encode(img, q)
    if len(data) <= max_bytes:
        while q < codec.max_quality:
            nxt = codec.encode(img, q + 1)
            if len(nxt) > max_bytes:
                break
            data, q = nxt, q + 1
        return data, q
    while q > codec.min_quality:
        q -= 1
        data = codec.encode(img, q)
        if len(data) <= max_bytes:
            return data, q
    raise KeyframeEncodeError(f"{codec.name}: even quality {codec.min_quality} exceeds {max_bytes} bytes")
