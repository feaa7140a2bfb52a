"""Benchmark clips: discovery and the prepared-frame cache shared by every benchmark."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..io import PrepareConfig, prepare_frames, read_frames, write_video
from ..metrics.weights import cache_dir

VIDEO_EXT = {".mp4", ".mov", ".mpg", ".avi", ".mkv", ".webm"}
# The footage lives beside the checkout (../shared), or wherever STREAMCODEC_SHARED says, as for the tests.
SHARED = Path(os.environ.get("STREAMCODEC_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
DEFAULT_BENCH = SHARED / "data" / "faces" / "bench"
DEFAULT_TRAIN = SHARED / "data" / "faces" / "train"
DEFAULT_CATALOGUE = DEFAULT_BENCH.parent / "catalogue.tsv"


def list_clips(folder: str | Path, limit: int = 0) -> list[Path]:
    clips = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXT)
    return clips[:limit] if limit else clips


def identities(catalogue: str | Path = DEFAULT_CATALOGUE) -> dict[str, str]:
    """Clip file stem -> person id (the catalogue's `id`: one id per person, across clips)."""
    with open(catalogue, newline="") as f:
        return {Path(r["file"]).stem: r["id"] for r in csv.DictReader(f, delimiter="\t")}


def prepared(clip: str | Path, size: int = 256, max_frames: int = 250) -> np.ndarray:
    """Prepared frames (T, size, size, 3), cached losslessly (FFV1) so reruns skip preparation."""
    clip = Path(clip)
    cached = cache_dir() / "prepared" / f"{clip.stem}_{size}_{max_frames}.mkv"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part.mkv")
        write_video(tmp, prepare_frames(clip, PrepareConfig(size=size, max_frames=max_frames)))
        tmp.rename(cached)
    return read_frames(cached)
