"""Classical video codecs as baselines: encode a prepared clip, count its bits, decode it back.

Input: prepared RGB frames, ``(T, 256, 256, 3)`` uint8 at 25 fps (see
``streamcodec.io.prepare``). Output: a :class:`BaselinePoint` (exact size and
rate of the elementary stream, timings) and the decoded frames at the input's
size and length.

Rate accounting
    ``bytes`` is the sum of the encoded packets: the elementary stream with no
    container, but everything a decoder needs (parameter sets / sequence
    headers travel in-band in the first packet because no global header is
    requested; ``extradata`` is counted too if an encoder ever sets it). Two
    pieces that carry nothing a decoder uses are removed, as a container
    would store them or a practitioner would configure them away:

    * H.264: SEI NAL units. x264 always writes its settings string (~0.6 KB) as
      a user-data SEI; at 3 kbps for 10 s that alone is ~15% of the rate. x265
      is told not to write it (``info=0``).
    * AV1: temporal-delimiter OBUs (2 bytes a frame), which ISOBMFF/Matroska
      strip too; dav1d decodes the stream without them.

    The decoder is fed exactly the counted bytes, in order, so nothing that is
    needed can be left out unnoticed. ``kbps = bytes * 8 / duration / 1000``
    with the duration of the whole clip (``T / 25`` s) in every variant.

Encoder settings (best quality at low rate, single-pass constant quality)
    * One key frame for the whole clip: infinite GOP, scene-cut key frames off
      (x264 ``keyint=infinite:scenecut=0``, x265 ``keyint=-1:scenecut=0``,
      SVT-AV1 ``keyint=-1:scd=0``, VP9 ``g = keyint_min`` beyond the clip).
      A talking head has no cuts; every extra intra frame is pure cost.
    * Reordering left at each preset's (deep) defaults: B-pyramids / hidden
      alt-refs are where these encoders win most on static-camera content.
    * x264 ``preset=veryslow tune=ssim`` (measured better than the default
      psy tuning on PSNR and SSIM, see :data:`X264_TUNE`).
    * x265 ``preset=slower``, ``info=0`` (no settings SEI), frame-threads=1
      (frame threading costs compression; WPP keeps both cores busy).
    * SVT-AV1 ``preset`` = :data:`SVTAV1_PRESET` (measured, see there).
    * VP9 ``deadline=good cpu-used=1 lag-in-frames=25 auto-alt-ref=1``, CQ mode
      (``crf`` with ``b=0``), q range 0..63 so the coarsest quantiser is reachable.
    * 4:2:0. AV1 10-bit (measured -3.3% BD-rate PSNR, -9.2% SSIM vs 8-bit,
      +15% encode time); HEVC 8-bit (10-bit measured +0.0% PSNR, -2.3% SSIM
      for ~1.7x the encode time); H.264 and VP9 8-bit (this VP9 build has no
      high-bit-depth input formats; 10-bit H.264 is a niche profile).
    * Threads fixed (:data:`THREADS`) so sizes do not depend on the machine's
      core count (x264's and libvpx's output depends on the thread count).

Colour: BT.601 limited range, converted here with the key-frame codecs'
converter (2x2 box chroma down, bilinear up), so every codec of the project
sees the same YCbCr.

Variants a practitioner uses to go below a codec's lowest full-size rate:
    ``half_res``: 128x128 (``cv2.INTER_AREA`` down), decoded frames upscaled
    back to 256 with :data:`UPSCALE` (measured, see there).
    ``half_fps``: 12.5 fps (frames 0, 2, 4, ... encoded with a 2/25 s frame
    duration), each decoded frame shown twice; rate over the whole clip.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Callable

import av
import cv2
import numpy as np

from ..keyframe.codecs import _Yuv, keep_thread_scheduling, rgb_to_yuv420, yuv420_to_rgb

log = logging.getLogger(__name__)

# SVT-AV1 prints its configuration to stderr for every encoder it opens.
os.environ.setdefault("SVT_LOG", "1")

FPS = 25
THREADS = 2
VARIANTS = ("full", "half_res", "half_fps")
#: half_res upscaler. Lanczos-4 measured +0.03 dB (x264) / +0.12 dB (SVT-AV1)
#: PSNR over bicubic and +0.1-0.7 dB over bilinear at ~29 kbps on a bench clip.
UPSCALE = cv2.INTER_LANCZOS4
#: SVT-AV1 preset, measured on a 250-frame bench clip (2 cores), crf 63..39:
#: preset 6: +4.3% BD-rate (PSNR) vs 5, 0.7 s a point; 5: 1.2 s; 4: -2.0%, 1.6 s;
#: 3: -3.7% (SSIM -4.7%), 2.7 s. 3 is still far cheaper than x265 slower
#: (~6-9 s a point), so the extra 2% is worth it.
SVTAV1_PRESET = 3
#: x264 tune. Measured on a 250-frame bench clip, crf 51..27: tune=ssim
#: -6.4% BD-rate (PSNR) and -6.2% (SSIM) against the default psy tuning
#: (psy-rd off, aq-mode 2 auto-variance AQ). None = x264's default tuning.
X264_TUNE: str | None = "ssim"


class BaselineError(RuntimeError):
    """An encoder or decoder misbehaved (no output, wrong frame count, bad picture)."""


@dataclass(frozen=True)
class BaselinePoint:
    codec: str  # encoder name, e.g. "libx264"
    variant: str  # "full", "half_res" or "half_fps"
    param: int  # crf / cq level
    bytes: int  # elementary-stream bytes (see module doc)
    kbps: float  # bytes * 8 / clip duration / 1000
    encode_s: float  # wall time of the encoder (colour conversion included)
    decode_s: float
    frames: int = 0  # input frames (the clip's length)
    coded_frames: int = 0  # frames given to the encoder
    keyframes: int = 0  # packets flagged as key frames (1 expected)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Codec:
    encoder: str
    decoder: str
    bits: int
    param_range: tuple[int, int]  # (finest, coarsest)
    options: Callable[[int], dict[str, str]]
    strip: Callable[[bytes], bytes] | None = None

    @property
    def pix_fmt(self) -> str:
        return "yuv420p10le" if self.bits > 8 else "yuv420p"


# ---------------------------------------------------------------- bitstream trimming


def _annexb_nals(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream into NAL units (start codes removed)."""
    starts = []
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    nals = []
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:e]
        if k + 1 < len(starts):
            nal = nal.rstrip(b"\x00")  # trailing zero of a 4-byte start code
        nals.append(nal)
    return nals


