"""The learned decoder's generator on this machine's device: frames per second at 256x256 and whether
the same weights give the same frames as on the CPU.

    python scripts/generator_speed.py --out docs/results/learned/gpu_speed.json

On a GPU it times the eager module in float32 and under bfloat16 autocast, one frame at a time (a
call) and in batches of 8 (a file), each the median of --runs runs of --frames frames after a
warm-up, with the device synchronised around every run. The CPU's eager output on the same inputs
is the reference: the largest difference is reported in 8-bit levels (1 = one LSB). Times cover
the network only (warp, sketch and masks are CPU work that both decoders share).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from streamcodec.decoder.learned import ASSET, load_model, model_id_of


def inputs(code_ch: int, batch: int, size: int = 256) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    warp = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    sketch = (torch.rand(batch, 3, size, size, generator=g) > 0.95).float()
    texmap = torch.randn(batch, code_ch, size // 4, size // 4, generator=g)
    return warp, sketch, texmap


def timed(net, args, frames: int, runs: int, device: torch.device, bf16: bool) -> list[float]:
    """fps of `runs` runs, each of `frames` frames."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    batch = args[0].shape[0]
    calls = max(1, frames // batch)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for _ in range(10):
            net(*args)
        sync()
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(calls):
                net(*args)
            sync()
            out.append(calls * batch / (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(ASSET))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(Path(args.weights))
    net_cpu = model.generator
    code_ch = model.arch["code_ch"]
    net = load_model(Path(args.weights), device=str(device)).generator
    rows = []
    for batch in (1, 8):
        cpu_in = inputs(code_ch, batch)
        with torch.no_grad():
            ref = net_cpu(*cpu_in)
        x = tuple(t.to(device) for t in cpu_in)
        for bf16 in ((False, True) if device.type == "cuda" else (False,)):
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                y = net(*x).float().cpu()
            fps = timed(net, x, args.frames, args.runs, device, bf16)
            rows.append({"batch": batch, "dtype": "bfloat16 autocast" if bf16 else "float32",
                         "fps_median": statistics.median(fps), "fps_runs": [round(f, 1) for f in fps],
                         "max_diff_lsb_vs_cpu": float((y - ref).abs().max() * 127.5)})
    result = {"weights": args.weights, "model_id": model_id_of(Path(args.weights)).hex(),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "frame": "256x256", "frames_per_run": args.frames, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
