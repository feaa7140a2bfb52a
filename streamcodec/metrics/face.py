"""Face-specific metrics: landmark (keypoint) distance and identity distance.

Both compare a decoded frame with its reference frame, frame by frame, on uint8
RGB images (H,W,3) or sequences (N,H,W,3):

* ``KeypointDistance``: mean pixel distance between the mediapipe face-mesh
  landmarks (478 points, x/y only) of the two frames.
* ``IdentityDistance``: Euclidean distance between dlib's ResNet face
  embeddings (the ``face_recognition`` model; 0.6 is its same-person threshold).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..structure.landmarks import MediaPipeMesh
from .image import as_frames, face_box

# dlib's frontal-face detector box, which its 5-point predictor was trained on,
# is about 0.91 of the mesh's landmark extent, centred within a few percent
# (measured on the first frames of the 18 bench clips). A negative margin in
# ``face_box`` gives that box from the mesh.
_DLIB_BOX_MARGIN = -0.045


def _pair(ref: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, d = as_frames(ref, "face metric"), as_frames(dec, "face metric")
    if r.shape != d.shape:
        raise ValueError(f"shape mismatch: {r.shape} vs {d.shape}")
    return r, d


def _mesh_points(mesh: MediaPipeMesh, img: np.ndarray) -> np.ndarray | None:
    det = mesh.detect(img)
    return None if det is None else det.points[:, :2].astype(np.float64)


@dataclass(frozen=True)
class KeypointReport:
    per_frame: np.ndarray  # (N,) pixels; NaN where either frame has no face
    mean: float  # mean over frames where both have a face; NaN if none
    # Of the frames whose reference has a face, the fraction where the decoded
    # one has none: a decode that destroys the face would otherwise only show
    # as NaNs that a mean silently skips.
    decoded_missing: float


class KeypointDistance:
    """Mean distance in pixels between the face-mesh landmarks of reference and decoded frames.

    The mesh runs in static mode so that every frame is detected on its own: in
    tracking mode a decoded frame would inherit the previous frame's estimate.
    """

    def __init__(self) -> None:
        self._mesh = MediaPipeMesh(static=True)

    def landmarks(self, img: np.ndarray) -> np.ndarray | None:
        """(478, 2) pixel x/y of the largest face, or None without a face."""
        return _mesh_points(self._mesh, img)

    def report(self, ref: np.ndarray, dec: np.ndarray) -> KeypointReport:
        refs, decs = _pair(ref, dec)
        dist = np.full(len(refs), np.nan)
        ref_faces = dec_missing = 0
        for i, (r, d) in enumerate(zip(refs, decs)):
            pr = self.landmarks(r)
            if pr is None:
                continue
            ref_faces += 1
            pd = self.landmarks(d)
            if pd is None:
                dec_missing += 1
                continue
            dist[i] = float(np.linalg.norm(pr - pd, axis=1).mean())
        both = dist[np.isfinite(dist)]
        return KeypointReport(
            per_frame=dist,
            mean=float(both.mean()) if len(both) else float("nan"),
            decoded_missing=dec_missing / ref_faces if ref_faces else float("nan"),
        )

    def __call__(self, ref: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Per-frame distances: a 0-d array for (H,W,3), (N,) for (N,H,W,3)."""
        d = self.report(ref, dec).per_frame
        return d.reshape(()) if ref.ndim == 3 else d


def _import_face_recognition_models() -> Any:
    # face_recognition_models locates its files with pkg_resources, which
    # setuptools deprecates with a UserWarning at import; nothing to act on here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated",
                                category=UserWarning)
        import face_recognition_models
    return face_recognition_models


class IdentityDistance:
    """Euclidean distance between dlib ResNet face embeddings of reference and decoded frames.

    The face box comes from the reference frame's mesh landmarks and is used for
    both frames, so a decode that garbles or moves the face is still measured
    where the face should be. Within that box the 5-point predictor aligns each
    frame on its own content, as the embedding model expects. NaN where the
    reference frame has no face.
    """

    def __init__(self, mesh: MediaPipeMesh | None = None) -> None:
        import dlib

        frm = _import_face_recognition_models()
        self._dlib = dlib
        self._mesh = mesh or MediaPipeMesh(static=True)
        self._shape5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def face_rect(self, ref_points: np.ndarray, shape: tuple[int, ...]) -> Any:
        """dlib.rectangle approximating dlib's detector box for these mesh landmarks."""
        x0, y0, x1, y1 = face_box(ref_points, shape, _DLIB_BOX_MARGIN)
        return self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)  # dlib's corners are inclusive

    def embedding(self, img: np.ndarray, rect: Any) -> np.ndarray:
        """128-d embedding of the face in ``rect``, aligned by the 5-point predictor."""
        img = np.ascontiguousarray(img)
        shape = self._shape5(img, rect)
        return np.asarray(self._encoder.compute_face_descriptor(img, shape), dtype=np.float64)

    def distance(self, ref: np.ndarray, dec: np.ndarray,
                 ref_points: np.ndarray | None = None) -> float:
        """One frame pair; ``ref_points`` skips the mesh pass when already known."""
        if ref_points is None:
            ref_points = _mesh_points(self._mesh, ref)
            if ref_points is None:
                return float("nan")
        rect = self.face_rect(ref_points, ref.shape)
        return float(np.linalg.norm(self.embedding(ref, rect) - self.embedding(dec, rect)))

    def __call__(self, ref: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Per-frame distances: a 0-d array for (H,W,3), (N,) for (N,H,W,3)."""
        refs, decs = _pair(ref, dec)
        d = np.array([self.distance(r, x) for r, x in zip(refs, decs)], dtype=np.float64)
        return d.reshape(()) if ref.ndim == 3 else d

    def reference(self, refs: np.ndarray) -> list[tuple[Any, np.ndarray] | None]:
        """Per reference frame (N,H,W,3): its face box and embedding (None: no face), computed once
        to score many decodings of the same frames with :meth:`against`."""
        out: list[tuple[Any, np.ndarray] | None] = []
        for r in refs:
            pts = _mesh_points(self._mesh, r)
            rect = None if pts is None else self.face_rect(pts, r.shape)
            out.append(None if rect is None else (rect, self.embedding(r, rect)))
        return out

    def against(self, reference: list[tuple[Any, np.ndarray] | None], decs: np.ndarray) -> np.ndarray:
        """(N,) distances of decoded frames to a :meth:`reference` of the same N frames."""
        if len(reference) != len(decs):
            raise ValueError(f"{len(reference)} reference frames but {len(decs)} decoded")
        return np.array([np.nan if r is None else float(np.linalg.norm(r[1] - self.embedding(d, r[0])))
                         for r, d in zip(reference, decs)], dtype=np.float64)
