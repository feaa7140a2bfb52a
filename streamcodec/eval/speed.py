"""Timing the session codec: frames per second of encode and decode, over repeated runs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import SessionConfig
from ..files import decode_file, encode_frames


def time_streamcodec(frames: np.ndarray, cfg: SessionConfig, runs: int) -> tuple[list[float], list[float]]:
    """Encode and decode fps of each run (file to file, landmark extraction included)."""
    enc, dec = [], []
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "speed.scv"
        for _ in range(runs):
            t0 = time.perf_counter()
            encode_frames(list(frames), p, cfg, progress=False)
            enc.append(len(frames) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            decode_file(p)
            dec.append(len(frames) / (time.perf_counter() - t0))
    return enc, dec
