"""Classical-codec baselines: round trips on a short real clip, rate accounting, variants."""

from __future__ import annotations

import numpy as np
import pytest

from streamcodec.eval import baselines
from streamcodec.eval.baselines import CODECS, VARIANTS, encode_decode
from streamcodec.metrics.image import psnr

from .conftest import TALKING

# Parameters a little below each codec's middle: cheap, clearly lossy.
PARAM = {"libx264": 36, "libx265": 36, "libsvtav1": 50, "libvpx-vp9": 50}
COARSER = {"libx264": 51, "libx265": 51, "libsvtav1": 63, "libvpx-vp9": 63}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    from streamcodec.io.prepare import PrepareConfig, prepare_frames

    frames = np.stack(list(prepare_frames(TALKING, PrepareConfig(size=256, max_frames=12))))
    assert frames.shape == (12, 256, 256, 3)
    return frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([psnr(x, y) for x, y in zip(a, b)]))


@pytest.mark.parametrize("codec", list(CODECS))
def test_round_trip_and_rate_falls_with_quantiser(clip, codec):
    point, dec = encode_decode(clip, codec, PARAM[codec])
    assert dec.shape == clip.shape and dec.dtype == np.uint8
    assert point.codec == codec and point.variant == "full" and point.param == PARAM[codec]
    assert point.bytes > 0 and point.frames == point.coded_frames == 12
    assert point.keyframes == 1
    assert point.kbps == pytest.approx(point.bytes * 8 / (12 / 25) / 1000)
    assert point.encode_s > 0 and point.decode_s > 0
    q = _psnr(clip, dec)
    assert 28.0 < q < 50.0, q
    coarse, dec2 = encode_decode(clip, codec, COARSER[codec])
    assert coarse.bytes < point.bytes
    assert _psnr(clip, dec2) < q


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "full"])
@pytest.mark.parametrize("codec", list(CODECS))
def test_variants_give_full_size_full_length_output(clip, codec, variant):
    full, _ = encode_decode(clip, codec, PARAM[codec])
    point, dec = encode_decode(clip, codec, PARAM[codec], variant)
    assert dec.shape == clip.shape and dec.dtype == np.uint8
    assert point.variant == variant and point.frames == 12
    assert point.coded_frames == (6 if variant == "half_fps" else 12)
    assert 0 < point.bytes < full.bytes
    # Rate is over the whole clip's duration in every variant.
    assert point.kbps == pytest.approx(point.bytes * 8 / (12 / 25) / 1000)
    assert _psnr(clip, dec) > 24.0
    if variant == "half_fps":
        assert np.array_equal(dec[0::2], dec[1::2])


def test_counted_bytes_are_what_the_decoder_gets(clip):
    """Stripping SEI (H.264) and temporal delimiters (AV1) changes no decoded pixel."""
    for codec in ("libx264", "libsvtav1"):
        spec = CODECS[codec]
        packets, _ = baselines.encode(clip[:6], codec, PARAM[codec])
        raw = baselines._Codec(spec.encoder, spec.decoder, spec.bits, spec.param_range, spec.options, None)
        CODECS[codec] = raw
        try:
            packets_raw, _ = baselines.encode(clip[:6], codec, PARAM[codec])
        finally:
            CODECS[codec] = spec
        assert sum(map(len, packets)) < sum(map(len, packets_raw))
        assert np.array_equal(baselines.decode(packets, codec), baselines.decode(packets_raw, codec))


def test_sweeps_and_bad_input(clip):
    for codec, spec in CODECS.items():
        for variant in VARIANTS:
            sweep = baselines.default_sweep(codec, variant)
            lo, hi = spec.param_range
            assert 5 <= len(sweep) <= 9 and all(lo <= p <= hi for p in sweep)
            assert sweep == sorted(sweep, reverse=True)  # coarsest (lowest rate) first
    with pytest.raises(KeyError):
        baselines.default_sweep("mpeg2video")
    with pytest.raises(ValueError):
        encode_decode(clip, "libx264", 30, "quarter_res")
    with pytest.raises(ValueError):
        encode_decode(clip, "libx264", 99)
    with pytest.raises(ValueError):
        encode_decode(clip.astype(np.float32), "libx264", 30)
