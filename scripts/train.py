"""Train the learned decoder: generator + texture encoder + the codes' entropy model, jointly.

    python scripts/cache_pairs.py                      # once: real decoder inputs from train/
    python scripts/train.py --config configs/train_generator.yaml --out runs/generator
    torchrun --nproc_per_node 2 scripts/train.py ...   # data parallel (gloo on CPU, nccl on GPUs)
    python scripts/train.py ... --export               # copy the result into streamcodec/assets/

Loss: L1 + LPIPS(alex, the project's offline weights) + lambda x code bits. For the first
`code_noise_steps` steps the generator sees the noisy codes instead of the rounded ones (see
CodeEntropyModel.noisy_codes).
Resumable: --out holds last.safetensors (weights), optim.safetensors (Adam
moments) and state.json; rerunning the same command continues where it
stopped. Logs go to --out/log.jsonl, sample images (warp | generator | truth)
to --out/samples/, the held-out validation to the log at every val_every.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from streamcodec.decoder.generator import MASK_SCALE, reference_input, region_stack, render_sketch
from streamcodec.decoder.learned import (ASSET, LearnedModel, ModelMismatch, full_arch, grow_into, load_model,
                                         model_id_of, record_of, save_model, to_image, to_tensor)
from streamcodec.eval.clips import DEFAULT_CATALOGUE, cache_dir, identities
from streamcodec.keyframe.restore import bits_per_pixel
from streamcodec.metrics.lpips import load_lpips_net
from streamcodec.session import get_backend_layout
from streamcodec.structure.landmarks import FaceLayout, layout_from_json


def load_clip(path: Path) -> dict[str, np.ndarray]:
    """A cached clip's arrays; a packed one's (scripts/pack_pairs.py) JPEG images decoded to RGB and
    its fixed-point landmarks to float pixels."""
    d = dict(np.load(path))  # allow_pickle stays off: arrays only
    for key in [k for k in d if k.endswith("__jpg")]:
        name, blob, ends = key[:-5], d.pop(key), d.pop(key[:-5] + "__end")
        starts = np.concatenate([[0], ends[:-1]])
        d[name] = np.stack([cv2.imdecode(blob[a:b], cv2.IMREAD_COLOR)[..., ::-1] for a, b in zip(starts, ends)])
    for key in [k for k in d if k.endswith("__q32")]:
        d[key[:-5]] = d.pop(key).astype(np.float32) / 32
    return d


def data_layout(data: Path) -> FaceLayout:
    """The face layout the pairs were made with: a pack carries it (the GPU machine has no mediapipe)."""
    packed = data / "layout.json"
    return layout_from_json(packed.read_text()) if packed.exists() else get_backend_layout("mediapipe478")


class Pairs:
    """Training samples from the cached clips (scripts/cache_pairs.py): real decoder inputs.

    A sample is a predicted frame (warp of the decoded key frame) or, with probability
    `p_key`, a key frame itself (decoded key image -> original), cropped to `crop` pixels
    around the face; the texture encoder sees the whole original key frame.
    """

    def __init__(self, files: list[Path], crop: int, p_key: float, layout: FaceLayout, p_flip: float = 0.0) -> None:
        self.clips = [load_clip(f) for f in files]
        self.index = [(c, i) for c, d in enumerate(self.clips) for i in range(len(d["target"]))]
        self.layout = layout
        self.crop, self.p_key, self.p_flip = crop, p_key, p_flip

    def __len__(self) -> int:
        return len(self.index)

    def item(self, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c, i = self.index[k]
        d = self.clips[c]
        key = int(d["key"][i])
        size = d["target"].shape[1]
        person = d["key_person"][key]
        if rng.random() < self.p_key:
            warp, target, lm = d["key_images"][key], d["key_originals"][key], d["key_landmarks"][key]
        else:
            warp, target, lm = d["warp"][i], d["target"][i], d["landmarks"][i]
        klm = d["key_landmarks"][key]
        sketch = render_sketch(lm, self.layout, size)
        masks = region_stack(lm, self.layout, person, size)
        n, q = self.crop, int(round(1 / MASK_SCALE)) * 2  # offsets on the 1/8 grid keep every scale aligned
        centre = lm.mean(0) + rng.uniform(-0.2, 0.2, 2) * size
        x0, y0 = (np.clip(centre - n / 2, 0, size - n) // q * q).astype(int)
        s = slice(y0, y0 + n), slice(x0, x0 + n)
        ms = slice(y0 // 4, (y0 + n) // 4), slice(x0 // 4, (x0 + n) // 4)
        sample = {"warp": warp[s], "target": target[s], "sketch": sketch[:, s[0], s[1]], "masks": masks[:, ms[0], ms[1]],
                  "ref_orig": d["key_originals"][key], "ref_masks": region_stack(klm, self.layout, person, size),
                  "ref_image": d["key_images"][key][s], "ref_person": person[None][:, s[0], s[1]].astype(np.float32)}
        if rng.random() < self.p_flip:
            sample = mirrored(sample)
        return sample

    def batch(self, ks, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        items = [self.item(int(k), rng) for k in ks]
        stacked = {name: np.stack([it[name] for it in items]) for name in items[0]}
        return {name: to_tensor(x) if x.dtype == np.uint8 else torch.from_numpy(x) for name, x in stacked.items()}


def mirrored(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A sample mirrored left-right, every image and mask of it alike: faces are nearly symmetric,
    so this doubles the distinct frames a run sees (the cache holds ~7000). A region keeps its name
    (the left eye's mask now covers the right eye) in the encoder's masks as in the generator's, so
    each code is still pooled from and spread over the same pixels."""
    # images are (H, W, 3) uint8, sketches and masks (C, H, W) float32 (as Pairs.batch tells them apart)
    return {k: np.ascontiguousarray(v[:, ::-1] if v.dtype == np.uint8 else v[..., ::-1]) for k, v in sample.items()}


