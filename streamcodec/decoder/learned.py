"""Decoder v2: warp + learned generator, driven by learned texture codes.

`LearnedModel` holds every trained part (texture encoder, the codes' entropy
model, generator), saved as one safetensors file with its architecture in the
metadata; the file's hash is the model id written into the stream header.
Loading reads tensors and JSON only, never a pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import StreamcodecError
from ..entropy import EntropyError
from ..keyframe.restore import KeyRestorer, bits_per_pixel
from ..structure.landmarks import FaceLayout
from ..texture import REGIONS, RegionStats
from ..texture.learned import TextureEncoder, pack_strings, unpack_strings
from ..texture.learned_entropy import CodeEntropyModel
from . import runtime
from .base import Reference
from .generator import Generator, reference_input, region_stack, render_sketch, spread
from .warp import WarpSynthesizer, blend

ASSET = Path(__file__).resolve().parents[1] / "assets" / "learned_decoder.safetensors"
_ARCH = ("code_ch", "width", "blocks", "groups", "enc_width", "ref_input", "restore_width", "restore_blocks", "flow")
# Architecture keys added after weights were first shipped, with the value those weights imply.
_ARCH_DEFAULTS = {"ref_input": 0, "restore_width": 0, "restore_blocks": 0, "flow": 0}


def weights_path(weights: str | Path = "") -> Path:
    """The file a `decoder.weights` setting names; "" is the shipped model."""
    return Path(weights) if str(weights) else ASSET


def full_arch(arch: dict) -> dict[str, int]:
    """An architecture record (a config's `model:` or a file's) with every key, as ints."""
    return {k: int(arch[k] if k in arch else _ARCH_DEFAULTS[k]) for k in _ARCH}


class ModelMismatch(StreamcodecError):
    """Weights do not fit this architecture, or a stream names other weights."""


class LearnedModel(nn.Module):
    def __init__(self, code_ch: int = 16, width: int = 16, blocks: int = 2, groups: int = 4,
                 enc_width: int = 32, ref_input: int = 0, restore_width: int = 0, restore_blocks: int = 0,
                 flow: int = 0) -> None:
        """`restore_width` > 0 adds the key-frame restorer (streamcodec/keyframe/restore.py); `flow`
        the generator's learned correction of the warp's geometry (generator.py)."""
        super().__init__()
        self.arch = {"code_ch": code_ch, "width": width, "blocks": blocks, "groups": groups, "enc_width": enc_width,
                     "ref_input": int(ref_input), "restore_width": restore_width, "restore_blocks": restore_blocks,
                     "flow": int(flow)}
        self.encoder = TextureEncoder(code_ch, enc_width)
        self.entropy = CodeEntropyModel(code_ch, len(REGIONS), groups)
        self.generator = Generator(code_ch, width, blocks, bool(ref_input), bool(flow))
        self.restorer = KeyRestorer(restore_width, restore_blocks) if restore_width else None
        self.lambda_rate = 1e-5  # replaced by the trained value on load

    @torch.no_grad()
    def restore_key(self, image: np.ndarray, coded_bytes: int | None) -> np.ndarray:
        """The decoded key frame as this decoder uses and shows it: restored when these weights
        have a restorer and the key frame's coded size is known, else as decoded."""
        if self.restorer is None or not coded_bytes:
            return image
        h, w = image.shape[:2]
        if h % 4 or w % 4:
            return image  # the restorer folds the frame twice; the codec's sizes are multiples of 8
        bpp = torch.tensor([bits_per_pixel(coded_bytes, h, w)])
        return to_image(self.restorer(to_tensor(image), bpp))

    def forward(self, ref_orig: torch.Tensor, ref_masks: torch.Tensor, warp: torch.Tensor, sketch: torch.Tensor,
                masks: torch.Tensor, ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (frame, code bits per sample); `ref`: see Generator.forward."""
        y_hat, bits = self.entropy(self.encoder(ref_orig, ref_masks))
        return self.generator(warp, sketch, spread(y_hat, masks), ref), bits

    # -- the texture code as bytes ------------------------------------------------------
    @torch.no_grad()
    def compress_codes(self, codes: torch.Tensor) -> bytes:
        return pack_strings(self.entropy.compress(codes))

    @torch.no_grad()
    def decompress_codes(self, payload: bytes) -> torch.Tensor:
        return self.entropy.decompress(unpack_strings(payload, 2))


def save_model(model: LearnedModel, path: Path, record: dict | None = None) -> bytes:
    """Writes the weights (entropy tables rebuilt on load are left out); returns the model id."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not _derived(k)}
    meta = {"arch": json.dumps(model.arch), "record": json.dumps(record or {})}
    save_file(state, str(path), metadata=meta)
    return model_id_of(path)


def _derived(key: str) -> bool:
    # compressai's CDF tables: rebuilt by update(), and their shapes depend on the trained quantiles.
    return any(s in key for s in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))


def model_id_of(path: Path) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()[:8]


