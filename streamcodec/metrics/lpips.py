"""LPIPS v0.1 (Zhang et al. 2018) in plain torch, without torchvision.

The backbones mirror torchvision's ``alexnet().features`` / ``vgg16().features``
index for index, so the converted weights load by name; see ``weights.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from .image import as_frames
from .weights import ensure_lpips_weights

# The lpips package's ScalingLayer: maps [-1, 1] input to roughly the ImageNet
# normalisation the backbones were trained with.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10

# Indices in ``features`` whose ReLU outputs LPIPS compares.
_TAPS: dict[str, tuple[int, ...]] = {
    "alex": (1, 4, 7, 9, 11),
    "vgg": (3, 8, 15, 22, 29),
}
_CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
}
_VGG_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)


def _alexnet_features() -> nn.Sequential:
    # torchvision's trailing maxpool (index 12) is omitted: nothing taps it.
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )


def vgg16_features(pool: Callable[[int], nn.Module] | None = None) -> nn.Sequential:
    """torchvision's ``vgg16().features`` without its last maxpool.

    ``pool(channels)`` replaces each 2x2 maxpool (DISTS uses L2 pooling); the
    indices stay torchvision's, so the same converted weights load either way.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append(pool(in_ch) if pool is not None else nn.MaxPool2d(2, 2))
        else:
            assert isinstance(v, int)
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


def tap_outputs(features: nn.Sequential, x: torch.Tensor,
                taps: tuple[int, ...]) -> list[torch.Tensor]:
    """Outputs of ``features[i]`` for i in ``taps``; stops after the last tap."""
    outs: list[torch.Tensor] = []
    last = taps[-1]
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            outs.append(x)
        if i == last:
            break
    return outs


def _unit_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + _EPS)


class LPIPSNet(nn.Module):
    """The torch module; ``LPIPS`` wraps it for numpy uint8 images."""

    def __init__(self, net: str) -> None:
        super().__init__()
        if net not in _TAPS:
            raise ValueError(f"unknown LPIPS net {net!r}; expected 'alex' or 'vgg'")
        self.taps = _TAPS[net]
        self.features = _alexnet_features() if net == "alex" else vgg16_features()
        # Dropout precedes each linear layer in lpips but is inert in eval.
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (N, 3, H, W) in [-1, 1]; the unit-normalised features LPIPS compares."""
        shift = torch.tensor(_SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(_SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return [_unit_normalize(f) for f in tap_outputs(self.features, (x - shift) / scale, self.taps)]

    def compare(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """Distances (N,) between two embeddings of N images each."""
        total = torch.zeros(fa[0].shape[0], dtype=fa[0].dtype, device=fa[0].device)
        for a, b, lin in zip(fa, fb, self.lins):
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (N, 3, H, W) in [-1, 1]; returns (N,) distances."""
        n = a.shape[0]
        # One pass over both images halves the per-layer overhead.
        feats = self.embed(torch.cat([a, b]))
        return self.compare([f[:n] for f in feats], [f[n:] for f in feats])


def load_lpips_net(net: str, path: Path | None = None) -> LPIPSNet:
    state = load_file(str(path or ensure_lpips_weights(net)))
    # Built on the meta device: random init of VGG's 15M parameters would cost
    # about a second only to be overwritten.
    with torch.device("meta"):
        model = LPIPSNet(net)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def _to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


class LPIPS:
    """LPIPS v0.1 distance between uint8 RGB images; lower is more similar.

    ``LPIPS("alex")(a, b)`` with a, b of shape (H,W,3) returns a 0-d array,
    with (N,H,W,3) an array of N distances.
    """

    def __init__(self, net: str = "alex", device: str | torch.device = "cpu",
                 batch_size: int = 8, weights: Path | None = None) -> None:
        self.net = net
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = load_lpips_net(net, weights).to(self.device)

    def __call__(self, a: "np.ndarray | Reference", b: np.ndarray) -> np.ndarray:
        return batched_distance(self.model, _to_tensor, a, b, self.batch_size, self.device, "LPIPS")

    def reference(self, a: np.ndarray) -> "Reference":
        """The reference images' features, kept to score many decodings of the same frames."""
        return Reference.of(self.model, _to_tensor, a, self.batch_size, self.device, "LPIPS")


class Reference:
    """A full-reference metric's embedding of reference images, computed once.

    Scoring N codecs against the same clip embeds the reference N times otherwise:
    with VGG16 that is half of the metric's cost.
    """

    def __init__(self, batches: list[list[torch.Tensor]], shape: tuple[int, ...], single: bool) -> None:
        self.batches, self.shape, self.single = batches, shape, single

    @classmethod
    def of(cls, model: nn.Module, to_tensor, a: np.ndarray, batch_size: int, device: torch.device,
           metric: str) -> "Reference":
        x = as_frames(a, metric)
        with torch.inference_mode():
            batches = [model.embed(to_tensor(x[s:s + batch_size], device)) for s in range(0, len(x), batch_size)]
        return cls(batches, x.shape, a.ndim == 3)


def batched_distance(model: nn.Module, to_tensor, a: "np.ndarray | Reference", b: np.ndarray, batch_size: int,
                     device: torch.device, metric: str) -> np.ndarray:
    """A full-reference network metric over image pairs, in batches: 0-d for one pair, (N,) for N.

    `a` may be a :class:`Reference` made by the same metric with the same batch size.
    """
    ref = a if isinstance(a, Reference) else None
    single = ref.single if ref is not None else a.ndim == 3
    xb = as_frames(b, metric)
    shape = ref.shape if ref is not None else as_frames(a, metric).shape
    if shape != xb.shape:
        raise ValueError(f"shape mismatch: {shape} vs {xb.shape}")
    xa = None if ref is not None else as_frames(a, metric)
    out = np.empty(len(xb), dtype=np.float32)
    with torch.inference_mode():
        for i, s in enumerate(range(0, len(xb), batch_size)):
            e = s + batch_size
            tb = to_tensor(xb[s:e], device)
            if ref is not None:
                d = model.compare(ref.batches[i], model.embed(tb))
            else:
                d = model(to_tensor(xa[s:e], device), tb)
            out[s:e] = d.cpu().numpy()
    return out.reshape(()) if single else out