class Batches(torch.utils.data.IterableDataset):
    """Endless random batches, built in DataLoader worker processes: on a GPU the per-sample
    rendering (sketch, region masks), not the network, bounds the step rate. Each worker draws
    from its own seeded stream."""

    def __init__(self, pairs: Pairs, batch: int, seed: list[int]) -> None:
        self.pairs, self.batch, self.seed = pairs, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()  # None in the training process: the seed as given
        rng = np.random.default_rng(self.seed + ([info.id] if info else []))
        while True:
            yield self.pairs.batch(rng.integers(0, len(self.pairs), self.batch), rng)


def batch_stream(pairs: Pairs, batch: int, seed: list[int], workers: int):
    batches = Batches(pairs, batch, seed)
    if not workers:
        return iter(batches)
    return iter(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers, prefetch_factor=4,
                                            persistent_workers=True))


def run(model: LearnedModel, b: dict[str, torch.Tensor], n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model on (the first n samples of) a batch: (frames, code bits)."""
    b = {k: v[:n] for k, v in b.items()}
    ref = reference_input(b["ref_image"], b["ref_person"]) if model.generator.ref_input else None
    return model(b["ref_orig"], b["ref_masks"], b["warp"], b["sketch"], b["masks"], ref)


class KeyPairs:
    """Samples for the key-frame restorer stage (scripts/cache_keys.py): a coded key frame and its
    original, the same random crop of both, mirrored half the time, with the frame's coded bits
    per pixel (of the whole frame, as the decoder knows it)."""

    def __init__(self, files: list[Path], crop: int) -> None:
        clips = [dict(np.load(f)) for f in files]  # arrays only: no pickle
        self.decoded = np.concatenate([c["decoded"] for c in clips])
        self.original = np.concatenate([c["original"] for c in clips])
        self.bpp = bits_per_pixel(np.concatenate([c["coded_bytes"] for c in clips]).astype(np.float32),
                                  *self.decoded.shape[1:3])
        self.crop = crop

    def __len__(self) -> int:
        return len(self.decoded)

    def batch(self, ks, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        size, n = self.decoded.shape[1], self.crop
        keys, targets = [], []
        for k in ks:
            y0, x0 = (rng.integers(0, (size - n) // 4 + 1, 2) * 4) if n < size else (0, 0)
            s = slice(y0, y0 + n), slice(x0, x0 + n)
            a, t = self.decoded[k][s], self.original[k][s]
            if rng.random() < 0.5:
                a, t = a[:, ::-1], t[:, ::-1]
            keys.append(a)
            targets.append(t)
        return {"key": to_tensor(np.stack(keys)), "target": to_tensor(np.stack(targets)),
                "bpp": torch.from_numpy(self.bpp[np.asarray(ks)])}


class Stage(NamedTuple):  # not a dataclass: tests load this script as a module outside sys.modules
    base: str  # the decoder output it is measured against ("val_lpips_<base>")
    cache: str  # its samples' folder under the streamcodec cache, made by `script`
    script: str


STAGES = {"joint": Stage("warp", "pairs", "cache_pairs.py"), "restorer": Stage("decoded", "keys", "cache_keys.py")}


def predict(model: LearnedModel, b: dict[str, torch.Tensor], stage: str,
            n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the stage's output, what the decoder had without it, code bits) on (the first n of) a batch."""
    if stage == "restorer":
        key = b["key"][:n]
        return model.restorer(key, b["bpp"][:n]), key, torch.zeros(key.shape[0], device=key.device)
    out, bits = run(model, b, n)
    return out, b["warp"][:n], bits


def losses(model: LearnedModel, lp, b: dict[str, torch.Tensor], cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
    out, _, bits = predict(model, b, cfg["stage"])
    l1 = (out - b["target"]).abs().mean()
    per = lp(out, b["target"]).mean()
    loss = cfg["w_l1"] * l1 + cfg["w_lpips"] * per + cfg["lambda_rate"] * bits.mean()
    return loss, {"l1": l1.item(), "lpips": per.item(), "bits": bits.mean().item()}


@torch.no_grad()
def validate(model: LearnedModel, lp, val, n: int, stage: str = "joint") -> dict[str, float]:
    """The stage's output vs the decoder's without it, on the same held-out samples (fixed seed:
    comparable across steps)."""
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(123)
    ks = rng.integers(0, len(val), n)
    rows = []
    for j in range(0, n, 8):
        b = {k: v.to(device) for k, v in val.batch(ks[j:j + 8], rng).items()}
        out, base, bits = predict(model, b, stage)
        rows.append((lp(out, b["target"]).mean().item(), lp(base, b["target"]).mean().item(),
                     (out - b["target"]).abs().mean().item(), (base - b["target"]).abs().mean().item(),
                     bits.mean().item()))
    model.train()
    r, name = np.mean(rows, 0), STAGES[stage].base
    return {"val_lpips": r[0], f"val_lpips_{name}": r[1], "val_l1": r[2], f"val_l1_{name}": r[3], "val_bits": r[4]}


def sample_image(model: LearnedModel, b: dict[str, torch.Tensor], path: Path, stage: str = "joint") -> None:
    """Rows of (decoder without the stage | with it | truth)."""
    with torch.no_grad():
        model.eval()
        out, base, _ = predict(model, b, stage, 4)
        model.train()
    rows = [torch.cat([base[k], out[k], b["target"][k]], 2) for k in range(out.shape[0])]
    cv2.imwrite(str(path), to_image(torch.cat(rows, 1)[None].cpu())[..., ::-1])


def _save_optim(opt: torch.optim.Optimizer, path: Path) -> None:
    # state_dict() numbers the parameters in param-group order: that index, not the tensor, is the key
    tensors = {f"{i}.{k}": v.contiguous() for i, st in opt.state_dict()["state"].items() for k, v in st.items()
               if torch.is_tensor(v)}
    save_file(tensors, str(path))


def _load_optim(opt: torch.optim.Optimizer, path: Path) -> None:
    flat = load_file(str(path))
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _split(files: list[Path], data: dict, catalogue: Path = DEFAULT_CATALOGUE) -> tuple[list[Path], list[Path]]:
    """(train, validation) cached clips.

    `val_identities: n` holds out every clip of n people (catalogue ids, drawn by hash), so no
    validation person is seen in training, as on bench/; one clip per person (the first by name)
    is validated on, so a person filmed in many near-identical clips (MEAD) does not outweigh the
    others. The older `val_clips: n` (the last n
    clips by name) let people with several clips sit on both sides, and the validation flattered
    whatever fitted the training people: it ranked stages unlike bench/."""
    if "val_identities" in data:
        ids = identities(catalogue)
        person = {f: ids.get(f.stem.rsplit("_", 1)[0]) for f in files}  # cached as <clip stem>_<max frames>
        if None in person.values():
            unknown = sorted(f.name for f, p in person.items() if p is None)[:3]
            raise SystemExit(f"cached clips not in {catalogue}: {unknown}")
        people = sorted(set(person.values()), key=lambda p: hashlib.sha256(p.encode()).hexdigest())
        held = set(people[: data["val_identities"]]) if len(people) > data["val_identities"] else set()
        val = {person[f]: f for f in reversed(files) if person[f] in held}  # the first clip by name wins
        return [f for f in files if person[f] not in held], sorted(val.values())
    n_val = data["val_clips"] if len(files) > data["val_clips"] else 0
    return files[: len(files) - n_val], files[len(files) - n_val:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/train_generator.yaml")
    ap.add_argument("--out", default="runs/generator")
    ap.add_argument("--data", default=None,
                    help="cached samples (default: the cache the config's stage trains on, pairs or keys)")
    ap.add_argument("--catalogue", default=str(DEFAULT_CATALOGUE), help="clip -> person ids (val_identities)")
    ap.add_argument("--steps", type=int, default=None, help="override the config's step count")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (resumably) after this wall time")
    ap.add_argument("--finish-on-stop", action="store_true",
                    help="write final weights even when --max-minutes stops the run early (the record says so)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader processes building batches (0: in the training process)")
    ap.add_argument("--export", action="store_true", help="copy the final weights to streamcodec/assets/")
    ap.add_argument("--init", default=None,
                    help="start from these weights (a fine-tuning stage; their record is kept in the new one)")
    ap.add_argument("--evaluate", nargs="+", metavar="WEIGHTS",
                    help="no training: score these weights files on the held-out clips' whole frames")
    ap.add_argument("--eval-out", default=None, help="with --evaluate: also write the scores to this JSON file")
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    stage = cfg.setdefault("stage", "joint")
    if stage not in STAGES:
        sys.exit(f"{args.config}: stage must be one of {sorted(STAGES)}, not {stage!r}")
    args.data = args.data or str(cache_dir() / STAGES[stage].cache)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.evaluate:
        return evaluate(args, cfg)
    if args.steps is not None:
        cfg["steps"] = args.steps
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else "cpu"
    if ddp:
        dist.init_process_group("nccl" if device != "cpu" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    random.seed(cfg["seed"] + rank)
    torch.manual_seed(cfg["seed"])  # identical initial weights on every rank

    files = sorted(Path(args.data).glob("*.npz"))
    if not files:
        sys.exit(f"no cached samples in {args.data}: run scripts/{STAGES[stage].script} first")
    train_files, val_files = _split(files, cfg["data"], Path(args.catalogue))
    mine = train_files[rank::world] if len(train_files) >= world else train_files
    if stage == "restorer":
        data = KeyPairs(mine, cfg["crop"])
        val = KeyPairs(val_files, cfg["crop"]) if val_files and rank == 0 else None
    else:
        layout = data_layout(Path(args.data))
        data = Pairs(mine, cfg["crop"], cfg["p_key"], layout, cfg.get("p_flip", 0.0))
        val = Pairs(val_files, cfg["crop"], cfg["p_key"], layout) if val_files and rank == 0 else None
    if device != "cpu":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its kernels once
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    model = LearnedModel(**full_arch(cfg["model"])).to(device)
    lp = load_lpips_net("alex").to(device)
    if stage == "restorer":  # the rest of the model is what --init brought and stays as it is
        if model.restorer is None:
            sys.exit(f"{args.config}: the restorer stage needs model.restore_width > 0")
        model.requires_grad_(False)
        model.restorer.requires_grad_(True)
    elif model.restorer is not None:  # a joint stage on top of a restorer: the pairs were made with it as it is
        model.restorer.requires_grad_(False)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    aux_params = [p for n, p in trained if n.endswith("quantiles")]
    main_params = [p for n, p in trained if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg["lr"])
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None
    start, elapsed = 0, 0.0
    init_record = None
    if args.init:
        init_record = _init_from(model, Path(args.init), cfg["model"])
    if (out / "state.json").exists():
        model.load_state_dict(load_file(str(out / "last.safetensors")), strict=False)
        _load_optim(opt, out / "optim.safetensors")
        st = json.loads((out / "state.json").read_text())
        start, elapsed = st["step"], st["elapsed_s"]
        if rank == 0:
            print(f"resuming at step {start}")
    if ddp:
        for p in model.parameters():
            dist.broadcast(p.data, 0)
    params = [p for _, p in trained]
    batches = batch_stream(data, cfg["batch"], [cfg["seed"], rank, start], args.workers)  # resumed: new batches
    t0 = time.time()
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    if rank == 0 and start == 0:
        (out / "split.json").write_text(json.dumps(
            {"train": [f.name for f in train_files], "val": [f.name for f in val_files]}, indent=1))
    bar = tqdm(range(start, cfg["steps"]), disable=rank != 0, desc="train", initial=start, total=cfg["steps"])
    model.train()
    step = start
    for step in bar:
        # the cosine follows whichever budget runs out first, steps or wall time, so a time-bounded run
        # still ends annealed
        progress = step / cfg["steps"]
        if args.max_minutes:
            progress = min(1.0, max(progress, (elapsed + time.time() - t0) / (args.max_minutes * 60)))
        lr = cfg["lr_min"] + 0.5 * (cfg["lr"] - cfg["lr_min"]) * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        model.entropy.noisy_codes = step < cfg.get("code_noise_steps", 0)
        b = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        loss, m = losses(model, lp, b, cfg)
        aux = model.entropy.z_bottleneck.loss() if aux_params else torch.zeros((), device=device)
        opt.zero_grad(set_to_none=False)
        if aux_opt is not None:
            aux_opt.zero_grad(set_to_none=False)
        (loss + aux).backward()
        if ddp:  # one all-reduce of all gradients: every rank applies the same mean gradient
            grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
            dist.all_reduce(grads)
            grads /= world
            k = 0
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.copy_(grads[k:k + p.numel()].view_as(p))
                k += p.numel()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        if aux_opt is not None:
            aux_opt.step()
        done = step + 1
        stop = args.max_minutes and (elapsed + time.time() - t0) > args.max_minutes * 60
        if ddp:
            flag = torch.tensor([float(bool(stop))], device=device)
            dist.all_reduce(flag)
            stop = flag.item() > 0
        if rank == 0:
            bar.set_postfix(l1=f"{m['l1']:.3f}", lp=f"{m['lpips']:.3f}", bits=f"{m['bits']:.0f}")
            rec = {"step": done, **m, "aux": float(aux.detach()), "lr": lr, "elapsed_s": elapsed + time.time() - t0}
            if done % cfg["val_every"] == 0 and val is not None:
                rec.update(validate(model, lp, val, cfg["val_samples"], stage))
                tqdm.write(json.dumps({k: round(v, 4) for k, v in rec.items()}))
            if done % cfg["log_every"] == 0 or "val_lpips" in rec:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if done % cfg["sample_every"] == 0:
                sample_image(model, b, out / "samples" / f"{done:06d}.png", stage)
            if done % cfg["ckpt_every"] == 0 or done == cfg["steps"] or stop:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "last.safetensors"))
                _save_optim(opt, out / "optim.safetensors")
                (out / "state.json").write_text(json.dumps({"step": done, "elapsed_s": elapsed + time.time() - t0}))
        if stop:
            break
    in_sync = True
    if ddp:  # every rank must hold the same weights, or the all-reduce was wrong
        sums = torch.stack([torch.cat([p.detach().flatten() for p in params]).double().sum(),
                            torch.tensor(float(step + 1), dtype=torch.float64)]).to(device)
        gathered = [torch.zeros_like(sums) for _ in range(world)]
        dist.all_gather(gathered, sums)
        in_sync = all(torch.equal(g, gathered[0]) for g in gathered)
    if rank == 0 and (step + 1 >= cfg["steps"] or (stop and args.finish_on_stop)):
        finish(model, lp, val, cfg, args, out, elapsed + time.time() - t0, world, device, in_sync, step + 1,
               init_record)
    if ddp:
        dist.destroy_process_group()


def evaluate(args, cfg: dict, samples: int = 96) -> None:
    """Whole 256x256 predicted frames of the validation clips (no key frames), the same samples for
    every weights file, each against the warp decoder's frame: where the bench scores, unlike the
    training crops."""
    _, val_files = _split(sorted(Path(args.data).glob("*.npz")), cfg["data"], Path(args.catalogue))
    val, lp = Pairs(val_files, 256, 0.0, data_layout(Path(args.data))), load_lpips_net("alex")
    scores = {str(w): {**validate(load_model(Path(w)), lp, val, samples), "model_id": model_id_of(Path(w)).hex()}
              for w in args.evaluate}
    print(json.dumps(scores, indent=1))
    if args.eval_out:
        Path(args.eval_out).write_text(json.dumps({"command": " ".join(["python"] + sys.argv), "samples": samples,
                                                   "val_clips": [f.name for f in val_files], "scores": scores},
                                                  indent=1))


def _init_from(model: LearnedModel, path: Path, arch: dict) -> dict:
    """Copies the weights of an earlier run into `model` (its architecture, or that grown: see
    grow_into); returns that run's record."""
    if full_arch(arch) != model.arch:
        sys.exit(f"--init {path}: the model is not the config's {arch}")
    try:
        grow_into(model, path)
    except ModelMismatch as exc:
        sys.exit(f"--init {path}: {exc}")
    return {"weights": str(path), "model_id": model_id_of(path).hex(), "record": record_of(path)}


def finish(model, lp, val, cfg, args, out: Path, wall_s: float, world: int, device, in_sync: bool,
           step_done: int, init_record: dict | None = None) -> None:
    metrics = validate(model, lp, val, cfg["val_samples"], cfg["stage"]) if val is not None else {}
    record = {"config": cfg, "command": " ".join(["python"] + sys.argv), "split": json.loads(
        (out / "split.json").read_text()), "final_val": metrics,
        "steps_done": step_done, "wall_s": round(wall_s), "processes": world,
        "hardware": f"{platform.machine()}, {os.cpu_count()} cpu cores"
                    + (f", {torch.cuda.get_device_name()}" if device != "cpu" else ""),
        "torch": torch.__version__}
    if init_record is not None:  # this run fine-tuned an earlier one: its whole history stays with the weights
        record["initialised_from"] = init_record
    model.cpu()
    mid = save_model(model, out / "final.safetensors", record)
    (out / "metrics.json").write_text(json.dumps({**metrics, "model_id": mid.hex(), "wall_s": wall_s, "steps_done": step_done,
                                                  "processes": world, "ranks_in_sync": in_sync}, indent=1))
    print(json.dumps({**metrics, "model_id": mid.hex()}))
    if args.export:
        shutil.copy(out / "final.safetensors", ASSET)
        print(f"exported to {ASSET}")


if __name__ == "__main__":
    main()
