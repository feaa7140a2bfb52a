"""Landmark backends on real frames."""

from __future__ import annotations

import numpy as np
import pytest

from streamcodec.structure.landmarks import BackendUnavailable, Dlib68, MediaPipeMesh, get_backend


def test_mediapipe_mesh_on_real_frames(talking_frames):
    mesh = MediaPipeMesh()
    det = mesh.detect(talking_frames[0])
    assert det is not None and det.points.shape == (478, 3) and det.faces == 1
    xy = det.points[:, :2]
    assert (xy > 0).all() and (xy < 256).all()
    # The prepared crop puts the face at ~60% of the width, centred.
    width = np.ptp(xy[:, 0])
    assert 100 < width < 200
    assert abs(xy[:, 0].mean() - 128) < 30
    # The layout's polygons index real points and the mouth sits below the eyes.
    lay = mesh.layout
    eyes_y = np.mean([xy[list(l), 1].mean() for l in lay.loops["eyes"]])
    assert xy[list(lay.inner_lips), 1].mean() > eyes_y + 20


def test_mediapipe_reports_no_face_on_blank_and_recovers(talking_frames):
    mesh = MediaPipeMesh()
    assert mesh.detect(talking_frames[0]) is not None
    assert mesh.detect(np.full_like(talking_frames[1], 90)) is None
    assert mesh.detect(talking_frames[2]) is not None


def test_dlib_backend_agrees_with_mediapipe(talking_frames):
    try:
        dlib = Dlib68()
    except BackendUnavailable as exc:
        pytest.fail(f"dlib backend is part of the install: {exc}")
    d = dlib.detect(talking_frames[0])
    m = MediaPipeMesh().detect(talking_frames[0])
    assert d is not None and d.points.shape == (68, 3)
    # Same face: the boxes of the two point sets overlap closely.
    for k in (0, 1):
        assert abs(d.points[:, k].mean() - m.points[:, k].mean()) < 15


def test_face_alignment_fails_clearly_without_weights():
    with pytest.raises(BackendUnavailable, match="face-alignment"):
        get_backend("fan68")


def test_unknown_backend():
    with pytest.raises(BackendUnavailable, match="unknown landmark backend"):
        get_backend("nope")
