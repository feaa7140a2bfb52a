"""Bjontegaard delta rate: published worked example, analytic cases, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamcodec.eval.bdrate import bd_quality, bd_rate, envelope, quality_at_rate, rate_at_quality

# "Test 1" of the FAU-LMS bjontegaard package (libx265 at two presets, kbps / dB).
# Expected values: that package's PCHIP method (v1.3.0), which its authors
# checked against the JCT-VC / JVET CTC Excel sheet to 10 decimals.
ANCHOR = list(zip([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]))
TEST = list(zip([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]))
# "Sample 1" of the VCEG-M33 reference implementations, same tool.
ANCHOR_2 = list(zip([686.76, 309.58, 157.11, 85.95], [40.28, 37.18, 34.24, 31.42]))
TEST_2 = list(zip([893.34, 407.8, 204.93, 112.75], [40.39, 37.21, 34.17, 31.24]))


def test_matches_ctc_sheet_example():
    assert bd_rate(ANCHOR, TEST) == pytest.approx(-4.417485350589045, abs=1e-8)
    assert bd_quality(ANCHOR, TEST) == pytest.approx(0.11969278542479489, abs=1e-8)
    assert bd_rate(ANCHOR_2, TEST_2) == pytest.approx(31.379878202397627, abs=1e-8)
    assert bd_quality(ANCHOR_2, TEST_2) == pytest.approx(-1.1834724046224592, abs=1e-8)


def test_point_order_does_not_matter():
    assert bd_rate(ANCHOR[::-1], TEST[1::-1] + TEST[2:]) == pytest.approx(bd_rate(ANCHOR, TEST), abs=1e-12)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_constant_rate_factor_is_exact(factor):
    anchor = [(r, q) for r, q in ANCHOR_2]
    test = [(r * factor, q) for r, q in anchor]
    assert bd_rate(anchor, test) == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert bd_rate(test, anchor) == pytest.approx((1 / factor - 1) * 100, abs=1e-9)


def test_analytic_log_curve_with_offset_grid():
    # q = 10 log10(r) + c: any rate factor k shifts quality by 10 log10(k).
    rates = np.geomspace(2, 100, 7)
    anchor = [(r, 10 * math.log10(r) + 20) for r in rates]
    test = [(r, 10 * math.log10(r) + 20 + 3.0) for r in np.geomspace(1.5, 120, 6)]  # different grid
    expected = (10 ** (-3.0 / 10) - 1) * 100  # ~ -49.9 %
    assert bd_rate(anchor, test) == pytest.approx(expected, abs=1e-6)
    assert bd_quality(anchor, test) == pytest.approx(3.0, abs=1e-6)


def test_lower_is_better_metric():
    # LPIPS-like: falls with rate. Test costs 20% less at every quality.
    rates = np.array([2.0, 5.0, 10.0, 30.0, 90.0])
    lp = 0.5 - 0.08 * np.log(rates)
    anchor = list(zip(rates, lp))
    test = list(zip(rates * 0.8, lp))
    assert bd_rate(anchor, test, higher_is_better=False) == pytest.approx(-20.0, abs=1e-9)
    # Without the flag the "envelope" of a falling curve is a single point: no answer.
    assert bd_rate(anchor, test) is None
    shifted = list(zip(rates, lp - 0.01))
    assert bd_quality(anchor, shifted, higher_is_better=False) == pytest.approx(-0.01, abs=1e-9)


def test_no_overlap_gives_none():
    far = [(r, q + 50) for r, q in ANCHOR]
    assert bd_rate(ANCHOR, far) is None
    touching = [(r, q + (40.037 - 34.851)) for r, q in ANCHOR]  # shares one quality value only
    assert bd_rate(ANCHOR, touching) is None
    assert bd_rate(ANCHOR, ANCHOR[:1]) is None
    assert bd_rate([], ANCHOR) is None


def test_envelope_drops_dominated_points():
    pts = [(10, 30.0), (20, 29.0), (30, 33.0), (30, 32.0), (40, 33.0), (50, 35.0), (5, 31.0)]
    assert envelope(pts) == [(5.0, 31.0), (30.0, 33.0), (50.0, 35.0)]
    lower = [(r, -q) for r, q in pts]
    assert envelope(lower, higher_is_better=False) == [(5.0, -31.0), (30.0, -33.0), (50.0, -35.0)]
    # NaN / inf points are ignored; non-positive rates are an error.
    assert envelope([(1, float("nan")), (2, 3.0)]) == [(2.0, 3.0)]
    with pytest.raises(ValueError):
        envelope([(0, 1.0), (1, 2.0)])


def test_envelope_convex_hull():
    pts = [(1, 10.0), (2, 10.5), (4, 14.0), (8, 15.5)]
    # (2, 10.5) lies below the chord from (1, 10) to (4, 14) in log-rate.
    assert envelope(pts, convex=True) == [(1.0, 10.0), (4.0, 14.0), (8.0, 15.5)]
    assert envelope(pts) == [(1.0, 10.0), (2.0, 10.5), (4.0, 14.0), (8.0, 15.5)]


def test_non_monotonic_curve_uses_envelope():
    bumpy = ANCHOR + [(3000.0, 36.0)]  # worse than the 2486 kbps point: dominated
    assert bd_rate(bumpy, TEST) == pytest.approx(bd_rate(ANCHOR, TEST), abs=1e-12)


def test_envelope_merges_variants():
    full = [(20.0, 34.0), (40.0, 37.0), (80.0, 40.0)]
    half = [(5.0, 28.0), (10.0, 31.0), (20.0, 33.0), (40.0, 35.0)]
    assert envelope(full + half) == [(5.0, 28.0), (10.0, 31.0), (20.0, 34.0), (40.0, 37.0), (80.0, 40.0)]


def test_rate_at_quality():
    curve = [(r, 10 * math.log10(r)) for r in (1, 10, 100)]
    assert rate_at_quality(curve, 10.0) == pytest.approx(10.0)
    assert rate_at_quality(curve, 15.0) == pytest.approx(10**1.5, rel=1e-9)  # exact: log-linear data
    assert rate_at_quality(curve, 20.5) is None
    assert rate_at_quality(curve, -3.0) == 1.0  # already met by the lowest point
    assert rate_at_quality([], 1.0) is None
    lp = [(1.0, 0.5), (10.0, 0.3), (100.0, 0.1)]
    assert rate_at_quality(lp, 0.3, higher_is_better=False) == pytest.approx(10.0)
    assert rate_at_quality(lp, 0.05, higher_is_better=False) is None


def test_quality_at_rate():
    curve = [(r, 10 * math.log10(r)) for r in (1, 10, 100)]
    assert quality_at_rate(curve, 10**1.5) == pytest.approx(15.0)
    assert quality_at_rate(curve, 0.5) is None
    assert quality_at_rate(curve, 1000.0) == pytest.approx(20.0)
