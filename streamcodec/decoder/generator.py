"""The generator network of the learned decoder and the inputs it is given.

It refines the warp decoder's frame instead of drawing one from nothing: the
warp already puts the reference's texture in the right place, so the network
spends its capacity on what the warp cannot do (the inside of a mouth opening
wider than in the reference, lids closing, the key frame's coding blur, seams
where the mesh folds). Inputs, all at the frame size:

- the warped reference (3 channels),
- a sketch of the current structure (face-part contours, the filled mouth
  opening, the filled eyes: 3 channels),
- the texture codes spread over the current frame's semantic regions, which
  modulate the features region by region (SPADE/SEAN-style normalisation),
- with `ref_input`, the decoded key frame as it is (unwarped) and its person
  mask (4 channels). The warp's mesh drags the background near the head along
  with it, while most backgrounds stand still: the network predicts an
  occlusion-style blend map that takes each pixel from the warp or from the
  unwarped key frame, before its residual.

With `flow`, the network also predicts a dense correction of the warp's
geometry (a learned motion stage): a displacement field at 1/4 of the frame
size, by which the warped frame is resampled before the residual is added.
The mesh is piecewise affine and knows nothing beyond its anchors, so it
tears along the jaw and drags hair and background; moving pixels fixes that
where painting a residual over them can only blur it.

Most of the work runs at 1/8 and 1/4 of the frame size; the residual is
produced at 1/2 and expanded to full size by pixel shuffle, which keeps the
network near 0.6 GFLOP per 256x256 frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..structure.landmarks import FaceLayout
from ..texture.regions import REGIONS, region_masks

SKETCH_CH = 3
MASK_SCALE = 0.25  # region masks are rendered at 1/4 of the frame size


def render_sketch(lm: np.ndarray, layout: FaceLayout, size: int) -> np.ndarray:
    """(3, size, size) float32 in [0, 1]: contours, mouth opening, eyes."""
    lines = np.zeros((size, size), np.uint8)
    loops = [layout.oval] + [loop for ls in layout.loops.values() for loop in ls]
    pts = [np.round(lm[list(loop)] * 16).astype(np.int32) for loop in loops]
    cv2.polylines(lines, pts, True, 255, 1, cv2.LINE_AA, shift=4)
    fills = []
    for name in ("mouth", "eyes"):
        m = np.zeros((size, size), np.uint8)
        for loop in layout.loops[name]:
            cv2.fillPoly(m, [np.round(lm[list(loop)] * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        fills.append(m)
    return np.stack([lines] + fills).astype(np.float32) / 255.0


def region_stack(lm: np.ndarray, layout: FaceLayout, person: np.ndarray | None, size: int) -> np.ndarray:
    """(R, size/4, size/4) float32 masks in REGIONS order."""
    m = region_masks(lm, layout, person, size, MASK_SCALE)
    return np.stack([m[r] for r in REGIONS]).astype(np.float32)


def spread(codes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """codes (B, C, R), masks (B, R, h, w) -> (B, C, h, w): each pixel carries its region's code."""
    return torch.einsum("bcr,brhw->bchw", codes, masks)


class SPADE(nn.Module):
    """Instance norm whose scale and shift come from the region-spread texture codes."""

    def __init__(self, ch: int, cond: int, hidden: int = 32) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(ch, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond, hidden, 3, 1, 1), nn.ReLU())
        self.gb = nn.Conv2d(hidden, 2 * ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if cond.shape[-2:] != x.shape[-2:]:
            cond = F.interpolate(cond, size=x.shape[-2:], mode="bilinear", align_corners=False)
        g, b = self.gb(self.shared(cond)).chunk(2, 1)
        return self.norm(x) * (1 + g) + b


class ResSPADE(nn.Module):
    def __init__(self, ch: int, cond: int) -> None:
        super().__init__()
        self.n1, self.c1 = SPADE(ch, cond), nn.Conv2d(ch, ch, 3, 1, 1)
        self.n2, self.c2 = SPADE(ch, cond), nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.leaky_relu(self.n1(x, cond), 0.2))
        return x + self.c2(F.leaky_relu(self.n2(h, cond), 0.2))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


REF_CH = 4  # the unwarped key frame (3) and its person mask (1)


def reference_input(image: torch.Tensor, person: torch.Tensor | None) -> torch.Tensor:
    """The generator's `ref`: key frame (B,3,H,W) in [-1,1] and person mask (B,1,H,W) in [0,1]
    (None: no segmentation, all person) -> (B,4,H,W)."""
    if person is None:
        person = torch.ones_like(image[:, :1])
    return torch.cat([image, person.to(image.dtype)], 1)


