"""Preparation: any video -> face-centred square crop, 25 fps, working size.

One crop box serves the whole clip (a moving crop would add motion the codec
has to pay for); it comes from face detection on frames sampled across the clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .. import StreamcodecError
from .video import iter_frames, probe

log = logging.getLogger(__name__)


class NoFaceError(StreamcodecError):
    """No face was found in the sampled frames of a clip."""


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 256
    fps: float = 25.0
    face_fraction: float = 0.6  # face width / crop width
    max_frames: int | None = None
    detect_samples: int = 24
    vertical_offset: float = 0.1  # shift the box up by this fraction of the face: hair matters more than neck


@dataclass(frozen=True)
class CropBox:
    """Square crop in normalised source coordinates (survives a resolution change)."""

    cx: float
    cy: float
    side: float  # in units of the source width

    def pixels(self, w: int, h: int) -> tuple[int, int, int]:
        side = max(2, int(round(self.side * w)))
        x0 = int(round(self.cx * w - side / 2))
        y0 = int(round(self.cy * h - side / 2))
        return x0, y0, side


def _detector():
    import mediapipe as mp

    return mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


def detect_faces(detector, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes (x, y, w, h) in normalised coordinates, largest first."""
    h, w = frame.shape[:2]
    scale = min(1.0, 640 / max(h, w))
    small = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else frame
    res = detector.process(np.ascontiguousarray(small))
    boxes = []
    for d in res.detections or []:
        b = d.location_data.relative_bounding_box
        boxes.append((b.xmin, b.ymin, b.width, b.height))
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def find_crop_box(path: str | Path, cfg: PrepareConfig) -> CropBox:
    info = probe(path)
    total = info.frames or int(10 * info.fps)
    if cfg.max_frames:
        total = min(total, int(cfg.max_frames * info.fps / cfg.fps) + 1)
    step = max(1, total // cfg.detect_samples)
    boxes, several = [], 0
    with _detector() as det:
        for i, (_, frame) in enumerate(iter_frames(path)):
            if i % step:
                continue
            if i > total:
                break
            found = detect_faces(det, frame)
            if len(found) > 1:
                several += 1
            if found:
                x, y, bw, bh = found[0]
                h, w = frame.shape[:2]
                # Aspect-correct: express everything in units of the width.
                boxes.append((x + bw / 2, y + bh / 2, bw, bh * h / w))
    if not boxes:
        raise NoFaceError(f"{path}: no face found in {cfg.detect_samples} sampled frames")
    if several:
        log.warning("%s: several faces in %d sampled frames; using the largest", path, several)
    b = np.median(np.array(boxes), axis=0)
    cx, cy, fw = float(b[0]), float(b[1]), float(b[2])
    aspect = info.height / info.width
    cy -= cfg.vertical_offset * b[3] / aspect
    return CropBox(cx, cy, fw / cfg.face_fraction)


def crop_frame(frame: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    x0, y0, side = box.pixels(w, h)
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = frame[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def resample(frames: Iterator[tuple[float, np.ndarray]], fps: float) -> Iterator[np.ndarray]:
    """Nearest-earlier-frame resampling to a constant rate (drops or repeats frames)."""
    k = 0
    prev: tuple[float, np.ndarray] | None = None
    t0 = None
    for t, f in frames:
        if t0 is None:
            t0 = t
        t -= t0
        while prev is not None and k / fps < t - 0.5 / fps + 1e-9:
            yield prev[1]
            k += 1
        prev = (t, f)
    if prev is not None:
        # The last frame covers one frame period.
        while k / fps <= prev[0] + 1e-9:
            yield prev[1]
            k += 1


def prepare_frames(path: str | Path, cfg: PrepareConfig = PrepareConfig()) -> Iterator[np.ndarray]:
    """Yield prepared RGB frames of `path`."""
    box = find_crop_box(path, cfg)
    shape = None
    n = 0
    for frame in resample(iter_frames(path), cfg.fps):
        if shape is not None and frame.shape != shape:
            log.warning("%s: resolution changed from %s to %s at frame %d; crop box kept in relative terms",
                        path, shape[1::-1], frame.shape[1::-1], n)
        shape = frame.shape
        yield crop_frame(frame, box, cfg.size)
        n += 1
        if cfg.max_frames is not None and n >= cfg.max_frames:
            return


def is_prepared(path: str | Path, cfg: PrepareConfig) -> bool:
    info = probe(path)
    return info.width == info.height == cfg.size and abs(info.fps - cfg.fps) < 0.01


def prepare_video(path: str | Path, out: str | Path, cfg: PrepareConfig = PrepareConfig()) -> int:
    from tqdm import tqdm

    from .video import write_video

    frames = tqdm(prepare_frames(path, cfg), desc=f"prepare {Path(path).name}", unit="f", leave=False)
    return write_video(out, frames, cfg.fps)
