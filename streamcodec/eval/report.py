"""Benchmark report: markdown tables and rate-quality plots from the runner's points."""

from __future__ import annotations

import json

import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .bdrate import bd_rate, envelope, rate_at_quality

# (key, label, higher_is_better)
METRICS = [
    ("lpips_alex_face", "LPIPS-alex, face", False), ("lpips_alex", "LPIPS-alex", False),
    ("lpips_vgg_face", "LPIPS-vgg, face", False), ("lpips_vgg", "LPIPS-vgg", False),
    ("dists_face", "DISTS, face", False), ("dists", "DISTS", False),
    ("psnr_face", "PSNR face (dB)", True), ("psnr", "PSNR (dB)", True),
    ("ms_ssim", "MS-SSIM", True), ("keypoint_px", "keypoint dist. (px)", False),
    ("identity", "identity dist.", False),
]
BD_METRICS = ["lpips_alex_face", "lpips_alex", "lpips_vgg", "dists", "dists_face", "psnr", "psnr_face"]
TARGETS = {"lpips_alex": (0.15, 0.20, 0.25), "lpips_vgg": (0.25, 0.30, 0.35), "lpips_alex_face": (0.10, 0.15)}


def average_points(rows: list[dict]) -> dict[str, list[dict]]:
    """Per codec: points averaged over clips (only parameter settings every clip has)."""
    clips = {r["clip"] for r in rows}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["variant"], r["param"])].append(r)
    out: dict[str, list[dict]] = defaultdict(list)
    for (codec, variant, param), rs in sorted(groups.items()):
        if {r["clip"] for r in rs} != clips:
            continue
        avg = {k: float(np.nanmean([r[k] for r in rs])) for k in ["kbps"] + [m for m, _, _ in METRICS]}
        out[codec].append({"codec": codec, "variant": variant, "param": param, **avg})
    return dict(out)


def curve(points: list[dict], metric: str) -> list[tuple[float, float]]:
    return [(p["kbps"], p[metric]) for p in points if np.isfinite(p[metric])]


def _fmt(v: float | None, nd: int = 1, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{nd}f}%" if pct else f"{v:.{nd}f}"


_STYLES = {"streamcodec": dict(lw=2.5, c="crimson", marker="o"),
           "streamcodec-learned": dict(lw=2.5, c="darkgreen", marker="s")}
OURS = tuple(_STYLES)