def _strip_h264_sei(data: bytes) -> bytes:
    nals = [x for x in _annexb_nals(data) if x and (x[0] & 0x1F) != 6]
    return b"".join(b"\x00\x00\x00\x01" + x if i == 0 else b"\x00\x00\x01" + x for i, x in enumerate(nals))


def _strip_av1_td(data: bytes) -> bytes:
    # obu_type 2 (temporal delimiter) with has_size_field and size 0.
    return data[2:] if data[:2] == b"\x12\x00" else data


# ---------------------------------------------------------------- codec table


def _x264(crf: int) -> dict[str, str]:
    params = f"keyint=infinite:scenecut=0:threads={THREADS}:log=-1"
    opts = {"preset": "veryslow", "crf": str(crf), "x264-params": params}
    if X264_TUNE:
        opts["tune"] = X264_TUNE
    return opts


def _x265(crf: int) -> dict[str, str]:
    params = (f"log-level=error:info=0:keyint=-1:scenecut=0:annexb=1"
              f":pools={THREADS}:frame-threads=1")
    return {"preset": "slower", "crf": str(crf), "x265-params": params}


def _svtav1(crf: int) -> dict[str, str]:
    return {"preset": str(SVTAV1_PRESET), "crf": str(crf), "svtav1-params": f"keyint=-1:scd=0:lp={THREADS}"}


