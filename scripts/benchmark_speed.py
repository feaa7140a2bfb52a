#!/usr/bin/env python
"""Encode/decode speed of streamcodec and the classical codecs at 256x256 and 512x512.

Median frames per second over repeated runs on one bench clip, on this machine;
writes docs/results/speed.md. Classical codecs run at a mid-sweep setting with
the benchmark's presets (streamcodec/eval/baselines.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from streamcodec.config import load_config
from streamcodec.eval.baselines import decode, default_sweep, encode
from streamcodec.eval.clips import DEFAULT_BENCH, prepared
from streamcodec.eval.report import machine_line
from streamcodec.eval.speed import time_streamcodec

ROOT = Path(__file__).resolve().parents[1]
CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9")


def time_classical(frames: np.ndarray, codec: str, runs: int) -> tuple[list[float], list[float], int]:
    sweep = default_sweep(codec, "full")
    param = sweep[len(sweep) // 2]
    enc, dec = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        packets, _ = encode(frames, codec, param)
        enc.append(len(frames) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        decode(packets, codec)
        dec.append(len(frames) / (time.perf_counter() - t0))
    return enc, dec, param


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clip", type=Path, default=DEFAULT_BENCH / "OpenTalker__DPE__data_d.mp4")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for size in (256, 512):
        frames = prepared(args.clip, size, args.frames)
        e, d = time_streamcodec(frames, load_config().with_overrides(size=size), args.runs)
        rows.append(("streamcodec (warp)", "default", size, e, d))
        for codec in CODECS:
            e, d, param = time_classical(frames, codec, args.runs)
            rows.append((codec, f"crf/cq {param}", size, e, d))
            print(codec, size, np.median(e), np.median(d), flush=True)
    cmd = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark_speed.py"] + sys.argv[1:])
    L = ["# Encode and decode speed", "",
         f"- date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {machine_line()}",
         f"- command: `{cmd}`",
         f"- clip: `{args.clip.name}`, first {args.frames} prepared frames; median of {args.runs} runs; "
         "streamcodec encode includes landmark extraction, segmentation and the closed-loop checks; "
         "classical codecs with the rate-quality benchmark's presets, colour conversion included", "",
         "| codec | setting | size | encode fps (median) | decode fps (median) | encode runs | decode runs |",
         "|---|---|---|---|---|---|---|"]
    for name, setting, size, e, d in rows:
        L.append(f"| {name} | {setting} | {size} | {np.median(e):.1f} | {np.median(d):.1f} | "
                 f"{', '.join(f'{x:.1f}' for x in e)} | {', '.join(f'{x:.1f}' for x in d)} |")
    out = ROOT / "docs" / "results" / "speed.md"
    out.write_text("\n".join(L) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
