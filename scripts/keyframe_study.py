#!/usr/bin/env python
"""Which still-image codec should carry the key frame? Rate-quality study on face crops.

For frame 0 of every clip in the bench folder: detect the face (MediaPipe),
crop a centred square of side face_width / 0.6, resize to 256x256, then encode
with every key-frame codec to each byte budget, decode, and measure.

Writes docs/results/keyframe_codec.md and docs/results/keyframe_codec.png.

    python scripts/keyframe_study.py [--bench DIR] [--size 256] [--out docs/results]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamcodec.keyframe import CODECS, KeyframeEncodeError, StillCodec, encode_to_budget  # noqa: E402

BUDGETS = (1000, 1500, 2000, 3000, 4500, 6000)
FACE_FRACTION = 0.6  # face width / crop width
VIDEO_EXTS = (".mp4", ".mov", ".mpg")


# ---------------------------------------------------------------- metrics


def _load_metrics():
    """PSNR/SSIM from streamcodec.metrics when present; LPIPS-alex only if it loads."""
    try:
        from streamcodec.metrics import psnr, ssim
    except ImportError:

        def psnr(a: np.ndarray, b: np.ndarray) -> float:
            mse = float(np.mean((a.astype(np.float64) - b) ** 2))
            return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)

        ssim = None
    lpips = None
    try:
        from streamcodec.metrics import LPIPS

        net = LPIPS("alex")
        lpips = lambda a, b: float(np.asarray(net(a, b)).reshape(-1)[0])  # noqa: E731
    except Exception as exc:  # the metric is optional; say why it is missing
        print(f"LPIPS unavailable ({type(exc).__name__}: {exc}); PSNR/SSIM only", file=sys.stderr)
    return psnr, ssim, lpips


# ---------------------------------------------------------------- crops


def first_frame(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise RuntimeError(f"{path}: no frames")


def face_square(img: np.ndarray, detector) -> tuple[int, int, int, bool]:
    """(x0, y0, side) of the crop; falls back to a centre crop if no face is found."""
    h, w = img.shape[:2]
    res = detector.process(img)
    if not res.detections:
        s = min(h, w)
        return (w - s) // 2, (h - s) // 2, s, False
    det = max(res.detections, key=lambda d: d.score[0])
    bb = det.location_data.relative_bounding_box
    cx, cy = (bb.xmin + bb.width / 2) * w, (bb.ymin + bb.height / 2) * h
    side = int(round(min(bb.width * w / FACE_FRACTION, h, w)))
    # Shift (not shrink) the square to stay inside the frame, keeping the face scale.
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return x0, y0, side, True


def load_crops(bench: Path, size: int) -> list[tuple[str, np.ndarray, bool]]:
    import mediapipe as mp

    files = sorted(p for p in bench.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    out = []
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as det:
        for f in files:
            img = first_frame(f)
            x0, y0, s, found = face_square(img, det)
            crop = cv2.resize(img[y0 : y0 + s, x0 : x0 + s], (size, size), interpolation=cv2.INTER_AREA)
            out.append((f.name, np.ascontiguousarray(crop), found))
    return out


# ---------------------------------------------------------------- measurement


@dataclass
class Result:
    codec: str
    budget: int
    clip: str
    nbytes: int
    quality: int
    psnr: float
    ssim: float
    lpips: float
    enc_ms: float
    dec_ms: float


def measure(codec: StillCodec, clip: str, img: np.ndarray, budget: int, metrics) -> Result | None:
    psnr, ssim, lpips = metrics
    try:
        data, q = encode_to_budget(codec, img, budget)
    except KeyframeEncodeError:
        return None
    # Time one encode at the chosen quality: the search cost is reported separately.
    t0 = time.perf_counter()
    codec.encode(img, q)
    enc_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    rec = codec.decode(data)
    dec_ms = (time.perf_counter() - t0) * 1e3
    return Result(
        codec.name, budget, clip, len(data), q, psnr(img, rec),
        ssim(img, rec) if ssim else float("nan"),
        lpips(img, rec) if lpips else float("nan"),
        enc_ms, dec_ms,
    )  # fmt: skip


def search_ms(codec: StillCodec, img: np.ndarray, budget: int) -> float:
    t0 = time.perf_counter()
    try:
        encode_to_budget(codec, img, budget)
    except KeyframeEncodeError:
        pass
    return (time.perf_counter() - t0) * 1e3


# ---------------------------------------------------------------- report


def _med(rs: list[Result], key: str) -> float:
    vals = [getattr(r, key) for r in rs]
    return float(np.median(vals)) if vals else float("nan")


def _cell(x: float, fmt: str) -> str:
    return "–" if np.isnan(x) else format(x, fmt)


def summary(results: list[Result]) -> dict[tuple[str, int], dict[str, float]]:
    """Medians per (codec, budget), only over clips every codec could fit (a fair comparison)."""
    ok = {(r.clip, r.budget) for r in results}
    for name in {r.codec for r in results}:
        ok &= {(r.clip, r.budget) for r in results if r.codec == name}
    out = {}
    for name in sorted({r.codec for r in results}):
        for b in BUDGETS:
            rs = [r for r in results if r.codec == name and r.budget == b and (r.clip, b) in ok]
            fit = sum(1 for r in results if r.codec == name and r.budget == b)
            out[name, b] = {k: _med(rs, k) for k in ("psnr", "ssim", "lpips", "nbytes", "enc_ms", "dec_ms")}
            out[name, b]["n"] = len(rs)
            out[name, b]["fit"] = fit
    return out


def bytes_for_psnr(summ, name: str, target: float) -> float:
    """Log-interpolated median bytes the codec needs for a median PSNR (nan outside its range)."""
    pts = sorted((summ[name, b]["psnr"], summ[name, b]["nbytes"]) for b in BUDGETS if summ[name, b]["n"])
    q = np.array([p[0] for p in pts])
    nb = np.log([p[1] for p in pts])
    if len(q) < 2 or not q[0] <= target <= q[-1]:
        return float("nan")
    return float(np.exp(np.interp(target, q, nb)))


def conclusion(summ, names: list[str]) -> list[str]:
    lines = []
    wins = {}
    for b in BUDGETS:
        ranked = sorted(names, key=lambda n: -summ[n, b]["psnr"])
        wins[b] = ranked
        best, second = ranked[0], ranked[1]
        gain = summ[best, b]["psnr"] - summ[second, b]["psnr"]
        need = bytes_for_psnr(summ, second, summ[best, b]["psnr"])
        extra = f"; {second} needs ~{need:.0f} B (+{100 * (need / summ[best, b]['nbytes'] - 1):.0f}%) for the same PSNR" if not np.isnan(need) else ""
        lpips_note = ""
        if not np.isnan(summ[best, b]["lpips"]):
            lp_best = min(names, key=lambda n: summ[n, b]["lpips"])
            lpips_note = f"; lowest LPIPS: {lp_best}"
        lines.append(f"- {b} B: **{best}** {summ[best, b]['psnr']:.2f} dB, +{gain:.2f} dB over {second}{extra}{lpips_note}.")
    overall = max(names, key=lambda n: sum(wins[b][0] == n for b in BUDGETS))
    n_won = sum(wins[b][0] == overall for b in BUDGETS)
    lines.insert(0, f"**{overall}** has the best median PSNR at {n_won} of {len(BUDGETS)} budgets.")
    return lines


def write_report(path: Path, results: list[Result], crops, search: dict[str, float], cmd: str, elapsed: float) -> None:
    names = sorted({r.codec for r in results}, key=lambda n: [c.name for c in CODECS.values()].index(n))
    summ = summary(results)
    uname = " ".join(platform.uname())
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    has_lpips = not all(np.isnan(r.lpips) for r in results)
    size = crops[0][1].shape[0]
    L = [
        "# Key-frame still codec study",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: `{uname}`, nproc {os.cpu_count()}",
        f"- command: `{cmd}` ({elapsed:.0f} s)",
        f"- input: frame 0 of {len(crops)} clips in the bench folder, MediaPipe face box, square side = face width / {FACE_FRACTION},"
        f" resized to {size}x{size} (INTER_AREA); {sum(not c[2] for c in crops)} clip(s) without a detected face used a centre crop.",
        "- each codec: `encode_to_budget` (binary search for the best quality with size <= budget), decode, compare to the crop.",
        "- codecs: " + "; ".join(f"{c.name} (id {c.codec_id}, quality {c.min_quality}..{c.max_quality})" for c in CODECS.values()
                                  if c.name in names),
        "- medians over the clips every codec could fit into the budget (n); 'fit' = clips the codec could fit at all.",
        f"- metrics: PSNR over the whole RGB image, SSIM (mean over RGB){', LPIPS-alex (lower is better)' if has_lpips else ''}.",
        "",
        "## Median quality and size per budget",
        "",
        "| budget B | codec | n | fit | bytes | PSNR dB | SSIM | LPIPS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for b in BUDGETS:
        for n in names:
            s = summ[n, b]
            L.append(f"| {b} | {n} | {s['n']:.0f} | {s['fit']:.0f} | {_cell(s['nbytes'], '.0f')} | {_cell(s['psnr'], '.2f')} |"
                     f" {_cell(s['ssim'], '.4f')} | {_cell(s['lpips'], '.4f')} |")
    L += [
        "",
        "## Median times (ms, all budgets pooled)",
        "",
        "| codec | encode (one, at the chosen quality) | budget search (all encodes, at 2000 B) | decode |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        rs = [r for r in results if r.codec == n]
        L.append(f"| {n} | {_med(rs, 'enc_ms'):.1f} | {search[n]:.0f} | {_med(rs, 'dec_ms'):.1f} |")
    L += ["", "## Conclusion", ""] + conclusion(summ, names)
    L += ["", "![quality vs bytes](keyframe_codec.png)", ""]
    path.write_text("\n".join(L))


def write_plot(path: Path, results: list[Result]) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in CODECS.values() if any(r.codec == c.name for r in results)]
    summ = summary(results)
    has_lpips = not all(np.isnan(r.lpips) for r in results)
    panels = [("psnr", "median PSNR (dB)"), ("lpips" if has_lpips else "ssim", "median LPIPS-alex (lower=better)" if has_lpips else "median SSIM")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, label) in zip(axes, panels):
        for n in names:
            pts = [(summ[n, b]["nbytes"], summ[n, b][key]) for b in BUDGETS if summ[n, b]["n"]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=n)
        ax.set_xscale("log")
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if key == "lpips":
            ax.set_yscale("log")  # the spread that matters is at small distances
        ax.set_xlabel("median key-frame size (bytes)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.suptitle("Key-frame codecs on 256x256 face crops")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", type=Path, default=Path("/work/shared/data/faces/bench"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "results")
    ap.add_argument("--codecs", default=",".join(c.name for c in CODECS.values()))
    ap.add_argument("--max-clips", type=int, default=0, help="0 = all")
    args = ap.parse_args(argv)
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    t_start = time.time()
    metrics = _load_metrics()
    crops = load_crops(args.bench, args.size)
    if args.max_clips:
        crops = crops[: args.max_clips]
    codecs = [c for c in CODECS.values() if c.name in args.codecs.split(",")]
    results: list[Result] = []
    for clip, img, found in crops:
        for codec in codecs:
            for b in BUDGETS:
                r = measure(codec, clip, img, b, metrics)
                if r is not None:
                    results.append(r)
        print(f"{clip}: done ({'face' if found else 'no face, centre crop'})", file=sys.stderr, flush=True)
    search = {c.name: float(np.median([search_ms(c, img, 2000) for _, img, _ in crops[:6]])) for c in codecs}
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out / "keyframe_codec.md", results, crops, search, cmd, time.time() - t_start)
    write_plot(args.out / "keyframe_codec.png", results)
    print((args.out / "keyframe_codec.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