def load_model(path: Path = ASSET, device: str = "cpu") -> LearnedModel:
    path = Path(path)
    if not path.exists():
        raise ModelMismatch(f"no learned decoder weights at {path}; train them with scripts/train.py")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type for a file that is not one
        raise ModelMismatch(f"{path.name} is not a safetensors file ({exc})") from None
    try:
        arch = json.loads(meta["arch"])
        model = LearnedModel(**full_arch(arch))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelMismatch(f"{path.name}: no usable architecture record ({exc})") from None
    state = load_file(str(path), device=device)
    expected = {k for k in model.state_dict() if not _derived(k)}
    if set(state) != expected:
        raise ModelMismatch(f"{path.name} does not fit this decoder: missing {sorted(expected - set(state))[:3]}, "
                            f"unexpected {sorted(set(state) - expected)[:3]}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelMismatch(f"{path.name} does not fit this decoder: {exc}") from None
    model.entropy.update()
    # The rate weight it was trained with: encoder-side refinement optimises the same objective.
    model.lambda_rate = float(json.loads(meta.get("record", "{}")).get("config", {}).get("lambda_rate", 1e-5))
    return model.to(device).eval().requires_grad_(False)


# Architecture switches a fine-tune may turn on over earlier weights: what they add starts at zero.
GROWABLE = ("ref_input", "flow")


def grow_into(model: LearnedModel, path: Path) -> None:
    """Copies the weights of `path` into `model`, whose architecture is theirs or theirs grown.

    Growing means switching on `ref_input` or `flow`, or adding a key-frame restorer to weights
    without one. The inputs and outputs `ref_input` adds come last in their layers, so the old
    tensors go into the leading slices and the rest stays zero; `flow`'s displacement layer and a new
    restorer's last layer start at zero. Either way the grown model starts out computing exactly
    what the old one did. Any other difference raises ModelMismatch."""
    prev = load_model(path)
    grown = {k: model.arch[k] for k in GROWABLE}
    if not prev.arch["restore_width"]:
        grown.update(restore_width=model.arch["restore_width"], restore_blocks=model.arch["restore_blocks"])
    if {**prev.arch, **grown} != model.arch or any(prev.arch[k] > model.arch[k] for k in GROWABLE):
        raise ModelMismatch(f"{Path(path).name}: architecture {prev.arch} cannot grow into {model.arch}")
    state = {k: v for k, v in prev.state_dict().items() if not _derived(k)}  # CDF tables: rebuilt by update()
    own = model.state_dict()
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            padded = torch.zeros_like(own[k])
            padded[tuple(slice(0, n) for n in v.shape)] = v
            state[k] = padded
    model.load_state_dict(state, strict=False)


def record_of(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("record", "{}"))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)[None]
    return t.float().div(127.5).sub(1)


def _mask_tensor(mask: np.ndarray | None) -> torch.Tensor | None:
    """uint8 (H, W) 0/1 mask -> float (1, 1, H, W)."""
    return None if mask is None else torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]