def _vp9(cq: int) -> dict[str, str]:
    return {
        "deadline": "good", "cpu-used": "1", "lag-in-frames": "25", "auto-alt-ref": "1",
        "crf": str(cq), "b": "0", "qmin": "0", "qmax": "63",
        "g": "100000", "keyint_min": "100000",
        "row-mt": "1", "threads": str(THREADS), "tile-columns": "0",
    }  # fmt: skip


CODECS: dict[str, _Codec] = {
    "libx264": _Codec("libx264", "h264", 8, (0, 51), _x264, _strip_h264_sei),
    "libx265": _Codec("libx265", "hevc", 8, (0, 51), _x265),
    "libsvtav1": _Codec("libsvtav1", "libdav1d", 10, (1, 63), _svtav1, _strip_av1_td),
    "libvpx-vp9": _Codec("libvpx-vp9", "libvpx-vp9", 8, (0, 63), _vp9),
}

# Parameter sweeps (coarsest first), chosen on bench clips so each curve runs
# from the codec's lowest reachable rate up to ~100 kbps at 256x256/25 fps.
_SWEEPS: dict[tuple[str, str], list[int]] = {
    ("libx264", "full"): [51, 46, 41, 36, 31, 26, 21],
    ("libx265", "full"): [51, 46, 41, 36, 31, 26, 21],
    ("libsvtav1", "full"): [63, 56, 49, 42, 35, 28, 21],
    ("libvpx-vp9", "full"): [63, 56, 49, 42, 35, 28, 21],
    # The reduced variants only matter below the full-size curve's low end.
    ("libx264", "half_res"): [51, 47, 43, 39, 35, 31],
    ("libx265", "half_res"): [51, 47, 43, 39, 35, 31],
    ("libsvtav1", "half_res"): [63, 58, 53, 48, 43, 38],
    ("libvpx-vp9", "half_res"): [63, 58, 53, 48, 43, 38],
    ("libx264", "half_fps"): [51, 47, 43, 39, 35, 31],
    ("libx265", "half_fps"): [51, 47, 43, 39, 35, 31],
    ("libsvtav1", "half_fps"): [63, 58, 53, 48, 43, 38],
    ("libvpx-vp9", "half_fps"): [63, 58, 53, 48, 43, 38],
}


def default_sweep(codec: str, variant: str = "full") -> list[int]:
    """Quality parameters for a rate sweep of `codec` in `variant`, coarsest (lowest rate) first."""
    _codec(codec)
    _check_variant(variant)
    return list(_SWEEPS[(codec, variant)])


def _codec(name: str) -> _Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise KeyError(f"unknown baseline codec {name!r} (known: {', '.join(CODECS)})") from None


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")


# ---------------------------------------------------------------- encode / decode


def _plane(plane, dtype, w: int, h: int) -> np.ndarray:
    buf = np.frombuffer(plane, dtype=dtype)
    stride = plane.line_size // np.dtype(dtype).itemsize
    return buf[: stride * h].reshape(h, stride)[:, :w].ravel()


def encode(frames: np.ndarray, codec: str, param: int, fps: Fraction = Fraction(FPS)) -> tuple[list[bytes], int]:
    """Encode RGB frames; returns (packets in decode order, number of key-frame packets)."""
    with keep_thread_scheduling():  # SVT-AV1 would leave this thread real-time
        return _encode(frames, codec, param, fps)


