"""Pack cached training pairs (scripts/cache_pairs.py) small enough to travel to a lent GPU machine.

The cache holds ~8 MB of lossless frames per clip; a GPU burst (scripts/gpu_burst.sh) may carry
only tens of MB in all. A pack keeps `--frames` predicted frames per clip, spread evenly over it,
and stores every image as JPEG (`--quality`, 4:2:0) inside the .npz as a uint8 byte array with
offsets (no pickles), and landmarks in 1/32-pixel int16 steps; scripts/train.py decodes packed and
unpacked clips alike. The face layout goes along as JSON, as the training machine may have no
mediapipe to build it from.

    python scripts/pack_pairs.py --frames 9 --quality 90 -o .devpack/pairs

The JPEG round trip costs training targets a little detail (median PSNR 44 dB at quality 90 on 20
frames of one cached clip); the pack's README.json records how many frames were kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from streamcodec.eval.clips import cache_dir
from streamcodec.session import get_backend_layout
from streamcodec.structure.landmarks import layout_to_json

IMAGES = ("target", "warp", "key_images", "key_originals")
PER_FRAME = ("target", "warp", "landmarks", "key")
POINTS = ("landmarks", "key_landmarks")


def jpeg_array(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) RGB uint8 -> (bytes as uint8, end offsets)."""
    blobs = [cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality,
                                                   cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                   cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])[1] for im in images]
    return np.concatenate(blobs), np.cumsum([len(b) for b in blobs])


def pack_clip(src: Path, dst: Path, frames: int, quality: int) -> int:
    d = dict(np.load(src))
    keep = np.unique(np.linspace(0, len(d["target"]) - 1, min(frames, len(d["target"]))).round().astype(int))
    out = {k: v for k, v in d.items() if k not in PER_FRAME}
    out.update({k: d[k][keep] for k in PER_FRAME})
    for k in IMAGES:
        out[k + "__jpg"], out[k + "__end"] = jpeg_array(out.pop(k), quality)
    for k in POINTS:  # 1/32 pixel steps: far finer than the sketch's lines, a quarter of float32's bytes
        out[k + "__q32"] = np.round(out.pop(k) * 32).astype(np.int16)
    np.savez_compressed(dst, **out)
    return len(keep)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(cache_dir() / "pairs"))
    ap.add_argument("-o", "--out", default=".devpack/pairs")
    ap.add_argument("--frames", type=int, default=9, help="predicted frames kept per clip")
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(Path(args.data).glob("*.npz"))
    kept = sum(pack_clip(f, out / f.name, args.frames, args.quality) for f in tqdm(files, desc="packing"))
    (out / "layout.json").write_text(layout_to_json(get_backend_layout("mediapipe478")))
    size = sum(p.stat().st_size for p in out.iterdir())
    (out / "README.json").write_text(json.dumps({"source": args.data, "clips": len(files), "frames": kept,
                                                 "frames_per_clip": args.frames, "jpeg_quality": args.quality,
                                                 "bytes": size}, indent=1))
    print(f"{len(files)} clips, {kept} frames, {size / 2**20:.1f} MiB in {out}")


if __name__ == "__main__":
    main()
