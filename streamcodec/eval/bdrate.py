"""Bjontegaard delta rate (BD-rate) and rate-quality curve helpers.

A curve is a sequence of ``(rate, quality)`` pairs (rate in any positive unit,
e.g. kbps; the unit cancels). BD-rate follows the JCT-VC common-test-condition
sheet (JCTVC-L1100 and later, the "piecewise cubic" variant of VCEG-M33):

1. reduce each curve to its best envelope (points that improve quality as the
   rate grows; see :func:`envelope`),
2. take log(rate) as a function of quality and interpolate it with a monotone
   piecewise cubic Hermite interpolant (PCHIP),
3. integrate both interpolants over the overlapping quality range; the mean
   difference of log-rates ``d`` gives ``(exp(d) - 1) * 100`` percent.

Negative BD-rate = the test curve needs fewer bits than the anchor for the
same quality. For metrics where lower is better (LPIPS, DISTS, MSE) pass
``higher_is_better=False``: quality is negated internally, so the sign
convention of the result stays the same.

When the quality ranges do not overlap (or a curve has fewer than two useful
points) there is no meaningful number and the functions return ``None``.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

Point = tuple[float, float]  # (rate, quality)
Curve = Sequence[Point]

__all__ = ["bd_rate", "bd_quality", "envelope", "rate_at_quality", "quality_at_rate"]


def _clean(points: Iterable[Point]) -> list[Point]:
    out = []
    for p in points:
        r, q = float(p[0]), float(p[1])
        if not (math.isfinite(r) and math.isfinite(q)):
            continue
        if r <= 0:
            raise ValueError(f"rates must be positive for a log-rate curve, got {r}")
        out.append((r, q))
    return out


def envelope(points: Iterable[Point], higher_is_better: bool = True, convex: bool = False) -> list[Point]:
    """Best envelope of rate-quality points, sorted by rate.

    `points` may pool several curves (e.g. a codec's full-resolution,
    half-resolution and half-frame-rate sweeps); the result is the operating
    points nobody beats: a point is kept only if its quality is strictly better
    than that of every point at the same or a lower rate. That makes quality
    strictly increasing with rate, which the log-rate(quality) interpolation
    needs. Quality is returned in the caller's sense (not negated).

    With ``convex=True`` the envelope is further reduced to its upper convex
    hull in (log-rate, quality): the points reachable by a rate-switching
    encoder. BD-rate uses the plain monotone envelope (the default).
    """
    sign = 1.0 if higher_is_better else -1.0
    pts = sorted(_clean(points), key=lambda p: (p[0], -sign * p[1]))
    out: list[Point] = []
    for r, q in pts:
        if not out or sign * q > sign * out[-1][1]:
            if out and out[-1][0] == r:  # same rate, better quality: cannot happen after the sort
                out.pop()
            out.append((r, q))
    if convex and len(out) > 2:
        hull: list[tuple[float, float, Point]] = []
        for r, q in out:
            x, y = math.log(r), sign * q
            while len(hull) >= 2:
                (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
                # Drop the middle point if it lies on or below the chord.
                if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:
                    hull.pop()
                else:
                    break
            hull.append((x, y, (r, q)))
        out = [p for _, _, p in hull]
    return out


def _log_rate_of_quality(curve: Curve, higher_is_better: bool) -> tuple[PchipInterpolator, float, float] | None:
    env = envelope(curve, higher_is_better)
    if len(env) < 2:
        return None
    sign = 1.0 if higher_is_better else -1.0
    q = np.array([sign * p[1] for p in env])
    lr = np.log(np.array([p[0] for p in env]))
    return PchipInterpolator(q, lr, extrapolate=False), float(q[0]), float(q[-1])


def bd_rate(anchor: Curve, test: Curve, higher_is_better: bool = True) -> float | None:
    """Average rate difference of `test` against `anchor` in percent, or None.

    None when either curve has fewer than two envelope points or their quality
    ranges do not overlap (a single shared quality value is no overlap).
    """
    a = _log_rate_of_quality(anchor, higher_is_better)
    t = _log_rate_of_quality(test, higher_is_better)
    if a is None or t is None:
        return None
    lo, hi = max(a[1], t[1]), min(a[2], t[2])
    if not hi > lo:
        return None
    d = (t[0].integrate(lo, hi) - a[0].integrate(lo, hi)) / (hi - lo)
    return float((math.exp(d) - 1.0) * 100.0)


def bd_quality(anchor: Curve, test: Curve, higher_is_better: bool = True) -> float | None:
    """Average quality difference (test - anchor, e.g. BD-PSNR in dB) over the overlapping log-rate range.

    Positive = test is better for higher-is-better metrics; for lower-is-better
    metrics the result is the plain difference of the metric (negative =
    test better). None when the rate ranges do not overlap.
    """
    sign = 1.0 if higher_is_better else -1.0
    curves = []
    for c in (anchor, test):
        env = envelope(c, higher_is_better)
        if len(env) < 2:
            return None
        lr = np.log(np.array([p[0] for p in env]))
        q = np.array([sign * p[1] for p in env])
        curves.append((PchipInterpolator(lr, q, extrapolate=False), lr[0], lr[-1]))
    (fa, a0, a1), (ft, t0, t1) = curves
    lo, hi = max(a0, t0), min(a1, t1)
    if not hi > lo:
        return None
    return float(sign * (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo))


def rate_at_quality(curve: Curve, target: float, higher_is_better: bool = True) -> float | None:
    """Rate the curve needs to reach quality `target` (PCHIP in log-rate), or None if it never does.

    If even the curve's lowest-rate point already meets the target, that
    point's rate is returned: the lowest rate measured that reaches it (the
    curve says nothing about rates below its lowest point).
    """
    env = envelope(curve, higher_is_better)
    if not env:
        return None
    sign = 1.0 if higher_is_better else -1.0
    t = sign * float(target)
    q = [sign * p[1] for p in env]
    if t > q[-1]:
        return None
    if t <= q[0]:
        return env[0][0]
    f = _log_rate_of_quality(env, higher_is_better)
    assert f is not None  # >= 2 points here
    return float(math.exp(float(f[0](t))))


def quality_at_rate(curve: Curve, rate: float, higher_is_better: bool = True) -> float | None:
    """Best quality the curve reaches at or below `rate` (PCHIP in log-rate), None below its lowest rate."""
    env = envelope(curve, higher_is_better)
    if not env or rate < env[0][0]:
        return None
    if rate >= env[-1][0]:
        return env[-1][1]
    lr = np.log(np.array([p[0] for p in env]))
    q = np.array([p[1] for p in env])
    return float(PchipInterpolator(lr, q)(math.log(rate)))
