"""Rate-quality benchmark runner: streamcodec, the freeze anchor and the classical codecs, same clips, same rules.

Every finished point is cached as JSON (keyed by clip, codec, variant, parameter,
frame count and the metric sampling), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..config import SessionConfig, load_config
from ..metrics.weights import cache_dir
from .clips import list_clips, prepared

log = logging.getLogger(__name__)

BASELINES = ("libx264", "libx265", "libsvtav1", "libvpx-vp9")
FACE_SIZE = 128
RUNNER_VERSION = 2  # bump when scoring changes so cached points are recomputed


@dataclass(frozen=True)
class Sampling:
    """Which frames each metric sees: PSNR every frame, the others every k-th frame from k/2 on.

    Starting at k/2 rather than 0 keeps the first frame (every codec's key frame, its best) from
    being over-represented. Sized so the full benchmark fits in about an hour on 2 cores: LPIPS-VGG
    and DISTS take ~0.5 s a 256x256 frame, so they see 3 frames of a 10 s clip (about 45 frames a
    point over the 18 bench clips); the reference side of each is embedded once per clip.
    """

    lpips_alex: int = 10
    ms_ssim: int = 10
    costly: int = 80  # LPIPS-VGG, DISTS, identity
    keypoints: int = 10

    @staticmethod
    def frames(k: int, n: int) -> slice:
        """Every k-th of n frames, from k/2 (from 0 when the clip is shorter than that)."""
        return slice(k // 2 if k // 2 < n else 0, None, k)


@dataclass(frozen=True)
class Job:
    codec: str  # "streamcodec" (warp decoder), "streamcodec-learned", "freeze" or a PyAV encoder name
    variant: str = "full"
    param: int = 0  # crf/cq, or the key-frame byte budget for streamcodec


@dataclass
class Truth:
    """Per-clip facts of the input, computed once: face boxes, landmarks, and the reference side of
    every full-reference network metric (half of their cost when embedded per point)."""

    boxes: list[tuple[int, int, int, int]]
    landmarks: list[np.ndarray | None]
    refs: dict[str, object] = field(default_factory=dict)


class Scorer:
    def __init__(self, sampling: Sampling) -> None:
        from ..metrics import DISTS, LPIPS, IdentityDistance, KeypointDistance

        self.s = sampling
        self.alex, self.vgg, self.dists = LPIPS("alex"), LPIPS("vgg"), DISTS()
        self.kp, self.ident = KeypointDistance(), IdentityDistance()

    def truth(self, frames: np.ndarray) -> Truth:
        from ..metrics import face_box

        boxes, lms, last = [], [], None
        for f in frames:
            lm = self.kp.landmarks(f)
            if lm is not None:
                last = face_box(lm[:, :2], f.shape, 0.15)
            boxes.append(last)
            lms.append(None if lm is None else lm[:, :2])
        first = next((b for b in boxes if b is not None), (0, 0, frames.shape[2], frames.shape[1]))
        t = Truth([b or first for b in boxes], lms)
        faces = self._faces(frames, t.boxes)
        a, c = self._slices(len(frames))
        t.refs = {
            "lpips_alex": self.alex.reference(frames[a]), "lpips_alex_face": self.alex.reference(faces[a]),
            "lpips_vgg": self.vgg.reference(frames[c]), "lpips_vgg_face": self.vgg.reference(faces[c]),
            "dists": self.dists.reference(frames[c]), "dists_face": self.dists.reference(faces[c]),
            "identity": self.ident.reference(frames[c]), "faces": faces,
        }
        return t

    def _slices(self, n: int) -> tuple[slice, slice]:
        return Sampling.frames(self.s.lpips_alex, n), Sampling.frames(self.s.costly, n)

    def _faces(self, imgs: np.ndarray, boxes) -> np.ndarray:
        from ..metrics import face_crop

        return np.stack([cv2.resize(face_crop(im, b), (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
                         for im, b in zip(imgs, boxes)])

    def score(self, ref: np.ndarray, dec: np.ndarray, truth: Truth) -> dict[str, float]:
        from ..metrics import ms_ssim, psnr

        s, r = self.s, truth.refs
        fr, fd = r["faces"], self._faces(dec, truth.boxes)
        n = len(ref)
        a, c, m = self._slices(n) + (Sampling.frames(s.ms_ssim, n),)
        kp_idx = [i for i in range(n)[Sampling.frames(s.keypoints, n)] if truth.landmarks[i] is not None]
        kp = [self._kp_dist(truth.landmarks[i], dec[i]) for i in kp_idx]
        out = {
            "psnr": float(np.mean([psnr(x, y) for x, y in zip(ref, dec)])),
            "psnr_face": float(np.mean([psnr(x, y) for x, y in zip(fr, fd)])),
            "ms_ssim": float(np.mean([ms_ssim(x, y) for x, y in zip(ref[m], dec[m])])),
            "lpips_alex": float(self.alex(r["lpips_alex"], dec[a]).mean()),
            "lpips_alex_face": float(self.alex(r["lpips_alex_face"], fd[a]).mean()),
            "lpips_vgg": float(self.vgg(r["lpips_vgg"], dec[c]).mean()),
            "lpips_vgg_face": float(self.vgg(r["lpips_vgg_face"], fd[c]).mean()),
            "dists": float(self.dists(r["dists"], dec[c]).mean()),
            "dists_face": float(self.dists(r["dists_face"], fd[c]).mean()),
            "keypoint_px": float(np.nanmean(kp)) if kp else float("nan"),
            "keypoint_lost": float(np.mean([np.isnan(k) for k in kp])) if kp else float("nan"),
            "identity": float(np.nanmean(self.ident.against(r["identity"], dec[c]))),
        }
        return out

    def _kp_dist(self, ref_lm: np.ndarray, img: np.ndarray) -> float:
        lm = self.kp.landmarks(img)
        return float("nan") if lm is None else float(np.linalg.norm(lm[:, :2] - ref_lm, axis=1).mean())


# What each streamcodec job codes with: (texture codec, decoder). Each stream's rate is its own
# whole file, so "learned" pays for its learned texture codes.
STREAMCODEC_JOBS = {"streamcodec": ("colourstats", "warp"), "streamcodec-learned": ("learned", "learned")}


def run_streamcodec(frames: np.ndarray, cfg: SessionConfig, budget: int, work: Path,
                    kind: str = "streamcodec") -> tuple[dict, np.ndarray, dict]:
    from ..bitstream import PacketType
    from ..files import decode_file, encode_frames

    texture, decoder = STREAMCODEC_JOBS[kind]
    c = replace(cfg, keyframe=replace(cfg.keyframe, max_bytes=budget), texture=replace(cfg.texture, codec=texture))
    path = work / f"sc_{budget}.scv"
    t0 = time.perf_counter()
    encode_frames(list(frames), path, c, progress=False)
    enc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    contents, dec, _ = decode_file(path, decoder=replace(cfg.decoder, name=decoder))
    dec_s = time.perf_counter() - t0
    total = path.stat().st_size
    key = [p for p in contents.packets if p.type == PacketType.KEYFRAME]
    first_key = key[0].wire_size + (total - sum(p.wire_size for p in contents.packets))  # + stream header
    info = {"bytes": total, "encode_s": enc_s, "decode_s": dec_s, "keyframes": len(key)}
    return info, np.stack([d.image for d in dec]), {"first_key_bytes": first_key}


def _key(clip: Path, job: Job, n: int, sampling: Sampling, extra: str = "") -> str:
    text = json.dumps([RUNNER_VERSION, clip.name, asdict(job), n, asdict(sampling), extra])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class BenchConfig:
    folder: Path
    max_frames: int = 250
    clips: int = 0
    codecs: tuple[str, ...] = BASELINES
    variants: tuple[str, ...] = ("full", "half_res", "half_fps")
    streamcodec_budgets: tuple[int, ...] = (1500, 3000, 6000)
    streamcodec_kinds: tuple[str, ...] = ("streamcodec",)  # keys of STREAMCODEC_JOBS
    sweep_stride: int = 1  # use every n-th parameter of each baseline sweep
    sampling: Sampling = field(default_factory=Sampling)
    store: Path | None = None  # where finished points are cached (default: the user cache)
    session: Path | None = None  # streamcodec's settings (default: configs/default.yaml)


def jobs_for(bc: BenchConfig) -> list[Job]:
    from .baselines import default_sweep

    jobs = [Job(k, "full", b) for k in bc.streamcodec_kinds for b in bc.streamcodec_budgets]
    # The freeze anchor at each key-frame budget: the same first key frame, shown for the whole clip.
    jobs += [Job("freeze", "full", b) for b in bc.streamcodec_budgets]
    for codec in bc.codecs:
        for variant in bc.variants:
            jobs += [Job(codec, variant, p) for p in default_sweep(codec, variant)[:: bc.sweep_stride]]
    return jobs


def _clip_rows(clip: Path, bc: BenchConfig, jobs: list[Job], scorer: "_LazyScorer", tick=lambda: None) -> list[dict]:
    from .baselines import encode_decode

    cfg = load_config(bc.session)
    store = bc.store or cache_dir() / "bench_points"
    store.mkdir(parents=True, exist_ok=True)
    frames = prepared(clip, cfg.size, bc.max_frames)
    dur = len(frames) / cfg.fps
    truth, rows = None, []
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            cpath = store / f"{_key(clip, job, len(frames), bc.sampling, _session_tag(job, cfg))}.json"
            if cpath.exists():
                rows.append(json.loads(cpath.read_text()))
                tick()
                continue
            truth = truth or scorer.get().truth(frames)
            if job.codec in STREAMCODEC_JOBS:
                info, dec, extra = run_streamcodec(frames, cfg, job.param, Path(tmp), job.codec)
            elif job.codec == "freeze":
                # The decoded first key frame for the whole clip, at its own bits (header included).
                info, dec, extra = run_streamcodec(frames[:1], cfg, job.param, Path(tmp))
                info = {"bytes": extra["first_key_bytes"], "encode_s": info["encode_s"], "decode_s": 0.0,
                        "keyframes": 1}
                dec = np.repeat(dec[:1], len(frames), 0)
            else:
                point, dec = encode_decode(frames, job.codec, job.param, job.variant)
                info = {"bytes": point.bytes, "encode_s": point.encode_s, "decode_s": point.decode_s,
                        "keyframes": point.keyframes}
            row = {"clip": clip.name, "frames": len(frames), **asdict(job), **info,
                   "kbps": info["bytes"] * 8 / dur / 1000, **scorer.get().score(frames, dec, truth)}
            cpath.write_text(json.dumps(row))
            rows.append(row)
            tick()
    return rows


def reuse_rows(path: Path, rows: list[dict], skip: set[str]) -> list[dict]:
    """Points of an earlier run (its rd_points.json) for codecs this run did not measure, on the clips
    it did, with the same frame counts; raises when the earlier run lacks a clip."""
    old = json.loads(Path(path).read_text())
    frames = {r["clip"]: r["frames"] for r in rows}
    out = [r for r in old if r["codec"] not in skip and frames.get(r["clip"]) == r["frames"]]
    missing = set(frames) - {r["clip"] for r in out}
    if missing:
        raise ValueError(f"{path} has no points for {sorted(missing)[:3]}")
    return out


def _session_tag(job: Job, cfg: SessionConfig) -> str:
    """streamcodec's points are cached per session settings and, for the learned decoder, per
    weights: other settings or retrained weights are measured anew."""
    if job.codec not in STREAMCODEC_JOBS and job.codec != "freeze":
        return ""
    tag = json.dumps(asdict(cfg), sort_keys=True)
    if job.codec != "streamcodec-learned":
        return tag
    from ..decoder.learned import model_id_of, weights_path

    return tag + model_id_of(weights_path(cfg.decoder.weights)).hex()


class _LazyScorer:
    """Loads the metric networks only when a point is not in the cache."""

    def __init__(self, sampling: Sampling) -> None:
        self._sampling, self._scorer = sampling, None

    def get(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer(self._sampling)
        return self._scorer


def _worker_clip(args: tuple[Path, BenchConfig, list[Job], int]) -> list[dict]:
    import torch

    clip, bc, jobs, threads = args
    torch.set_num_threads(threads)  # several workers with all threads each thrash the cores
    return _clip_rows(clip, bc, jobs, _LazyScorer(bc.sampling))


def run(bc: BenchConfig, progress: bool = True, workers: int = 1) -> list[dict]:
    """All points for all clips; each a dict of rate, timings and scores.

    With workers > 1, clips run in parallel processes (one clip each at a time).
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    clips = list_clips(bc.folder, bc.clips)
    jobs = jobs_for(bc)
    if workers <= 1:
        scorer = _LazyScorer(bc.sampling)
        bar = tqdm(total=len(clips) * len(jobs), desc="bench points", disable=not progress)
        rows = [r for clip in clips for r in _clip_rows(clip, bc, jobs, scorer, bar.update)]
        bar.close()
        return rows
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_worker_clip, [(c, bc, jobs, threads) for c in clips])
        return [r for rs in tqdm(results, total=len(clips), desc="bench clips", disable=not progress) for r in rs]
