"""Landmark extraction backends.

Every backend returns pixel coordinates (N, 3) (x, y, depth in the same unit as
x) for the largest face, plus the region layout the texture layer and the warp
decoder need. The codec never depends on which backend made the points beyond
the shape basis fitted for it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import cv2
import numpy as np

from .. import StreamcodecError

log = logging.getLogger(__name__)


class BackendUnavailable(StreamcodecError):
    """A landmark backend cannot run on this machine."""


@dataclass(frozen=True)
class FaceLayout:
    """Semantic polygons over a backend's landmark indices.

    `loops` are ordered closed contours; `hulls` are point sets whose convex hull is the region.
    """

    oval: tuple[int, ...]
    loops: dict[str, tuple[tuple[int, ...], ...]]
    hulls: dict[str, tuple[tuple[int, ...], ...]]
    inner_lips: tuple[int, ...]

    def mouth_area(self, lm: np.ndarray) -> float:
        """Area (square pixels) inside the inner lips: how far the mouth is open."""
        return _area(lm, self.inner_lips)

    def eye_area(self, lm: np.ndarray) -> float:
        """Area (square pixels) of both eye openings: small when the eyes close."""
        return sum(_area(lm, loop) for loop in self.loops["eyes"])


def layout_to_json(layout: FaceLayout) -> str:
    return json.dumps({"oval": layout.oval, "loops": layout.loops, "hulls": layout.hulls,
                       "inner_lips": layout.inner_lips})


def layout_from_json(text: str) -> FaceLayout:
    """The inverse of layout_to_json: a layout on a machine without the backend that defines it."""
    d = json.loads(text)
    groups = {k: {name: tuple(tuple(p) for p in polys) for name, polys in d[k].items()} for k in ("loops", "hulls")}
    return FaceLayout(oval=tuple(d["oval"]), inner_lips=tuple(d["inner_lips"]), **groups)


def _area(lm: np.ndarray, loop: tuple[int, ...]) -> float:
    return float(cv2.contourArea(lm[list(loop), :2].astype(np.float32)))


@dataclass
class Detection:
    points: np.ndarray  # (N, 3) float32 pixels
    faces: int  # how many faces the backend saw (the largest is returned)


class LandmarkBackend(Protocol):
    name: str
    backend_id: int
    num_points: int
    layout: FaceLayout

    def detect(self, image: np.ndarray) -> Detection | None: ...

    def reset(self) -> None: ...


def _order_loop(edges: frozenset[tuple[int, int]], start: int) -> tuple[int, ...]:
    """Walk a closed contour given as an undirected edge set, from `start`."""
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    loop, prev, cur = [start], None, start
    while True:
        nxt = [n for n in adj[cur] if n != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        loop.append(cur)
        if len(loop) > len(adj):
            raise ValueError("contour is not a simple loop")
    return tuple(loop)


def _component(edges: frozenset[tuple[int, int]], seed: int) -> frozenset[tuple[int, int]]:
    nodes, grown = {seed}, True
    while grown:
        grown = False
        for a, b in edges:
            if (a in nodes) != (b in nodes):
                nodes |= {a, b}
                grown = True
    return frozenset(e for e in edges if e[0] in nodes)


def _points_of(edges) -> tuple[int, ...]:
    return tuple(sorted({i for e in edges for i in e}))


def mediapipe_layout() -> FaceLayout:
    from mediapipe.python.solutions import face_mesh_connections as c

    lips_outer = _order_loop(_component(c.FACEMESH_LIPS, 61), 61)
    lips_inner = _order_loop(_component(c.FACEMESH_LIPS, 78), 78)
    eyes = (_order_loop(c.FACEMESH_LEFT_EYE, 263), _order_loop(c.FACEMESH_RIGHT_EYE, 33))
    return FaceLayout(
        oval=_order_loop(c.FACEMESH_FACE_OVAL, 10),
        loops={"lips": (lips_outer,), "mouth": (lips_inner,), "eyes": eyes},
        hulls={
            "brows": (_points_of(c.FACEMESH_LEFT_EYEBROW), _points_of(c.FACEMESH_RIGHT_EYEBROW)),
            "nose": (_points_of(c.FACEMESH_NOSE),),
        },
        inner_lips=lips_inner,
    )


class MediaPipeMesh:
    """mediapipe 0.10.14 face mesh, 478 points (refined eyes, lips, irises), tracking mode."""

    name = "mediapipe478"
    backend_id = 1
    num_points = 478

    def __init__(self, static: bool = False, max_faces: int = 3, verify: bool = True) -> None:
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - install problem
            raise BackendUnavailable(f"mediapipe is not installed: {exc}") from None
        self._mp = mp
        self._static = static
        self._max_faces = max_faces
        self._mesh = None
        # The mesh tracker keeps "tracking" a face over a hand or a blank patch; a face
        # detector pass (~1 ms, BlazeFace short range) confirms there is a face at all.
        self._verify = (mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
                        if verify else None)

    @cached_property
    def layout(self) -> FaceLayout:
        return mediapipe_layout()

    def _get(self):
        if self._mesh is None:
            self._mesh = self._mp.solutions.face_mesh.FaceMesh(
                static_image_mode=self._static, max_num_faces=self._max_faces,
                refine_landmarks=True, min_detection_confidence=0.5, min_tracking_confidence=0.5)
        return self._mesh

    def reset(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = None

    def detect(self, image: np.ndarray) -> Detection | None:
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image)
        seen = None
        if self._verify is not None:
            seen = len(self._verify.process(image).detections or [])
            if not seen:
                self.reset()  # re-detect from scratch when the face comes back
                return None
        res = self._get().process(image)
        faces = res.multi_face_landmarks or []
        if not faces:
            return None
        pts = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32) for f in faces]
        areas = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in pts]
        return Detection(pts[int(np.argmax(areas))], max(len(pts), seen or 0))


def dlib68_layout() -> FaceLayout:
    r = lambda a, b: tuple(range(a, b))  # noqa: E731
    jaw = r(0, 17)
    return FaceLayout(
        oval=jaw + (26, 25, 24, 23, 22, 21, 20, 19, 18, 17),
        loops={"lips": (r(48, 60),), "mouth": (r(60, 68),), "eyes": (r(36, 42), r(42, 48))},
        hulls={"brows": (r(17, 22), r(22, 27)), "nose": (r(27, 36),)},
        inner_lips=r(60, 68),
    )


class Dlib68:
    """dlib's 68-point shape predictor (HOG face detector), from face_recognition_models."""

    name = "dlib68"
    backend_id = 2
    num_points = 68
    layout = dlib68_layout()

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise BackendUnavailable(
                f"dlib backend needs `pip install dlib-bin face_recognition_models 'setuptools<81'` ({exc})") from None
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(frm.pose_predictor_model_location())
        self._dlib = dlib

    def reset(self) -> None:
        pass

    def detect(self, image: np.ndarray) -> Detection | None:
        rects = self._detector(np.ascontiguousarray(image), 0)
        if not rects:
            return None
        rect = max(rects, key=lambda r: r.area())
        shape = self._predictor(image, rect)
        pts = np.array([(p.x, p.y, 0.0) for p in shape.parts()], np.float32)
        return Detection(pts, len(rects))


