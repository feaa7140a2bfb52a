"""Cache training pairs for the learned decoder: the real decoder inputs.

Runs the session codec (warp decoder) over train clips once and stores, per
clip, the decoded key frames with their original frames and person masks, the
warp prediction of frames from the decoded structure, the decoded landmarks and
the prepared target frames, as .npz under ~/.cache/streamcodec/pairs (never
committed). Each clip is coded at one key-frame budget drawn from `--budgets`
(seeded by the clip name), so the generator sees every key-frame quality.

    python scripts/cache_pairs.py --shard 0/2 & python scripts/cache_pairs.py --shard 1/2
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamcodec.bitstream import PacketType
from streamcodec.config import DecoderConfig, load_config
from streamcodec.eval.clips import DEFAULT_TRAIN, cache_dir, list_clips, prepared
from streamcodec.files import decode_file, encode_frames, read_scv
from streamcodec.keyframe import get_codec
from streamcodec.session import SessionDecoder
from streamcodec.texture import PersonSegmenter



def _decode_keeping_warps(scv: Path, weights: Path):
    """Decodes with the learned decoder of `weights` and keeps, for every frame it synthesised, the
    warp frame its generator was given (with a key-frame restorer: the warp of the restored key)."""
    contents = read_scv(scv)
    decoder = SessionDecoder(contents.header, decoder=DecoderConfig(name="learned", weights=str(weights)))
    frames, warps = [], {}
    for p in contents.packets:
        out = decoder.decode(p)
        frames.extend(out)
        # a structure packet's frames: the held ones first, then at most one synthesised
        if p.type == PacketType.STRUCTURE and out and not out[-1].concealed:
            warps[out[-1].index] = decoder.synth.last_warp
    decoded_keys = {p.frame: get_codec(p.payload[0]).decode(p.payload[1:]) for p in contents.packets
                    if p.type == PacketType.KEYFRAME}
    return contents, frames, warps, decoded_keys


def cache_clip(clip: Path, cfg, max_frames: int, stride: int, out: Path, seg: PersonSegmenter,
               weights: Path | None = None) -> bool:
    """With `weights`, the decoder inputs are those of that learned decoder (its restored key frames
    and their warps); without, the warp decoder's."""
    frames = prepared(clip, cfg.size, max_frames)
    with tempfile.TemporaryDirectory() as tmp:
        scv = Path(tmp) / "c.scv"
        encode_frames(list(frames), scv, cfg, progress=False)
        if weights is None:
            contents, dec, _ = decode_file(scv)
            warps = {i: d.image for i, d in enumerate(dec)}
            decoded_keys = {k: dec[k].image for k in contents.key_frames()}
        else:
            contents, dec, warps, decoded_keys = _decode_keeping_warps(scv, weights)
    keys, key_frame_of = contents.key_frames(), contents.key_frame_of
    key_bytes = {p.frame: len(p.payload) - 1 for p in contents.packets if p.type == PacketType.KEYFRAME}
    # Frames predicted from a key frame (not the key frames themselves: their output is the key image).
    keep = [i for i, d in enumerate(dec) if d.landmarks is not None and not d.concealed and i not in keys
            and key_frame_of(i) is not None and dec[key_frame_of(i)].landmarks is not None][::stride]
    if len(keep) < 10:
        return False
    key_of = [key_frame_of(i) for i in keep]
    key_ids = sorted(set(key_of))
    np.savez_compressed(out, target=frames[keep], warp=np.stack([warps[i] for i in keep]),
                        landmarks=np.stack([dec[i].landmarks for i in keep]).astype(np.float32),
                        key=np.array([key_ids.index(k) for k in key_of]),
                        key_images=np.stack([dec[k].image for k in key_ids]),
                        key_originals=frames[key_ids],
                        # the receiver segments the key frame as decoded, before any restoration
                        key_person=np.stack([seg(decoded_keys[k]) for k in key_ids]),
                        key_landmarks=np.stack([dec[k].landmarks for k in key_ids]).astype(np.float32),
                        key_coded_bytes=np.array([key_bytes[k] for k in key_ids]),
                        budget=np.array(cfg.keyframe.max_bytes))
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", default=str(DEFAULT_TRAIN))
    ap.add_argument("--config", default=None)
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--stride", type=int, default=3, help="keep every n-th predicted frame")
    ap.add_argument("--budgets", default="1500,3000,6000", help="key-frame byte budgets to draw from")
    ap.add_argument("--clips", type=int, default=0, help="0 = all")
    ap.add_argument("--out", default=str(cache_dir() / "pairs"))
    ap.add_argument("--shard", default="0/1", help="i/n: this process caches every n-th clip from i")
    ap.add_argument("--weights", default=None,
                    help="learned decoder weights whose decoder inputs to cache (their restored key frames)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    budgets = [int(b) for b in args.budgets.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = list_clips(args.folder)
    if args.clips:
        clips = clips[:: max(1, len(clips) // args.clips)][: args.clips]
    i, n = (int(v) for v in args.shard.split("/"))
    seg = PersonSegmenter()
    for clip in tqdm(clips[i::n], desc=f"caching pairs {args.shard}"):
        dst = out / f"{clip.stem}_{args.max_frames}.npz"
        if dst.exists():
            continue
        budget = budgets[int(hashlib.sha256(clip.name.encode()).hexdigest(), 16) % len(budgets)]
        c = replace(cfg, keyframe=replace(cfg.keyframe, max_bytes=budget))
        try:
            if not cache_clip(clip, c, args.max_frames, args.stride, dst, seg, args.weights and Path(args.weights)):
                tqdm.write(f"{clip.name}: skipped (fewer than 10 predicted frames with a face)")
        except Exception as exc:  # a clip without a face must not stop the cache
            tqdm.write(f"{clip.name}: skipped ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
