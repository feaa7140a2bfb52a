"""Tests for MS-SSIM, DISTS and the face metrics (keypoint and identity distance)."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest

from streamcodec.metrics import DISTS, IdentityDistance, KeypointDistance, ms_ssim, ssim
from streamcodec.metrics import weights as W
from streamcodec.metrics.image import MS_SSIM_WEIGHTS, ms_ssim_scales

from .test_metrics import FACE_VIDEO, _read_rgb, _shared_file

# mediapipe (via protobuf) warns on every mesh call; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*GetPrototype")

# A second person, for identity distances between different people.
OTHER_VIDEO = "data/faces/bench/OpenTalker__SadTalker__test_examples_source_image_RD_Radio34_000.mp4"
# Published in dingkeyan93/DISTS (DISTS_pt.py) for images/r0.png vs r1.png.
DISTS_REFERENCE = 0.3347
# Landmarks around the face in the first frame of FACE_VIDEO (as test_metrics uses).
FACE_PTS = np.array([[220.0, 60.0], [375.0, 300.0]])


def _first_frame(rel: str) -> np.ndarray:
    av = pytest.importorskip("av")
    with av.open(str(_shared_file(rel))) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _shift_x(img: np.ndarray, k: float) -> np.ndarray:
    m = np.float32([[1, 0, k], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return _first_frame(FACE_VIDEO)


@pytest.fixture(scope="module")
def face256(frame: np.ndarray) -> np.ndarray:
    from streamcodec.metrics import face_region

    return face_region(frame, FACE_PTS, size=256)


@pytest.fixture(scope="module")
def dists() -> DISTS:
    return DISTS()


# --- MS-SSIM ---------------------------------------------------------------------

def test_ms_ssim_scales_fit_the_image() -> None:
    assert ms_ssim_scales((256, 256, 3)) == 5
    assert ms_ssim_scales((128, 128, 3)) == 4  # 8x8 at the fifth scale: no 11x11 window
    assert ms_ssim_scales((12, 40)) == 1
    assert sum(MS_SSIM_WEIGHTS) == pytest.approx(1.0, abs=2e-4)  # as published


@pytest.mark.parametrize("size", [256, 128])
def test_ms_ssim_identical_and_ordering(face256: np.ndarray, size: int) -> None:
    img = cv2.resize(face256, (size, size), interpolation=cv2.INTER_AREA)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(4)
    blurred = [cv2.GaussianBlur(img, (0, 0), s) for s in (0.8, 1.6, 3.2)]
    noisy = [np.clip(img + rng.normal(0, s, img.shape), 0, 255).astype(np.uint8)
             for s in (4.0, 12.0, 36.0)]
    for series in (blurred, noisy):
        ms = [ms_ssim(img, x) for x in series]
        ss = [ssim(img, x) for x in series]
        assert 1.0 > ms[0] > ms[1] > ms[2] > 0.0, ms
        # Same ordering as SSIM along each series.
        assert np.array_equal(np.argsort(ms), np.argsort(ss))


def test_ms_ssim_is_on_luma() -> None:
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    other = cv2.GaussianBlur(grey, (0, 0), 1.0)
    rgb = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    assert ms_ssim(rgb(grey), rgb(other)) == pytest.approx(ms_ssim(grey, other), abs=1e-9)


# --- DISTS weights -------------------------------------------------------------

def test_dists_weights_refuse_foreign_pickles() -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError):
        W.load_dists_alpha_beta(pickle.dumps(Evil(), protocol=2))


def test_dists_weights_check_shapes() -> None:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"alpha": torch.zeros(1, 3, 1, 1), "beta": torch.zeros(1, 3, 1, 1)}, buf)
    with pytest.raises(W.WeightsError):
        W.load_dists_alpha_beta(buf.getvalue())


def test_dists_wheel_hash_mismatch_is_rejected(tmp_path) -> None:  # noqa: ANN001
    fake = tmp_path / W.DISTS_WHEEL_NAME
    fake.write_bytes(b"not the wheel")
    with pytest.raises(W.WeightsError):
        W.read_dists_wheel(fake)


def test_dists_weights_land_in_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path))
    assert W.dists_weights_path() == tmp_path / "dists" / "alpha_beta.safetensors"


# --- DISTS -----------------------------------------------------------------------

def test_dists_matches_published_value(dists: DISTS) -> None:
    r0, r1 = (_read_rgb(_shared_file(f"data/metric_refs/{n}.png")) for n in ("r0", "r1"))
    assert r0.shape == (256, 256, 3)
    assert float(dists(r0, r1)) == pytest.approx(DISTS_REFERENCE, abs=0.002)


def test_dists_identical_is_zero_and_grows_with_blur(dists: DISTS, face256: np.ndarray) -> None:
    face = cv2.resize(face256, (128, 128), interpolation=cv2.INTER_AREA)
    sigmas = [0.0, 0.8, 1.6, 3.2, 6.4]
    blurred = np.stack([cv2.GaussianBlur(face, (0, 0), s) if s else face for s in sigmas])
    d = dists(np.repeat(face[None], len(sigmas), axis=0), blurred)
    assert d[0] == pytest.approx(0.0, abs=1e-5)
    assert np.all(np.diff(d) > 0), d
    assert d[1] > 0.01
    # A pair alone gives the same number as inside a batch.
    assert float(dists(face, blurred[2])) == pytest.approx(float(d[2]), abs=1e-5)


def test_dists_rejects_float_input(dists: DISTS) -> None:
    with pytest.raises(TypeError):
        dists(np.zeros((32, 32, 3)), np.zeros((32, 32, 3)))


# --- face metrics ------------------------------------------------------------------

@pytest.fixture(scope="module")
def keypoints() -> KeypointDistance:
    return KeypointDistance()


def test_keypoint_distance_zero_and_follows_a_shift(keypoints: KeypointDistance,
                                                    frame: np.ndarray) -> None:
    assert float(keypoints(frame, frame)) == pytest.approx(0.0, abs=0.05)
    shifts = [3.0, 8.0]
    d = keypoints(np.stack([frame, frame]), np.stack([_shift_x(frame, k) for k in shifts]))
    assert d.shape == (2,)
    for k, dk in zip(shifts, d):
        assert abs(dk - k) < max(1.0, 0.25 * k), (k, dk)


def test_keypoint_report_counts_lost_faces(keypoints: KeypointDistance,
                                           frame: np.ndarray) -> None:
    blank = np.full_like(frame, 128)
    rep = keypoints.report(np.stack([frame, frame]), np.stack([frame, blank]))
    assert rep.per_frame[0] == pytest.approx(0.0, abs=0.05) and np.isnan(rep.per_frame[1])
    assert rep.decoded_missing == 0.5
    assert rep.mean == pytest.approx(rep.per_frame[0])


def test_identity_distance_same_vs_different_person(keypoints: KeypointDistance,
                                                    frame: np.ndarray) -> None:
    ident = IdentityDistance()
    assert float(ident(frame, frame)) == pytest.approx(0.0, abs=1e-6)
    assert float(ident(frame, _jpeg(frame, 50))) < 0.3
    # Two people: a crop of each at the same size, so one box fits both.
    other = _first_frame(OTHER_VIDEO)
    pts = keypoints.landmarks(frame)
    pts_other = keypoints.landmarks(other)
    assert pts is not None and pts_other is not None
    from streamcodec.metrics import face_region

    a = face_region(frame, pts, size=256, margin=0.3)
    b = face_region(other, pts_other, size=256, margin=0.3)
    assert float(ident(a, b)) > 0.5


@pytest.mark.parametrize("metric", ["dists", "lpips_vgg"])
def test_cached_reference_scores_equal_direct_ones(face256: np.ndarray, dists: DISTS, metric: str) -> None:
    """The benchmark embeds each clip's reference frames once; the distances must be the same."""
    from streamcodec.metrics import LPIPS

    net = dists if metric == "dists" else LPIPS("vgg")
    rng = np.random.default_rng(3)
    ref = np.stack([face256, np.flip(face256, 1), face256[::-1]] * 3)  # 9 frames: two batches of 8
    dec = np.clip(ref.astype(np.int16) + rng.integers(-25, 26, ref.shape), 0, 255).astype(np.uint8)
    direct = net(ref, dec)
    cached = net(net.reference(ref), dec)
    assert direct.shape == (9,) and np.all(direct > 0.005)
    np.testing.assert_allclose(cached, direct, rtol=1e-4, atol=1e-6)
    assert float(net(net.reference(ref[0]), dec[0])) == pytest.approx(float(direct[0]), rel=1e-4)
    with pytest.raises(ValueError, match="shape mismatch"):
        net(net.reference(ref[:4]), dec)
