"""Reading and writing video with PyAV (and PNG folders)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from .. import StreamcodecError

log = logging.getLogger(__name__)


class VideoReadError(StreamcodecError):
    """The input cannot be read as a video."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int | None


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: the file is empty")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoReadError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: contains no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise VideoReadError(f"{path}: folder holds no PNG frames")
        h, w = cv2.imread(str(files[0])).shape[:2]
        return VideoInfo(w, h, 25.0, len(files))
    with _open(path) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        return VideoInfo(s.codec_context.width, s.codec_context.height, float(rate), s.frames or None)


def iter_frames(path: str | Path) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time in seconds, RGB uint8 frame); a PNG folder plays at 25 fps."""
    path = Path(path)
    if path.is_dir():
        for i, f in enumerate(sorted(path.glob("*.png"))):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoReadError(f"{f}: unreadable PNG")
            yield i / 25.0, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return
    container = _open(path)
    n = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else n / rate
            n += 1
            yield t, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        if n == 0:
            raise VideoReadError(f"{path}: cannot decode video ({exc})") from None
        log.warning("%s: decoding stopped after %d frames: %s", path, n, exc)
    finally:
        container.close()
    if n == 0:
        raise VideoReadError(f"{path}: the video has no frames")


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    out = []
    for _, f in iter_frames(path):
        out.append(f)
        if max_frames is not None and len(out) >= max_frames:
            break
    return np.stack(out)


_LOSSLESS = {".mkv": ("ffv1", "bgr0"), ".y4m": ("rawvideo", "yuv420p")}


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0, crf: int = 16) -> int:
    """Write RGB frames; the extension picks the format.

    .mp4: H.264 for viewing; .mkv: FFV1 (lossless RGB); .y4m: raw 4:2:0 (the only
    chroma layout many y4m readers accept, Chromium's fake camera among them);
    a path without extension (or ending in '/'): a folder of PNGs.
    """
    path = Path(path)
    if path.suffix == "" or str(path).endswith("/"):
        path.mkdir(parents=True, exist_ok=True)
        n = 0
        for n, f in enumerate(frames, 1):
            cv2.imwrite(str(path / f"{n - 1:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        return n
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(path), "w") as c:
        stream = None
        for f in frames:
            if stream is None:
                codec, pix = _LOSSLESS.get(path.suffix, ("libx264", "yuv420p"))
                stream = c.add_stream(codec, rate=rate)
                stream.width, stream.height = f.shape[1], f.shape[0]
                stream.pix_fmt = pix
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "medium"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for p in stream.encode(frame):
                c.mux(p)
            n += 1
        if stream is not None:
            for p in stream.encode():
                c.mux(p)
    return n
