"""Where the warp decoder's error comes from: the key frame's coding, or the warp itself.

On pairs cached by scripts/cache_pairs.py (the real decoded key frames and landmarks of each
clip), every predicted frame is warped twice, from the decoded key frame and from the original
(uncoded) one, with the same decoded landmarks and no colour correction. What a perfect key-frame
restoration could win is the gap between the two; what is left with the original key frame is the
warp's own error (motion the mesh cannot follow, background dragged, hands, occlusions), which a
per-frame generator has to fix.

    for b in 1500 3000 6000; do
      python scripts/cache_pairs.py --folder ../shared/data/faces/bench --budgets $b --out /tmp/bench_pairs_$b
    done
    python scripts/warp_error_study.py /tmp/bench_pairs_1500 /tmp/bench_pairs_3000 /tmp/bench_pairs_6000

Writes docs/results/learned/warp_error.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.decoder.base import Reference
from streamcodec.decoder.learned import to_tensor
from streamcodec.decoder.warp import WarpSynthesizer
from streamcodec.eval.report import machine_line
from streamcodec.metrics.lpips import load_lpips_net
from streamcodec.session import get_backend_layout

ROOT = Path(__file__).resolve().parents[1]


def warped(d: dict[str, np.ndarray], keys: np.ndarray, frames: np.ndarray, layout) -> np.ndarray:
    """The warp decoder's frames `frames` of a cached clip, from the key images `keys`."""
    ws, current, out = WarpSynthesizer(), -1, []
    for i in frames:
        k = int(d["key"][i])
        if k != current:
            ws.set_reference(Reference(keys[k], d["key_landmarks"][k], d["key_person"][k], {}), layout)
            current = k
        out.append(ws.synthesize(d["landmarks"][i], None))
    return np.stack(out)


@torch.no_grad()
def clip_scores(path: Path, lp, layout, every: int) -> dict[str, float]:
    d = dict(np.load(path))
    frames = np.arange(0, len(d["target"]), every)
    target = to_tensor(d["target"][frames])
    return {"budget": int(d["budget"]),
            "key": lp(to_tensor(d["key_images"]), to_tensor(d["key_originals"])).mean().item(),
            "decoded": lp(to_tensor(warped(d, d["key_images"], frames, layout)), target).mean().item(),
            "original": lp(to_tensor(warped(d, d["key_originals"], frames, layout)), target).mean().item()}


def table(rows: list[dict[str, float]]) -> list[str]:
    L = ["| key-frame budget | clips | key frame vs its original | warp of the decoded key | warp of the original key "
         "| share of the warp's error due to key coding (median over clips) |", "|---|---|---|---|---|---|"]
    for b in sorted({r["budget"] for r in rows}):
        rs = [r for r in rows if r["budget"] == b]
        share = np.median([(r["decoded"] - r["original"]) / r["decoded"] for r in rs])
        L.append(f"| {b} | {len(rs)} | {np.mean([r['key'] for r in rs]):.4f} | {np.mean([r['decoded'] for r in rs]):.4f} "
                 f"| {np.mean([r['original'] for r in rs]):.4f} | {100 * share:.0f}% |")
    return L


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+", help="folders of cached pairs (scripts/cache_pairs.py)")
    ap.add_argument("--every", type=int, default=3, help="score every n-th cached frame")
    ap.add_argument("--out", default=str(ROOT / "docs/results/learned/warp_error.md"))
    args = ap.parse_args()
    files = sorted(f for folder in args.pairs for f in Path(folder).glob("*.npz"))
    if not files:
        sys.exit(f"no cached pairs in {args.pairs}")
    lp, layout = load_lpips_net("alex"), get_backend_layout("mediapipe478")
    rows = [clip_scores(f, lp, layout, args.every) for f in tqdm(files, desc="clips")]
    L = ["# Where the warp decoder's error comes from", "",
         f"- {machine_line()}",
         f"- command: `python scripts/warp_error_study.py {' '.join(args.pairs)}` on pairs cached by "
         "`scripts/cache_pairs.py` (see the script's docstring); one cached frame in "
         f"{args.every} (the cache keeps every 3rd predicted frame of a clip's first 150)",
         "- LPIPS-alex on whole 256x256 frames, mean over clips of each clip's mean; both warps use the same "
         "decoded landmarks and no colour correction", "", *table(rows), "",
         "A perfect restoration of the key frame could at most close the gap between the two warp columns; "
         "the rest is the warp's own error, which only a per-frame generator (or better motion) can reduce."]
    Path(args.out).write_text("\n".join(L) + "\n")
    print("\n".join(L))


if __name__ == "__main__":
    main()
