#!/usr/bin/env python
"""Fit the structure layer's shape basis and entropy-model priors on training landmarks.

Input: landmark sequences from scripts/extract_landmarks.py (train/ only).
Output: streamcodec/assets/shape_basis_<backend>.npz and a JSON record of how
it was made (data, held-out reconstruction error per number of coefficients).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamcodec.structure.basis import ShapeBasis, similarity_fit
from streamcodec.structure.coder import StructureCoder, StructureConfig, params_from_fit


def normalise(shape: np.ndarray) -> np.ndarray:
    c = shape - shape.mean(0)
    return c / np.sqrt((c ** 2).sum(1).mean())


def procrustes_mean(shapes: np.ndarray, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    mean = normalise(shapes[0])
    for _ in range(iters):
        aligned = np.empty_like(shapes)
        for i, s in enumerate(shapes):
            sc, R, t = similarity_fit(s, mean)
            aligned[i] = sc * s @ R.T + t
        mean = normalise(aligned.mean(0))
    return mean, aligned


def held_out(name: str, fraction: float) -> bool:
    return zlib.crc32(name.encode()) % 1000 < fraction * 1000


def recon_error(basis: ShapeBasis, seqs: list[np.ndarray], k: int, stride: int = 5) -> float:
    errs = []
    for seq in seqs:
        for pts in seq[::stride]:
            rv, s, t, c = basis.fit(pts)
            c[k:] = 0
            errs.append(np.linalg.norm(basis.render(rv, s, t, c[:k]) - pts[:, :2], axis=1).mean())
    return float(np.mean(errs))


def fit_priors(basis: ShapeBasis, seqs: list[np.ndarray], cfg: StructureConfig, size: int) -> dict:
    coder = StructureCoder(basis, cfg, size)
    dims = coder.dims
    qs = []
    for seq in tqdm(seqs, desc="priors", leave=False):
        coder.prev = None
        run = []
        for pts in seq:
            rv, s, t, c = basis.fit(pts)
            q = coder.quantise(params_from_fit(rv, s, t, c, cfg.num_coeffs))
            coder.prev = q
            run.append(q)
        qs.append(np.array(run))
    allq = np.concatenate(qs)
    offset = np.round(np.median(allq, 0)).astype(np.int64)

    def hist(values: np.ndarray, radius: int) -> np.ndarray:
        counts = np.zeros((dims, 2 * radius + 2))
        for d in range(dims):
            v = values[:, d]
            inside = np.abs(v) <= radius
            counts[d, : 2 * radius + 1] = np.bincount(v[inside] + radius, minlength=2 * radius + 1)
            counts[d, -1] = (~inside).sum()
        p = counts / counts.sum(1, keepdims=True)
        return 1 + np.round(p * 400).astype(np.int64)  # total ~400: strong enough to start, quick to adapt

    deltas = np.concatenate([np.diff(q, axis=0) for q in qs if len(q) > 1])
    still = (~deltas.any(1)).mean()
    return {"inter": hist(deltas, cfg.inter_radius), "intra": hist(allq - offset, cfg.intra_radius),
            "intra_offset": offset, "skip": np.array([max(1, round(100 * (1 - still))), max(1, round(100 * still))])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("landmarks", type=Path, help="npz from scripts/extract_landmarks.py on train/")
    ap.add_argument("--backend", default="mediapipe478")
    ap.add_argument("--components", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.time()
    with np.load(args.landmarks, allow_pickle=False) as z:
        seqs = {k: z[k] for k in z.files}
    # Sequences are split at frames without a face so the priors see real frame-to-frame steps.
    train, test = [], []
    for name, seq in seqs.items():
        good = ~np.isnan(seq).any((1, 2))
        runs = np.split(seq, np.flatnonzero(np.diff(good.astype(int)) != 0) + 1)
        runs = [r for r in runs if not np.isnan(r).any()]
        (test if held_out(name, args.holdout) else train).extend(runs)
    frames = np.concatenate(train)
    print(f"{len(seqs)} clips, {len(frames)} training frames, {sum(map(len, test))} held-out frames")
    mean, aligned = procrustes_mean(frames[::2])
    X = (aligned - mean).reshape(len(aligned), -1)
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    k = args.components
    stddev = S[:k] / np.sqrt(len(X))
    basis = ShapeBasis(args.backend, mean.astype(np.float32), Vt[:k].astype(np.float32), stddev.astype(np.float32))
    errors = {kk: recon_error(basis, test, kk) for kk in tqdm([0, 8, 12, 16, 20, 24, 32, 40, 48], desc="held-out")}
    cfg = StructureConfig()
    priors = fit_priors(basis, train, cfg, args.size)
    basis = ShapeBasis(basis.backend, basis.mean, basis.components, basis.stddev, priors)
    out = args.out or Path(__file__).resolve().parents[1] / "streamcodec" / "assets" / f"shape_basis_{args.backend}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    basis.save(out)
    record = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor()} {platform.python_version()}",
        "seconds": round(time.time() - t0, 1),
        "backend": args.backend, "basis_id": basis.basis_id.hex(),
        "clips": len(seqs), "train_frames": int(len(frames)), "heldout_frames": int(sum(map(len, test))),
        "heldout_clips": sorted(n for n in seqs if held_out(n, args.holdout)),
        "components": k, "stddev": [round(float(s), 5) for s in stddev],
        "heldout_mean_error_px_at_256": {str(kk): round(v, 3) for kk, v in errors.items()},
        "priors_config": cfg.__dict__,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("basis_id", "heldout_mean_error_px_at_256", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
