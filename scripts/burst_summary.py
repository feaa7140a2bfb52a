"""Summarise a GPU burst (scripts/gpu_burst.sh) unpacked into a folder: GPU speed of the shipped
generator, and each variant's training and held-out scores beside the CPU-trained weights.

    python scripts/burst_summary.py docs/results/learned/gpu_burst

Reads gpu_speed.json, pack.json, <variant>/{metrics.json,log.jsonl,cpu_speed.json} and
whole_frame_val.json (`scripts/train.py --evaluate` on the lossless cache, run here); writes
README.md in the same folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _last_train_lpips(log: Path, n: int = 10) -> float:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [r["lpips"] for r in rows if "lpips" in r][-n:]
    return sum(rows) / len(rows)


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    d = args.folder
    speed, pack = json.loads((d / "gpu_speed.json").read_text()), json.loads((d / "pack.json").read_text())
    whole = json.loads((d / "whole_frame_val.json").read_text())
    lines = ["# GPU burst: the generator on an H200, and decoder variants trained on it", "",
             f"- GPU: {(d / 'nvidia_smi.txt').read_text().splitlines()[-1]}; torch {speed['torch']}",
             "- command there: `bash scripts/gpu_burst.sh 6` (device tool, `.devpack` carried); "
             "summary: `python scripts/burst_summary.py " + str(d) + "`",
             f"- training data: `scripts/pack_pairs.py`: {pack['clips']} cached clips, {pack['frames']} predicted "
             f"frames ({pack['frames_per_clip']} per clip), JPEG quality {pack['jpeg_quality']}, "
             f"{pack['bytes'] / 2**20:.1f} MiB (what fits beside the tree in the tool's 64 MiB)", "",
             "## The shipped generator on the GPU (network only, 256x256)", "",
             f"Weights `{speed['weights']}` (model `{speed['model_id']}`), {speed['frames_per_run']} frames a run, "
             "median of the runs; the difference is against the CPU's eager output on the same inputs, in 8-bit "
             "levels.", "",
             "| batch | precision | fps (median) | runs | max difference vs CPU (LSB) |", "|---|---|---|---|---|"]
    for r in speed["rows"]:
        lines.append(f"| {r['batch']} | {r['dtype']} | {r['fps_median']:.0f} | "
                     f"{', '.join(f'{x:.0f}' for x in r['fps_runs'])} | {r['max_diff_lsb_vs_cpu']:.2f} |")
    scores = whole["scores"]
    warp = next(iter(scores.values()))["val_lpips_warp"]
    lines += ["", "## Variants", "",
              f"Each trained for 6 min, four at once on the one GPU (batches built by 3 CPU worker processes each). "
              f"Held-out whole frames: {whole['samples']} predicted frames of the {len(whole['val_clips'])} "
              f"validation clips (16 people in neither training set, `val_identities: 16`), from the lossless "
              f"cache, the same for every row (`{whole['command']}`); warp decoder there: {warp:.4f}. "
              "Train LPIPS: mean of the last 10 logged batches (160-pixel crops). CPU fps: the generator alone, "
              "eager, 1 thread, batch 1, on this 2-core machine (the shipped decoder runs it on ONNX Runtime, "
              "faster; the ratio between rows is the point).", "",
              "| weights | model | steps x batch | train LPIPS (crops) | held-out LPIPS, whole frames | vs warp "
              "| CPU fps (1 thread) |", "|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        folder = Path(name).parent
        m = d / folder.name / "metrics.json"
        if folder.parent.name == d.name and m.exists():
            met = json.loads(m.read_text())
            cpu = json.loads((d / folder.name / "cpu_speed.json").read_text())["rows"][0]["fps_median"]
            lines.append(f"| GPU {folder.name} | `{s['model_id']}` | {met['steps_done']} x 32 | "
                         f"{_last_train_lpips(d / folder.name / 'log.jsonl'):.4f} | {s['val_lpips']:.4f} | "
                         f"{_pct(s['val_lpips'], s['val_lpips_warp'])} | {cpu:.1f} |")
        else:
            lines.append(f"| `{name}` (CPU-trained) | `{s['model_id']}` | | | {s['val_lpips']:.4f} | "
                         f"{_pct(s['val_lpips'], s['val_lpips_warp'])} | |")
    lines += ["", "The shipped weights (stage 1) were trained with the older split (`val_clips: 6`), which puts some "
              "of these 16 people in training: their row is not a held-out score. The GPU variants' weights are "
              "not committed (17 MB, none shipped); `scripts/gpu_burst.sh` remakes them."]
    (d / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