def plot(avg: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(18, 12))
    for ax, (m, label, hib) in zip(axes.flat, METRICS):
        for codec, pts in sorted(avg.items()):
            if codec == "freeze":
                ax.scatter([p["kbps"] for p in pts], [p[m] for p in pts], marker="x", s=80, c="k",
                           label="freeze anchor", zorder=5)
                continue
            env = envelope(curve(pts, m), hib)
            style = _STYLES.get(codec, dict(lw=1.2, marker="."))
            ax.plot([p[0] for p in env], [p[1] for p in env], label=codec, **style)
        ax.set_xscale("log")
        ax.set_xlabel("kbps (all bytes)")
        ax.set_title(label)
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write(rows: list[dict], out_dir: Path, header: list[str]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    avg = average_points(rows)
    L = ["# Rate-quality benchmark: streamcodec vs H.264, H.265, AV1, VP9", ""] + header + [""]
    L += ["![rate-quality curves](rd_curves.png)", "",
          "Curves: each classical codec's best envelope over its full-size, 128x128 (upscaled) and 12.5 fps "
          "sweeps; points are averages over all clips at one setting. Face = landmark box of the input, "
          "enlarged 15% per side, 128x128.", ""]
    hib = {m: h for m, _, h in METRICS}
    for ours in [c for c in OURS if c in avg]:
        sc = avg[ours]
        L += [f"## BD-rate of {ours} against each codec (negative = {ours} needs fewer bits)", "",
              "| anchor | " + " | ".join(BD_METRICS) + " |", "|---" * (len(BD_METRICS) + 1) + "|"]
        for codec in [c for c in avg if c not in (ours, "freeze")]:
            vals = [bd_rate(curve(avg[codec], m), curve(sc, m), hib[m]) for m in BD_METRICS]
            L.append(f"| {codec} | " + " | ".join(_fmt(v, 1, pct=True) for v in vals) + " |")
        L.append("")
    L += ["", "n/a: the quality ranges do not overlap (no BD-rate is defined there).", "",
          "## Rate needed to reach a quality target (kbps)", "",
          "| codec | " + " | ".join(f"{m} {t}" for m, ts in TARGETS.items() for t in ts) + " |",
          "|---" * (1 + sum(len(t) for t in TARGETS.values())) + "|"]
    for codec, pts in sorted(avg.items()):
        if codec == "freeze":
            continue
        vals = [rate_at_quality(curve(pts, m), t, False) for m, ts in TARGETS.items() for t in ts]
        L.append(f"| {codec} | " + " | ".join(_fmt(v, 2) for v in vals) + " |")
    L += ["", "## Lowest rate each reaches, and the quality there", "",
          "| codec | setting | kbps | " + " | ".join(label for _, label, _ in METRICS) + " |",
          "|---" * (3 + len(METRICS)) + "|"]
    for codec, pts in sorted(avg.items()):
        p = min(pts, key=lambda p: p["kbps"])
        L.append(f"| {codec} | {p['variant']} {p['param']} | {p['kbps']:.2f} | "
                 + " | ".join(f"{p[m]:.3f}" for m, _, _ in METRICS) + " |")
    L += ["", "## All averaged points", "", "| codec | variant | param | kbps | "
          + " | ".join(m for m, _, _ in METRICS) + " |", "|---" * (4 + len(METRICS)) + "|"]
    for codec, pts in sorted(avg.items()):
        for p in sorted(pts, key=lambda p: p["kbps"]):
            L.append(f"| {codec} | {p['variant']} | {p['param']} | {p['kbps']:.2f} | "
                     + " | ".join(f"{p[m]:.4f}" for m, _, _ in METRICS) + " |")
    (out_dir / "rd_benchmark.md").write_text("\n".join(L) + "\n")
    # Every clip's points, for reanalysis without rerunning (the tables are averages over clips).
    (out_dir / "rd_points.json").write_text(json.dumps(rows, indent=0, sort_keys=True) + "\n")
    plot(avg, out_dir / "rd_curves.png")
    return out_dir / "rd_benchmark.md"


def machine_line() -> str:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def _decoder_line(session) -> str:
    from ..config import load_config
    from ..decoder.learned import model_id_of, weights_path

    d = load_config(session).decoder
    w = weights_path(d.weights)
    return f"; learned weights `{d.weights or 'streamcodec/assets/learned_decoder.safetensors'}` " \
           f"(model id `{model_id_of(w).hex() if w.exists() else 'missing'}`), background `{d.background}`"


def header_lines(cmd: str, bc, seconds: float, n_clips: int) -> list[str]:
    s = bc.sampling
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine_line()}",
        f"- command: `{cmd}` ({seconds / 60:.1f} min)",
        f"- clips: {n_clips} from `{bc.folder}`, prepared at 256x256, 25 fps, at most {bc.max_frames} frames",
        "- rate = every byte a decoder needs x 8 / duration: the whole .scv file for streamcodec; the "
        "elementary stream (parameter sets included, x264's settings SEI excluded) for the classical codecs; "
        "the decoded key frame plus stream header for the freeze anchor",
        f"- sampling: PSNR on every frame; LPIPS-alex every {s.lpips_alex}, MS-SSIM every {s.ms_ssim}, "
        f"keypoint distance every {s.keypoints}, LPIPS-vgg / DISTS / identity every {s.costly} frames, "
        "each starting at half its step (frame 0 is every codec's key frame); the reference side of the "
        "network metrics is embedded once per clip",
        "- classical settings: see `streamcodec/eval/baselines.py` (single key frame, slow presets, CRF sweeps, "
        f"128x128 and 12.5 fps variants); streamcodec: `{bc.session or 'configs/default.yaml'}` with key-frame "
        f"budgets {', '.join(map(str, bc.streamcodec_budgets))} bytes" + _decoder_line(bc.session),
    ]
