"""DISTS (Ding et al. 2020, "Image Quality Assessment: Unifying Structure and
Texture Similarity") in plain torch, without torchvision.

Follows ``DISTS_pytorch==0.1`` (``DISTS_pt.py``), the authors' reference: VGG16
with every maxpool replaced by L2 pooling, features of six stages (the [0, 1]
input itself and relu1_2 ... relu5_3), per-channel global mean ("structure")
and variance/covariance ("texture") similarities, weighted by the learned
alpha/beta. The VGG16 backbone and its weights are LPIPS's (``lpips.py``), the
alpha/beta are converted by ``weights.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .lpips import _TAPS, Reference, batched_distance, tap_outputs, vgg16_features
from .weights import DISTS_CHANNELS, ensure_dists_weights, ensure_lpips_weights

# DISTS normalises its [0, 1] input with the ImageNet statistics itself (unlike
# LPIPS's ScalingLayer on [-1, 1]); stage 0 is the unnormalised input.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_C1 = 1e-6
_C2 = 1e-6
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the same layers LPIPS-VGG taps.
_TAP_LAYERS = _TAPS["vgg"]


def _hann_filter(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # np.hanning(5)[1:-1] = (0.5, 1, 0.5): a 3x3 outer product normalised to sum 1.
    a = torch.tensor([0.5, 1.0, 0.5], dtype=dtype, device=device)
    g = a[:, None] * a[None, :]
    return (g / g.sum())[None, None]


class L2Pool(nn.Module):
    """sqrt(hann3x3 * x^2) with stride 2 and padding 1, per channel (DISTS's L2pooling).

    Stateless (the filter is built in ``forward``) so the model can be created on
    the meta device and its weights assigned, like LPIPS.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _hann_filter(x.dtype, x.device).expand(self.channels, 1, 3, 3)
        out = F.conv2d(x * x, w, stride=2, padding=1, groups=self.channels)
        return (out + 1e-12).sqrt()


class DISTSNet(nn.Module):
    """The torch module; ``DISTS`` wraps it for numpy uint8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features(pool=L2Pool)
        n = sum(DISTS_CHANNELS)
        self.alpha = nn.Parameter(torch.empty(1, n, 1, 1))
        self.beta = nn.Parameter(torch.empty(1, n, 1, 1))

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (N, 3, H, W) in [0, 1]; the six stages DISTS compares."""
        mean = torch.tensor(_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return [x, *tap_outputs(self.features, (x - mean) / std, _TAP_LAYERS)]

    def compare(self, sa: list[torch.Tensor], sb: list[torch.Tensor]) -> torch.Tensor:
        """Distances (N,) between two embeddings of N images each."""
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, DISTS_CHANNELS, dim=1)
        betas = torch.split(self.beta / w_sum, DISTS_CHANNELS, dim=1)
        total = torch.zeros(sa[0].shape[0], dtype=sa[0].dtype, device=sa[0].device)
        for fa, fb, alpha, beta in zip(sa, sb, alphas, betas):
            ma, mb = fa.mean((2, 3), keepdim=True), fb.mean((2, 3), keepdim=True)
            structure = (2 * ma * mb + _C1) / (ma * ma + mb * mb + _C1)
            va = ((fa - ma) ** 2).mean((2, 3), keepdim=True)
            vb = ((fb - mb) ** 2).mean((2, 3), keepdim=True)
            cov = (fa * fb).mean((2, 3), keepdim=True) - ma * mb
            texture = (2 * cov + _C2) / (va + vb + _C2)
            total = total + (alpha * structure + beta * texture).sum(dim=(1, 2, 3))
        return 1.0 - total

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (N, 3, H, W) in [0, 1]; returns (N,) distances."""
        n = a.shape[0]
        # One pass over both images halves the per-layer overhead.
        stages = self.embed(torch.cat([a, b]))
        return self.compare([f[:n] for f in stages], [f[n:] for f in stages])


def load_dists_net(vgg: Path | None = None, alpha_beta: Path | None = None) -> DISTSNet:
    state = {k: v for k, v in load_file(str(vgg or ensure_lpips_weights("vgg"))).items()
             if k.startswith("features.")}
    state |= load_file(str(alpha_beta or ensure_dists_weights()))
    # Built on the meta device: VGG's random init would only be overwritten.
    with torch.device("meta"):
        model = DISTSNet()
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def _to_unit_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


class DISTS:
    """DISTS distance between uint8 RGB images at their own size; lower is more similar.

    ``DISTS()(a, b)`` with a, b of shape (H,W,3) returns a 0-d array, with
    (N,H,W,3) an array of N distances.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 8,
                 vgg_weights: Path | None = None, alpha_beta: Path | None = None) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = load_dists_net(vgg_weights, alpha_beta).to(self.device)

    def __call__(self, a: "np.ndarray | Reference", b: np.ndarray) -> np.ndarray:
        return batched_distance(self.model, _to_unit_tensor, a, b, self.batch_size, self.device, "DISTS")

    def reference(self, a: np.ndarray) -> Reference:
        """The reference images' features, kept to score many decodings of the same frames."""
        return Reference.of(self.model, _to_unit_tensor, a, self.batch_size, self.device, "DISTS")