def _encode(frames: np.ndarray, codec: str, param: int, fps: Fraction) -> tuple[list[bytes], int]:
    spec = _codec(codec)
    lo, hi = spec.param_range
    if not lo <= int(param) <= hi:
        raise ValueError(f"{codec}: parameter {param} outside {lo}..{hi}")
    t, h, w = frames.shape[:3]
    fmt = _Yuv(spec.bits, False)
    cc = av.CodecContext.create(spec.encoder, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, spec.pix_fmt
    cc.time_base = 1 / fps
    cc.framerate = fps
    cc.color_range = 1  # MPEG / limited
    cc.options = spec.options(int(param))
    packets: list[bytes] = []
    keys = 0

    def take(pkts) -> None:
        nonlocal keys
        for p in pkts:
            data = bytes(p)
            if spec.strip is not None:
                data = spec.strip(data)
            keys += bool(p.is_keyframe)
            packets.append(data)

    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(np.ascontiguousarray(img), fmt), format=spec.pix_fmt)
        frame.pts = i
        take(cc.encode(frame))
    take(cc.encode(None))
    extra = cc.extradata
    if extra:
        # Never seen without GLOBAL_HEADER, but if an encoder puts headers
        # there they are part of the cost: prepend them to the first packet.
        packets[0] = bytes(extra) + packets[0]
    if not packets or not any(packets):
        raise BaselineError(f"{codec} produced no packets")
    return packets, keys


def decode(packets: list[bytes], codec: str) -> np.ndarray:
    """Decode raw packets (in order) to RGB frames, (N, H, W, 3) uint8."""
    spec = _codec(codec)
    fmt = _Yuv(spec.bits, False)
    dtype = fmt.dtype
    cc = av.CodecContext.create(spec.decoder, "r")
    cc.thread_count = THREADS
    out = []

    def take(frames) -> None:
        for f in frames:
            if f.format.name != spec.pix_fmt:
                raise BaselineError(f"{spec.decoder}: decoded {f.format.name}, expected {spec.pix_fmt}")
            w, hh = f.width, f.height
            packed = np.concatenate([_plane(f.planes[i], dtype, w >> (i > 0), hh >> (i > 0)) for i in range(3)])
            out.append(yuv420_to_rgb(packed, hh, w, fmt))

    for data in packets:
        if data:
            take(cc.decode(av.Packet(data)))
    take(cc.decode(None))
    if not out:
        raise BaselineError(f"{spec.decoder} decoded no frames")
    return np.stack(out)


def encode_decode(frames: np.ndarray, codec: str, param: int, variant: str = "full") -> tuple[BaselinePoint, np.ndarray]:
    """Encode `frames` with `codec` at `param` in `variant`; returns (point, decoded RGB frames).

    The decoded frames always have the input's shape: half_res is upscaled
    back, half_fps repeats each decoded frame.
    """
    _check_variant(variant)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    t, h, w = frames.shape[:3]
    fps = Fraction(FPS)
    t0 = time.perf_counter()
    if variant == "half_res":
        if h % 4 or w % 4:
            raise ValueError(f"half_res needs sides divisible by 4, got {w}x{h}")
        src = np.stack([cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for f in frames])
    elif variant == "half_fps":
        src = frames[::2]
        fps = Fraction(FPS, 2)
    else:
        src = frames
    packets, keys = encode(src, codec, param, fps)
    t1 = time.perf_counter()
    dec = decode(packets, codec)
    if len(dec) != len(src):
        raise BaselineError(f"{codec}: {len(src)} frames encoded, {len(dec)} decoded")
    if variant == "half_res":
        dec = np.stack([cv2.resize(f, (w, h), interpolation=UPSCALE) for f in dec])
    elif variant == "half_fps":
        dec = np.repeat(dec, 2, axis=0)[:t]
    t2 = time.perf_counter()
    if dec.shape != frames.shape:
        raise BaselineError(f"{codec}: decoded {dec.shape}, expected {frames.shape}")
    if keys != 1:
        log.warning("%s %s param %s: %d key frames in %d frames", codec, variant, param, keys, len(src))
    nbytes = sum(len(p) for p in packets)
    kbps = nbytes * 8 / (t / FPS) / 1000
    point = BaselinePoint(codec, variant, int(param), nbytes, kbps, t1 - t0, t2 - t1, t, len(src), keys)
    return point, dec
