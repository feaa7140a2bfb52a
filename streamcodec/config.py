"""Session settings, loaded from YAML files in configs/ (data, not code)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from . import StreamcodecError
from .structure.coder import StructureConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class ConfigError(StreamcodecError):
    pass


@dataclass(frozen=True)
class KeyframeConfig:
    codec: str = "av1"
    max_bytes: int = 3000
    # Encoder effort (SVT-AV1 preset; other still codecs ignore it). It changes only how hard the
    # encoder searches, not the bitstream: any decoder reads either.
    preset: int = 1
    live_preset: int = 8  # calls: a key frame must not stall the stream for seconds


@dataclass(frozen=True)
class TextureConfig:
    check_interval: int = 5
    drift_threshold: float = 12.0
    codec: str = "colourstats"  # "colourstats" (v1) or "learned" (v1 + a learned code per region)
    # Encoder-side optimisation of the learned code: gradient steps through the decoder on the
    # frame the code is sent with (0: off). Calls turn it off (for_live).
    refine_steps: int = 0
    refine_lr: float = 0.3  # Adam step on codes whose quantiser bins are 1 wide


@dataclass(frozen=True)
class DecoderConfig:
    name: str = "warp"  # "warp" or "learned": either reads every stream
    # The learned model (texture encoder, the codes' entropy model, generator) that texture codec
    # "learned" encodes with and decoder "learned" decodes with: a safetensors file written by
    # scripts/train.py; "" is the shipped streamcodec/assets/learned_decoder.safetensors. The stream
    # header names the model, so a decoder with other weights refuses the stream.
    weights: str = ""
    # Away from the person the camera sees a still background, which the key frame shows as it is
    # while the mesh drags it along near the head: "key" shows the decoded key frame wherever
    # neither the key frame's person nor the person warped to the current frame is (both dilated);
    # "synth" keeps what the decoder drew. A decoder choice only: the stream is the same.
    background: str = "synth"

    def __post_init__(self) -> None:
        if self.name not in ("warp", "learned"):
            raise ConfigError(f"unknown decoder {self.name!r}; expected 'warp' or 'learned'")
        if self.background not in ("synth", "key"):
            raise ConfigError(f"decoder background {self.background!r}: expected 'synth' or 'key'")


@dataclass(frozen=True)
class RefreshConfig:
    check_interval: int = 5
    min_interval: int = 75
    psnr_drop_db: float = 5.0
    max_face_lost: int = 12
    scene_cut: float = 40.0


@dataclass(frozen=True)
class SessionConfig:
    size: int = 256
    fps: float = 25.0
    backend: str = "mediapipe478"
    intra_period: int = 50
    structure: StructureConfig = field(default_factory=StructureConfig)
    keyframe: KeyframeConfig = field(default_factory=KeyframeConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def with_overrides(self, **kw: Any) -> "SessionConfig":
        return replace(self, **kw)

    def for_live(self) -> "SessionConfig":
        """The settings a live call encodes with: the key-frame encoder at its live preset, no
    encoder-side optimisation of the texture code."""
        return replace(self, keyframe=replace(self.keyframe, preset=self.keyframe.live_preset),
                       texture=replace(self.texture, refine_steps=0))


def _build(cls, data: dict[str, Any], where: str):
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown settings {sorted(unknown)}")
    try:
        return cls(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | Path | None = None) -> SessionConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.exists():
        return SessionConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    raw = dict(raw)
    st = dict(raw.pop("structure", {}) or {})
    backend = st.pop("backend", "mediapipe478")
    intra = st.pop("intra_period", 50)
    return SessionConfig(
        size=int(raw.pop("size", 256)), fps=float(raw.pop("fps", 25)), backend=backend, intra_period=int(intra),
        structure=_build(StructureConfig, st, f"{path}: structure"),
        keyframe=_build(KeyframeConfig, raw.pop("keyframe", {}) or {}, f"{path}: keyframe"),
        texture=_build(TextureConfig, raw.pop("texture", {}) or {}, f"{path}: texture"),
        refresh=_build(RefreshConfig, raw.pop("refresh", {}) or {}, f"{path}: refresh"),
        decoder=_decoder(raw.pop("decoder", None), path),
        **_check_empty(raw, path),
    )


def _decoder(raw: Any, path: Path) -> DecoderConfig:
    """`decoder: learned` is short for `decoder: {name: learned}`."""
    if raw is None:
        return DecoderConfig()
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: decoder: expected a name or a mapping, got {raw!r}")
    return _build(DecoderConfig, raw, f"{path}: decoder")


def _check_empty(raw: dict, path: Path) -> dict:
    if raw:
        raise ConfigError(f"{path}: unknown settings {sorted(raw)}")
    return {}