class FaceAlignmentFAN:
    """face-alignment's FAN 68-point model: optional, its weights are downloaded by the package."""

    name = "fan68"
    backend_id = 3
    num_points = 68
    layout = dlib68_layout()

    def __init__(self) -> None:
        try:
            import face_alignment
        except ImportError:
            raise BackendUnavailable("face-alignment is not installed (pip install face-alignment)") from None
        try:
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.THREE_D, device="cpu")
        except Exception as exc:  # its loader fails in many ways when offline
            raise BackendUnavailable(
                "face-alignment could not load its FAN weights: they are fetched from the author's site "
                f"at first use and are not on this machine ({type(exc).__name__}: {exc})") from None

    def reset(self) -> None:
        pass

    def detect(self, image: np.ndarray) -> Detection | None:
        out = self._fa.get_landmarks_from_image(image)
        if not out:
            return None
        pts = max(out, key=lambda p: np.ptp(p[:, 0]) * np.ptp(p[:, 1]))
        return Detection(np.asarray(pts, np.float32), len(out))


BACKENDS = {"mediapipe478": MediaPipeMesh, "dlib68": Dlib68, "fan68": FaceAlignmentFAN}
BACKEND_IDS = {cls.backend_id: name for name, cls in BACKENDS.items()}


def get_backend(name: str) -> LandmarkBackend:
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendUnavailable(f"unknown landmark backend {name!r}; choose from {sorted(BACKENDS)}") from None
    return cls()
