#!/usr/bin/env python
"""Extract landmark sequences from a folder of clips (prepared on the fly).

The result feeds scripts/fit_shape_basis.py. Output: one .npz with, per clip,
an array (T, N, 3) of pixel landmarks (NaN where no face was found).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamcodec.io.prepare import PrepareConfig, prepare_frames
from streamcodec.structure.landmarks import get_backend

VIDEO_EXT = {".mp4", ".mov", ".mpg", ".avi", ".mkv", ".webm"}


def clips_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXT)


def extract(path: Path, backend_name: str, cfg: PrepareConfig) -> np.ndarray:
    backend = get_backend(backend_name)
    out = []
    for frame in prepare_frames(path, cfg):
        det = backend.detect(frame)
        out.append(det.points if det is not None else np.full((backend.num_points, 3), np.nan, np.float32))
    backend.reset()
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--backend", default="mediapipe478")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=250)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = PrepareConfig(size=args.size, max_frames=args.max_frames)
    seqs: dict[str, np.ndarray] = {}
    for clip in tqdm(clips_in(args.folder), desc="clips"):
        try:
            seqs[clip.name] = extract(clip, args.backend, cfg)
        except Exception as exc:  # one bad clip must not end an hour of extraction
            logging.warning("%s: skipped (%s)", clip.name, exc)
    np.savez_compressed(args.out, **seqs)
    print(f"{len(seqs)} clips, {sum(len(s) for s in seqs.values())} frames -> {args.out}")


if __name__ == "__main__":
    main()
