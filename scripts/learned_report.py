"""Learned decoder vs warp decoder: the summary of a `streamcodec bench --learned` run, decode speed,
model size, training cost, and side-by-side frames where the mouth opens, eyes close, the head turns.

    streamcodec bench --learned --codecs none --reuse docs/results/rd_points.json -o docs/results/learned
    python scripts/learned_report.py --points docs/results/learned/rd_points.json

Writes docs/results/learned_decoder.md and docs/results/learned_side_by_side.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from streamcodec.config import SessionConfig, load_config
from streamcodec.decoder import runtime
from streamcodec.decoder.learned import LearnedSynthesizer, load_model, model_id_of, record_of, weights_path
from streamcodec.eval.bdrate import bd_rate
from streamcodec.eval.clips import DEFAULT_BENCH, list_clips, prepared
from streamcodec.eval.report import machine_line
from streamcodec.files import decode_file, encode_frames
from streamcodec.session import get_backend_layout

ROOT = Path(__file__).resolve().parents[1]
METRICS = [("lpips_alex", "LPIPS-alex", False), ("lpips_alex_face", "LPIPS-alex face", False),
           ("lpips_vgg", "LPIPS-vgg", False), ("dists", "DISTS", False), ("dists_face", "DISTS face", False),
           ("psnr", "PSNR", True), ("psnr_face", "PSNR face", True), ("ms_ssim", "MS-SSIM", True)]


DECODERS = {"streamcodec": "warp", "streamcodec-learned": "learned", "freeze": "freeze"}


def _change(metric: str, higher_is_better: bool, v: float) -> str:
    if metric.startswith("psnr"):
        return f"{v:+.2f} dB"
    return f"{v:+.4f}" if higher_is_better else f"{v:+.1f}%"


def comparison(rows: list[dict]) -> list[str]:
    by = {}
    for r in rows:
        if r["codec"] in DECODERS:
            by.setdefault((r["codec"], r["param"]), []).append(r)
    budgets = sorted({p for _, p in by})
    clips = sorted({r["clip"] for r in rows if r["codec"] == "streamcodec-learned"})
    L = [f"Clips: {len(clips)} (all of `bench/`), {rows[0]['frames']} frames each at most; "
         "each stream's rate is its whole file (the learned streams pay for their texture codes).", "",
         "| key-frame budget | decoder | kbps | " + " | ".join(m[1] for m in METRICS) + " |",
         "|---" * (3 + len(METRICS)) + "|"]
    mean = {}
    for b in budgets:
        for codec, name in DECODERS.items():
            rs = by.get((codec, b), [])
            if not rs:
                continue
            mean[codec, b] = {k: float(np.nanmean([r[k] for r in rs])) for k in ["kbps"] + [m[0] for m in METRICS]}
            L.append(f"| {b} | {name} | {mean[codec, b]['kbps']:.2f} | "
                     + " | ".join(f"{mean[codec, b][m]:.4f}" for m, _, _ in METRICS) + " |")
    L += ["", "Change of learned against warp at the same key-frame budget (mean over clips of the per-clip "
          "change; the learned stream's extra bits are in its kbps above):", "",
          "| key-frame budget | extra kbps | " + " | ".join(m[1] for m in METRICS) + " |",
          "|---" * (2 + len(METRICS)) + "|"]
    changes: dict[str, list[float]] = {}
    for b in budgets:
        w = {r["clip"]: r for r in by[("streamcodec", b)]}
        lr = {r["clip"]: r for r in by[("streamcodec-learned", b)]}
        common = sorted(set(w) & set(lr))
        cells = []
        for m, _, hib in METRICS:
            d = [lr[c][m] - w[c][m] if hib else (lr[c][m] - w[c][m]) / w[c][m] * 100 for c in common]
            changes.setdefault(m, []).append(float(np.nanmean(d)))
            cells.append(_change(m, hib, changes[m][-1]))
        extra = np.mean([lr[c]["kbps"] - w[c]["kbps"] for c in common])
        L.append(f"| {b} | {extra:+.3f} | " + " | ".join(cells) + " |")
    L.append("| mean of the budgets | | " + " | ".join(
        _change(m, hib, float(np.mean(changes[m]))) for m, _, hib in METRICS) + " |")
    L += ["", "The freeze rows are the frozen-picture anchor (the decoded key frame shown throughout, rate of "
          "its key frame only): a decoder that conveys no motion scores there."]
    L += ["", "BD-rate of learned against warp (negative = fewer bits for the same quality):", "",
          "| " + " | ".join(m[1] for m in METRICS) + " |", "|---" * len(METRICS) + "|"]
    cells = []
    for m, _, hib in METRICS:
        a = [(mean["streamcodec", b]["kbps"], mean["streamcodec", b][m]) for b in budgets]
        t = [(mean["streamcodec-learned", b]["kbps"], mean["streamcodec-learned", b][m]) for b in budgets]
        v = bd_rate(a, t, hib)
        cells.append("n/a" if v is None else f"{v:+.1f}%")
    L.append("| " + " | ".join(cells) + " |")
    return L


NAMES = {"eager": "eager generator", "traced": "TorchScript generator (traced, frozen, channels-last)",
         "onnx": "ONNX Runtime generator"}


def decode_speed(cfg: SessionConfig, clip: Path, threads: int, runs: int = 5) -> list[str]:
    """Whole-file decode fps (model load included), the decoders interleaved run by run so that the
    host's load swings hit them alike; the ratio to warp is the steadier number on a shared machine."""
    cfg = replace(cfg, texture=replace(cfg.texture, codec="learned"))
    frames = prepared(clip, cfg.size, 100)
    torch.set_num_threads(threads)
    default = runtime.resolve("auto")
    decoders = {"warp": ("warp", "eager")} | {
        f"learned, {NAMES[b]}" + (" (the default)" if b == default else ""): ("learned", b)
        for b in reversed(runtime.available())}
    fps: dict[str, list[float]] = {k: [] for k in decoders}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.scv"
        encode_frames(list(frames), path, cfg, progress=False)
        for _ in range(runs + 1):  # the first round is a warm-up: model load, tracing, kernel selection
            for name, (dec, backend) in decoders.items():
                LearnedSynthesizer.backend = backend
                t0 = time.perf_counter()
                _, out, _ = decode_file(path, decoder=replace(cfg.decoder, name=dec))
                fps[name].append(len(out) / (time.perf_counter() - t0))
    LearnedSynthesizer.backend = "auto"
    warp = np.median(fps["warp"][1:])
    L = ["| decoder | decode fps (median) | vs warp | runs |", "|---|---|---|---|"]
    for name, v in fps.items():
        L.append(f"| {name} | {np.median(v[1:]):.1f} | {np.median(v[1:]) / warp:.2f} | "
                 + ", ".join(f"{x:.1f}" for x in v[1:]) + " |")
    return L


