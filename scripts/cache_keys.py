"""Cache key-frame pairs for the key-frame restorer (streamcodec/keyframe/restore.py).

For every train clip (prepared as the codec prepares it), `--per-clip` frames spread over the
clip are coded by the key-frame codec at one quality each, drawn so that the coded sizes
cover the key-frame budgets the codec runs at; stored per clip as .npz under
~/.cache/streamcodec/keys (never committed): the decoded frames, the originals and the coded
sizes in bytes. Files are named like the pairs cache (<clip stem>_<max frames>.npz), so
train.py's identity split applies unchanged.

    python scripts/cache_keys.py --shard 0/2 & python scripts/cache_keys.py --shard 1/2
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamcodec import StreamcodecError
from streamcodec.config import load_config
from streamcodec.eval.clips import DEFAULT_TRAIN, cache_dir, list_clips, prepared
from streamcodec.keyframe import get_codec



def cache_clip(clip: Path, size: int, max_frames: int, per_clip: int, qualities: tuple[int, int],
               min_max_bytes: tuple[int, int], codec, out: Path) -> int:
    frames = prepared(clip, size, max_frames)
    rng = np.random.default_rng(int(hashlib.sha256(clip.stem.encode()).hexdigest()[:8], 16))
    picks = np.unique(np.linspace(0, len(frames) - 1, per_clip).round().astype(int))
    decoded, originals, sizes = [], [], []
    for i in picks:
        data = codec.encode(frames[i], int(rng.integers(qualities[0], qualities[1] + 1)))
        if min_max_bytes[0] <= len(data) <= min_max_bytes[1]:
            decoded.append(codec.decode(data))
            originals.append(frames[i])
            sizes.append(len(data))
    if decoded:
        np.savez_compressed(out, decoded=np.stack(decoded), original=np.stack(originals), coded_bytes=np.array(sizes))
    return len(decoded)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", default=str(DEFAULT_TRAIN))
    ap.add_argument("--config", default=None, help="session config: its size and key-frame codec")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--per-clip", type=int, default=10)
    ap.add_argument("--qualities", default="8,56", help="codec quality range to draw from")
    ap.add_argument("--bytes", default="900,9000", help="keep codings of this many bytes (the budgets' range)")
    ap.add_argument("--clips", type=int, default=0, help="0 = all")
    ap.add_argument("--out", default=str(cache_dir() / "keys"))
    ap.add_argument("--shard", default="0/1", help="i/n: this process caches every n-th clip from i")
    args = ap.parse_args()
    cfg = load_config(args.config)
    codec = get_codec(cfg.keyframe.codec, preset=cfg.keyframe.preset)
    lo_q, hi_q = (int(v) for v in args.qualities.split(","))
    lo_b, hi_b = (int(v) for v in args.bytes.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    i, n = (int(v) for v in args.shard.split("/"))
    clips = list_clips(args.folder)
    if args.clips:
        clips = clips[:: max(1, len(clips) // args.clips)][: args.clips]
    kept = 0
    for clip in tqdm(clips[i::n], desc=f"caching key frames {args.shard}"):
        dst = out / f"{clip.stem}_{args.max_frames}.npz"
        if dst.exists():
            continue
        try:
            kept += cache_clip(clip, cfg.size, args.max_frames, args.per_clip, (lo_q, hi_q), (lo_b, hi_b), codec, dst)
        except StreamcodecError as exc:  # a clip without a face must not stop the cache
            tqdm.write(f"{clip.name}: skipped ({exc})")
    print(f"{kept} key-frame pairs written to {out}")


if __name__ == "__main__":
    main()