def to_image(t: torch.Tensor) -> np.ndarray:
    return ((t[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()


_COMPILED: dict[tuple, runtime.Runner] = {}


class LearnedSynthesizer:
    """FrameSynthesizer: the warp decoder's frame refined by the generator.

    The codes come from the stream (`set_codes`); a stream without learned codes
    (texture codec v1) is decoded with codes the receiver computes from its own
    key frame, which is worse but keeps old files decodable.
    """

    name = "learned"
    backend = "auto"  # the generator's runtime: "auto", "onnx", "traced" or "eager" (see runtime.py)

    def __init__(self, path: Path = ASSET, model: LearnedModel | None = None, static_background: bool = False) -> None:
        """`static_background`: the warp's key-frame background (DecoderConfig.background) is what the
        generator sees and what the frame shows there."""
        self.model = model or load_model(path)
        self.model_id = model_id_of(path) if model is None else b""
        self._compiled_nets: dict[tuple, runtime.Runner] = {}
        self.warp = WarpSynthesizer(static_background=static_background)
        self.codes: torch.Tensor | None = None
        self.last_warp: np.ndarray | None = None
        self._own_codes: torch.Tensor | None = None

    def set_reference(self, ref: Reference, layout: FaceLayout) -> None:
        ref = replace(ref, image=self.model.restore_key(ref.image, ref.coded_bytes))
        self.warp.set_reference(ref, layout)
        self.layout, self.size, self.person = layout, ref.image.shape[0], ref.person
        self._ref = ref
        self._own_codes = None
        self._ref_input = reference_input(to_tensor(ref.image), _mask_tensor(ref.person)) \
            if self.model.generator.ref_input else None

    def key_frame(self) -> np.ndarray:
        return self._ref.image

    def set_codes(self, code: bytes | None) -> None:
        """The stream's learned texture code (bytes), or None to fall back to the receiver's own."""
        if code is None:
            self.codes = None
            return
        try:
            self.codes = self.model.decompress_codes(code)
        except (ValueError, RuntimeError) as exc:  # rANS and shape errors from garbage bytes
            raise EntropyError(f"learned texture code does not decode: {exc}") from None

    def _codes(self) -> torch.Tensor:
        if self.codes is not None:
            return self.codes
        if self._own_codes is None:
            masks = torch.from_numpy(region_stack(self._ref.landmarks, self.layout, self.person, self.size))[None]
            self._own_codes = self.model.entropy(self.model.encoder(to_tensor(self._ref.image), masks))[0]
        return self._own_codes

    @torch.no_grad()
    def synthesize(self, landmarks: np.ndarray, texture: RegionStats | None) -> np.ndarray:
        landmarks = landmarks[:, :2]
        warped = self.warp.synthesize(landmarks, texture)
        self.last_warp = warped  # the generator's input: what training caches as the decoder's input
        sketch = torch.from_numpy(render_sketch(landmarks, self.layout, self.size))[None]
        masks = torch.from_numpy(region_stack(landmarks, self.layout, self.person, self.size))[None]
        out = self._compiled(to_tensor(warped), sketch, spread(self._codes(), masks), self._ref_input)
        out = to_image(out.contiguous())
        return out if self.warp.background is None else blend(out, warped, self.warp.background)

    def _compiled(self, warp: torch.Tensor, sketch: torch.Tensor, texmap: torch.Tensor,
                  ref: torch.Tensor | None) -> torch.Tensor:
        """The generator on the runtime `backend` names (streamcodec/decoder/runtime.py): same
        weights, same output up to float rounding; a compiled one is fixed to its frame size."""
        backend = runtime.resolve(self.backend)
        inputs = (warp, sketch, texmap) + ((ref,) if ref is not None else ())
        if backend == "eager":
            return self.model.generator(*inputs)
        # Weights loaded from a file share one compiled generator per process (building one costs
        # about a second, a decoder is made per stream); a model handed in (tests, training) gets its own.
        cache = _COMPILED if self.model_id else self._compiled_nets
        key = (backend, self.model_id, *warp.shape[-2:], torch.get_num_threads())  # ONNX Runtime fixes its threads
        if key not in cache:
            cache[key] = runtime.compile_generator(self.model.generator, inputs, backend)
        return cache[key](*inputs)


_LPIPS: list = []


def _lpips():
    if not _LPIPS:
        from ..metrics.lpips import load_lpips_net

        _LPIPS.append(load_lpips_net("alex"))
    return _LPIPS[0]


def encode_code(model: LearnedModel, img: np.ndarray, lm: np.ndarray, layout: FaceLayout, person: np.ndarray | None,
                prediction: np.ndarray | None, steps: int = 0, lr: float = 0.3,
                reference: np.ndarray | None = None) -> bytes:
    """The learned texture code of `img` as bytes.

    With `steps`, the code is refined by gradient descent through the generator so that the
    receiver's frame (the generator applied to `prediction`, the receiver's warp of this frame)
    matches `img` (thesis, chapter 3: encoder-side optimisation). The refined code is kept only
    if, quantised, it beats the plain one on that frame. `reference`: the receiver's decoded key
    frame (`person` is its mask), which a generator with `ref_input` also sees.
    """
    masks = torch.from_numpy(region_stack(lm, layout, person, img.shape[0]))[None]
    with torch.no_grad():
        y = model.encoder(to_tensor(img), masks)
    if steps and prediction is not None:
        ref = None
        if model.generator.ref_input:
            if reference is None:
                raise ValueError("these weights' generator also sees the key frame: pass `reference`")
            ref = reference_input(to_tensor(reference), _mask_tensor(person))
        y = refine_code(model, y, img, prediction, lm, layout, masks, steps, lr, ref)
    return model.compress_codes(y)


def refine_code(model: LearnedModel, y: torch.Tensor, img: np.ndarray, prediction: np.ndarray, lm: np.ndarray,
                layout: FaceLayout, masks: torch.Tensor, steps: int, lr: float,
                ref: torch.Tensor | None = None) -> torch.Tensor:
    """Adam on the code through the straight-through quantiser; returns the step whose quantised
    code scores best on distortion + lambda x bits (the training objective), the plain code if none
    beats it. The step size must reach across quantiser bins (width 1) for a step to change anything."""
    lp, lam = _lpips(), model.lambda_rate
    target, warp = to_tensor(img), to_tensor(prediction)
    sketch = torch.from_numpy(render_sketch(lm, layout, img.shape[0]))[None]

    def objective(code: torch.Tensor) -> torch.Tensor:
        y_hat, bits = model.entropy(code)
        out = model.generator(warp, sketch, spread(y_hat, masks), ref)
        return (out - target).abs().mean() + lp(out, target).mean() + lam * bits.mean()

    def quantised(code: torch.Tensor) -> float:
        with torch.no_grad():
            return float(objective(code))

    best, best_cost = y, quantised(y)
    x = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        model.entropy.train()  # straight-through rounding, so the gradient sees the quantiser
        try:
            with torch.enable_grad():
                loss = objective(x)
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            model.entropy.eval()
        c = quantised(x.detach())
        if c < best_cost:
            best, best_cost = x.detach().clone(), c
    return best