def _yaw(lm: np.ndarray, layout) -> float:
    oval = lm[list(layout.oval)]
    return float((lm[1, 0] - oval[:, 0].mean()) / (np.ptp(oval[:, 0]) + 1e-6))  # nose tip off the oval centre


def side_by_side(cfg: SessionConfig, clips: list[Path], out: Path) -> list[str]:
    """For each event, the bench frame (over `clips`) where it is strongest against its key frame."""
    cfg = replace(cfg, texture=replace(cfg.texture, codec="learned"))
    layout = get_backend_layout(cfg.backend)
    best = {"mouth opens": (-1e9, None), "eyes close": (-1e9, None), "head turns": (-1e9, None)}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            frames = prepared(clip, cfg.size, 250)
            path = Path(tmp) / "s.scv"
            encode_frames(list(frames), path, cfg, progress=False)
            contents, warp, _ = decode_file(path, decoder=replace(cfg.decoder, name="warp"))
            _, learned, _ = decode_file(path, decoder=replace(cfg.decoder, name="learned"))
            for i, f in enumerate(warp):
                key = contents.key_frame_of(i)
                if key is None or key == i or f.landmarks is None or warp[key].landmarks is None:
                    continue
                k = warp[key].landmarks
                score = {"mouth opens": layout.mouth_area(f.landmarks) - layout.mouth_area(k),
                         "eyes close": layout.eye_area(k) - layout.eye_area(f.landmarks),
                         "head turns": abs(_yaw(f.landmarks, layout) - _yaw(k, layout)) * 100}
                for e, v in score.items():
                    if v > best[e][0]:
                        best[e] = (v, (clip.name, i, frames[i], warp[i].image, learned[i].image, warp[key].image))
    rows, L = [], ["| event | clip | frame |", "|---|---|---|"]
    for e, (_, rec) in best.items():
        name, i, truth, w, lr, key = rec
        L.append(f"| {e} | `{name}` | {i} |")
        tiles = [key, truth, w, lr]
        row = np.concatenate([np.pad(t, ((24, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles], 1)
        for j, label in enumerate(["key frame (decoded)", f"original: {e}", "warp decoder", "learned decoder"]):
            cv2.putText(row, label, (j * 260 + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return L


def _rel(p: Path) -> str:
    p = p.resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def training_lines(rec: dict) -> list[str]:
    """One line per training stage, earliest first: the record of a fine-tuned run holds its start's."""
    stages = []
    while rec:
        stages.append(rec)
        rec = rec.get("initialised_from", {}).get("record", {})
    lines = []
    for k, r in enumerate(reversed(stages), 1):
        start = r.get("initialised_from")
        restorer = r["config"].get("stage") == "restorer"
        what, base = ("the key-frame restorer alone", "decoded") if restorer else ("", "warp")
        earlier = (start or {}).get("record", {}).get("config", {}).get("model", {})
        if r["config"]["model"].get("flow") and not earlier.get("flow"):
            what = "the generator's learned motion (`flow`) switched on"
        lines.append(f"- training stage {k}{': ' + what if what else ''}: `{r.get('command')}`, "
                     f"{r.get('wall_s', 0) / 60:.0f} min on {r.get('hardware')}, "
                     f"{r.get('steps_done', r['config']['steps'])} steps of batch {r['config']['batch']} on "
                     f"{r['config']['crop']}-pixel {'key-frame ' if restorer else ''}crops, "
                     f"{len(r['split']['train'])} train clips, {len(r['split']['val'])} validation clips "
                     "(identity-disjoint from `bench/`)"
                     + (f", starting from model `{start['model_id']}`" if start else "")
                     + f"; final validation LPIPS {r['final_val'].get('val_lpips', float('nan')):.4f} "
                     f"({base} {r['final_val'].get(f'val_lpips_{base}', float('nan')):.4f})"
                     + _averaging(r.get("averaged_with")))
    return lines


def _averaging(avg: dict | None) -> str:
    """What scripts/average_weights.py adds to a record: the weights were mixed after training."""
    if not avg:
        return ""
    return (f"; then averaged with model `{avg['model_id']}`, weight {avg['alpha_of_this_run']} on this run "
            f"(`{avg['command']}`)")


def restore_speed(weights: Path, clip: Path, runs: int = 7) -> list[str]:
    """Time of the key-frame restorer for one 256x256 key frame (it runs once per key frame)."""
    model = load_model(weights)
    if model.restorer is None:
        return []
    img = prepared(clip, 256, 100)[0]  # the clip decode_speed prepared
    L = ["| torch threads | ms per key frame (median) | runs |", "|---|---|---|"]
    for threads in (2, 1):
        torch.set_num_threads(threads)
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            model.restore_key(img, 3000)
            times.append(1000 * (time.perf_counter() - t0))
        L.append(f"| {threads} | {np.median(times[1:]):.0f} | " + ", ".join(f"{t:.0f}" for t in times[1:]) + " |")
    torch.set_num_threads(2)
    arch = model.arch
    return ["", f"## Key-frame restoration (width {arch['restore_width']}, {arch['restore_blocks']} blocks, "
            f"{model.restorer.macs() / 1e9:.1f} GMAC at 256x256; once per key frame, before the warp)", ""] + L


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", help="the settings the bench ran with: its decoder's weights and background "
                    "(default configs/default.yaml)")
    ap.add_argument("--points", default=str(ROOT / "docs/results/learned/rd_points.json"))
    ap.add_argument("--out", default=str(ROOT / "docs/results"))
    ap.add_argument("--side-clips", type=int, default=6, help="bench clips searched for the side-by-side frames")
    args = ap.parse_args()
    out = Path(args.out)
    rows = json.loads(Path(args.points).read_text())
    cfg = load_config(args.config)
    weights = weights_path(cfg.decoder.weights)
    rec = record_of(weights)
    clips = list_clips(DEFAULT_BENCH)
    L = ["# Learned decoder vs warp decoder", "",
         f"- date: {time.strftime('%Y-%m-%d %H:%M')}; {machine_line()}",
         f"- command: `python scripts/learned_report.py {' '.join(sys.argv[1:])}` on the points of "
         f"`streamcodec bench --learned` (`{_rel(Path(args.points))}`)",
         f"- weights: `{_rel(weights)}`, model id `{model_id_of(weights).hex()}`, "
         f"{weights.stat().st_size / 1e6:.2f} MB; decoder background `{cfg.decoder.background}` "
         f"(`{args.config or 'configs/default.yaml'}`)",
         *training_lines(rec),
         "- the generator was trained on L1 + LPIPS-alex: LPIPS-vgg and DISTS are metrics it was not trained on",
         "", "## Quality at equal key-frame budgets", ""]
    L += comparison(rows)
    for threads, why in ((2, "the whole machine"), (1, "a call, where the encoder takes the other core")):
        L += ["", f"## Decode speed at 256x256: {threads} torch thread{'s' * (threads > 1)} ({why}; this machine, "
              "100 frames, 5 interleaved runs each)", ""]
        L += decode_speed(cfg, clips[0], threads)
    torch.set_num_threads(2)
    L += restore_speed(weights, clips[0])
    L += ["", "## Side by side", "", "![side by side](learned_side_by_side.png)", "",
          f"The frame of the first {args.side_clips} `bench/` clips (first 250 frames, key-frame budget 3000) where each event is strongest "
          "against the frame's key frame, judged on the decoded landmarks:", ""]
    L += side_by_side(cfg, clips[: args.side_clips], out / "learned_side_by_side.png")
    (out / "learned_decoder.md").write_text("\n".join(L) + "\n")
    print(f"wrote {out / 'learned_decoder.md'}")


if __name__ == "__main__":
    main()
