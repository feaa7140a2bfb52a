"""How the generator runs when decoding: the same weights on one of three runtimes.

- "onnx": exported to ONNX in memory and run by ONNX Runtime (1.2x the
  TorchScript decode speed with 1 thread, level with 2, on this 2-core CPU:
  docs/results/learned_decoder.md),
- "traced": TorchScript, traced for one frame size, frozen, channels-last,
- "eager": the PyTorch module itself (what training runs; the reference).

"auto" picks the first one installed. A compiled generator is fixed to the
input shapes it was built with, so callers keep one per frame size. The ONNX
graph is built from the loaded weights in this process, never read from a
file or a stream.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Callable

import torch
from torch import nn

BACKENDS = ("onnx", "traced", "eager")
Runner = Callable[..., torch.Tensor]


def available() -> list[str]:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return ["traced", "eager"]
    return list(BACKENDS)


def resolve(backend: str) -> str:
    if backend == "auto":
        return available()[0]
    if backend not in available():
        raise ValueError(f"generator backend {backend!r} is not available here; available: {available()}")
    return backend


def compile_generator(net: nn.Module, args: tuple[torch.Tensor, ...], backend: str) -> Runner:
    """A callable with `net`'s signature for inputs shaped like `args`, on `backend` (not "auto")."""
    net = copy.deepcopy(net).eval()
    if backend == "eager":
        return net
    if backend == "traced":
        return _traced(net, args)
    if backend == "onnx":
        return _onnx(net, args)
    raise ValueError(f"unknown generator backend {backend!r}; one of {BACKENDS}")


def _traced(net: nn.Module, args: tuple[torch.Tensor, ...]) -> Runner:
    cl = torch.channels_last
    net = net.to(memory_format=cl)
    with warnings.catch_warnings():  # the tracer warns about the shape test it bakes in
        warnings.simplefilter("ignore")
        fn = torch.jit.freeze(torch.jit.trace(net, tuple(a.contiguous(memory_format=cl) for a in args)))

    def run(*xs: torch.Tensor) -> torch.Tensor:
        return fn(*(x.contiguous(memory_format=cl) for x in xs))

    return run


class _Head(nn.Module):
    """A generator's network without its final composition (Generator.head/compose)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.head(*xs)


def _onnx(net: nn.Module, args: tuple[torch.Tensor, ...]) -> Runner:
    """The generator's `head` runs in ONNX Runtime and its `compose` in torch: ORT's grid sampler
    takes 6x torch's time here."""
    import onnxruntime as ort

    names = [f"in{i}" for i in range(len(args))]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Head(net), args, buf, dynamo=False, input_names=names, opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    # Between frames the pool must not spin: the warp and the colour work run on the same cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def run(*xs: torch.Tensor) -> torch.Tensor:
        feed = {n: x.detach().contiguous().numpy() for n, x in zip(names, xs)}
        outs = tuple(torch.from_numpy(o) for o in sess.run(None, feed))
        with torch.no_grad():  # inputs: (warp, sketch, texmap[, ref])
            return net.compose(xs[0], outs, xs[3] if len(xs) > 3 else None)

    return run