def resample(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """img (B,C,H,W) sampled at each pixel's position plus `flow` (B,2,H,W: x, y in pixels),
    bilinear, edges repeated; zero flow returns img exactly (pixel centres, align_corners off)."""
    h, w = img.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=img.dtype, device=img.device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=img.dtype, device=img.device)
    grid = torch.stack([xs[None, None, :] + flow[:, 0] * (2 / w), ys[None, :, None] + flow[:, 1] * (2 / h)], -1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Generator(nn.Module):
    def __init__(self, code_ch: int, width: int = 16, blocks: int = 2, ref_input: bool = False,
                 flow: bool = False) -> None:
        super().__init__()
        self.ref_input, self.has_flow = ref_input, flow
        w, cin = width, 3 + SKETCH_CH + (REF_CH if ref_input else 0)
        cond = code_ch + SKETCH_CH  # the codes, and where the parts are
        self.e1, self.e2, self.e3 = _conv(cin, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 4 * w, 2)
        self.blocks = nn.ModuleList(ResSPADE(4 * w, cond) for _ in range(blocks))
        self.lat2, self.d2 = nn.Conv2d(4 * w, 2 * w, 1), _conv(2 * w, 2 * w)
        self.s2 = SPADE(2 * w, cond)
        self.lat1, self.d1 = nn.Conv2d(2 * w, w, 1), _conv(w, w)
        # RGB residual, then (with ref_input) the blend map, each at half size and pixel-shuffled up.
        self.out = nn.Conv2d(w, (3 + int(ref_input)) * 4, 3, 1, 1)
        # Zero residual and zero blend at the start: an untrained generator is exactly the warp decoder.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if flow:  # displacement in pixels of the full frame, predicted at 1/4 size; zero at the start too
            self.flow = nn.Conv2d(2 * w, 2, 3, 1, 1)
            nn.init.zeros_(self.flow.weight)
            nn.init.zeros_(self.flow.bias)

    def forward(self, warp: torch.Tensor, sketch: torch.Tensor, texmap: torch.Tensor,
                ref: torch.Tensor | None = None) -> torch.Tensor:
        """warp (B,3,H,W) in [-1,1], sketch (B,3,H,W) in [0,1], texmap (B,C,H/4,W/4), with ref_input
        ref (B,4,H,W): the unwarped key frame in [-1,1] and its person mask in [0,1] -> frame (B,3,H,W)."""
        return self.compose(warp, self.head(warp, sketch, texmap, ref), ref)

    def head(self, warp: torch.Tensor, sketch: torch.Tensor, texmap: torch.Tensor,
             ref: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The network proper: (the residual, and with ref_input the blend map, at full size), then
        with flow the displacement at 1/4 size. Runtimes may run it apart from `compose`: ONNX
        Runtime's grid sampler takes 6x torch's time on this CPU."""
        parts = [warp, sketch] + ([ref] if self.ref_input else [])
        x = torch.cat(parts, 1)
        f1 = self.e1(x)  # H/2
        f2 = self.e2(f1)  # H/4
        h = self.e3(f2)  # H/8
        cond = torch.cat([texmap, F.interpolate(sketch, size=texmap.shape[-2:], mode="area")], 1)
        for blk in self.blocks:
            h = blk(h, cond)
        h = F.interpolate(self.lat2(h), scale_factor=2.0, mode="nearest") + f2
        h = self.s2(self.d2(h), cond)
        d = (self.flow(F.leaky_relu(h, 0.2)),) if self.has_flow else ()
        h = F.interpolate(self.lat1(F.leaky_relu(h, 0.2)), scale_factor=2.0, mode="nearest") + f1
        return (F.pixel_shuffle(self.out(self.d1(h)), 2),) + d

    def compose(self, warp: torch.Tensor, parts: tuple[torch.Tensor, ...],
                ref: torch.Tensor | None = None) -> torch.Tensor:
        """The frame from `head`'s outputs: the warp, moved by the displacement, blended with the
        key frame, plus the residual."""
        res, base = parts[0], warp
        if self.has_flow:
            base = resample(warp, F.interpolate(parts[1], size=warp.shape[-2:], mode="bilinear", align_corners=False))
        if self.ref_input:
            # 0: the warp's pixel, 1: the key frame's pixel where it was (zero-initialised, so the
            # clamp passes its gradient from the start)
            res, a = res[:, :3], res[:, 3:].clamp(0, 1)
            base = base + a * (ref[:, :3] - base)
        return (base + res).clamp(-1, 1)
