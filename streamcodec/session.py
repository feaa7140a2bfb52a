"""The session codec: composes key frame, structure and texture layers into packets.

SessionEncoder turns prepared frames into packets; SessionDecoder turns packets
into frames. Both are incremental (one frame / one packet at a time) so the
file codec and the call path share them.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field, replace
from fractions import Fraction

import cv2
import numpy as np

from . import StreamcodecError
from .bitstream import (FLAG_INTRA, FLAG_NOFACE, Header, Packet, PacketType, VersionMismatch)
from .config import DecoderConfig, SessionConfig, load_config
from .decoder import Reference, get_synthesizer
from .entropy import EntropyError
from .keyframe import KeyframeDecodeError, encode_to_budget, get_codec
from .structure.basis import ShapeBasis, load_default_basis
from .structure.coder import StructureCoder, StructureConfig, params_from_fit
from .structure.landmarks import BACKEND_IDS, LandmarkBackend, get_backend
from .texture import TEXTURE_CODECS, ColourStatsCodec, PersonSegmenter, RegionStats, drift, region_masks, region_means
from .texture.learned import LEARNED_CODEC_ID, join_payload, split_payload

log = logging.getLogger(__name__)


class DecodeError(StreamcodecError):
    """A packet could not be decoded; the decoder conceals and carries on."""


def face_psnr(a: np.ndarray, b: np.ndarray, lm: np.ndarray) -> float:
    x0, y0 = np.maximum(np.floor(lm.min(0)).astype(int), 0)
    x1, y1 = np.ceil(lm.max(0)).astype(int) + 1
    d = a[y0:y1, x0:x1].astype(np.float32) - b[y0:y1, x0:x1]
    mse = float((d * d).mean()) if d.size else 0.0
    return 99.0 if mse <= 1e-9 else 10 * np.log10(255.0 ** 2 / mse)


# Lighting shows in the large regions; eyes, brows and lips change with expression,
# which the structure layer already conveys, so they must not trigger new codes.
# Measured on bench clips without lighting changes: mouth, lips, eyes and clothes means swing by
# 10-60 levels with expression and body motion; skin, hair and background stay within ~10.
DRIFT_WEIGHTS = {"skin": 1.0, "hair": 0.7, "background": 1.0, "clothes": 0.3, "nose": 0.5, "lips": 0.0,
                 "mouth": 0.0, "eyes": 0.0, "brows": 0.0}


def _thumb(img: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def measure_texture(img: np.ndarray, lm: np.ndarray, layout, person: np.ndarray | None) -> RegionStats:
    masks = region_masks(lm, layout, person, img.shape[0], scale=0.5)
    return region_means(img, masks)


@dataclass
class EncoderStats:
    frames: int = 0
    keyframes: int = 0
    texture_updates: int = 0
    no_face_frames: int = 0
    several_faces_frames: int = 0
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    keyframe_reasons: list[tuple[int, str]] = field(default_factory=list)


class SessionEncoder:
    def __init__(self, cfg: SessionConfig, basis: ShapeBasis | None = None,
                 backend: LandmarkBackend | None = None) -> None:
        self.cfg = cfg
        self.basis = basis or load_default_basis(cfg.backend)
        self.backend = backend or get_backend(cfg.backend)
        if self.basis.num_points != self.backend.num_points:
            raise StreamcodecError(f"basis has {self.basis.num_points} points, backend {self.backend.num_points}")
        # The header stores the steps as float32: quantise with exactly what the decoder will read.
        st = StructureConfig.from_header(cfg.structure.num_coeffs,
                                         [float(np.float32(v)) for v in cfg.structure.to_header()])
        self.coder = StructureCoder(self.basis, st, cfg.size)
        self.still = get_codec(cfg.keyframe.codec, cfg.keyframe.preset)
        self.texture_codec = ColourStatsCodec()
        self.learned, self._learned_id = _learned_texture(cfg.texture.codec, cfg.decoder.weights)
        self.segmenter = PersonSegmenter()
        self.synth = get_synthesizer("warp")  # closed-loop copy of the receiver, for drift checks
        self.stats = EncoderStats()
        self._frame = 0
        self._last_key = -10 ** 9
        self._last_intra = -10 ** 9
        self._face_lost = 0
        self._have_ref = False
        self._ref_stats: RegionStats = {}
        self._ref_person: np.ndarray | None = None
        self._sent_texture: RegionStats = {}
        self._baseline: float | None = None
        self._low_checks = 0
        self._prev_thumb: np.ndarray | None = None
        self._force_key: str | None = None
        self._key_quality: int | None = None

    def header(self) -> Header:
        rate = Fraction(self.cfg.fps).limit_denominator(1001)
        return Header(width=self.cfg.size, height=self.cfg.size, fps_num=rate.numerator, fps_den=rate.denominator,
                      backend_id=self.backend.backend_id, num_coeffs=self.cfg.structure.num_coeffs,
                      basis_id=self.basis.basis_id, structure_steps=tuple(self.cfg.structure.to_header()),
                      texture_codec=LEARNED_CODEC_ID if self.learned else self.texture_codec.codec_id,
                      texture_model_id=self._learned_id if self.learned else self.texture_codec.model_id)

    def request_keyframe(self, reason: str = "requested") -> None:
        """Called by a transport when the receiver lost its reference."""
        self._force_key = reason

    def request_intra(self) -> None:
        """Called by a transport when the receiver lost the structure prediction chain: the next
        structure packet is intra (no key frame needed)."""
        self._last_intra = -10 ** 9

    def _count(self, packets: list[Packet]) -> list[Packet]:
        for p in packets:
            k = p.type.name.lower()
            self.stats.bytes_by_type[k] = self.stats.bytes_by_type.get(k, 0) + len(p.payload)
        return packets

    def _keyframe_reason(self, img: np.ndarray, face: bool) -> str | None:
        i = self._frame
        if self._force_key:
            r, self._force_key = self._force_key, None
            return r
        if i == 0:
            return "start"
        if face and not self._have_ref:
            return "first face"
        if face and self._face_lost >= self.cfg.refresh.max_face_lost:
            return "face found again"
        thumb = _thumb(img)
        cut = self._prev_thumb is not None and float(np.abs(thumb - self._prev_thumb).mean()) > self.cfg.refresh.scene_cut
        self._prev_thumb = thumb
        if cut and i - self._last_key > 2:
            return "scene cut"
        if self._low_checks >= 2 and i - self._last_key >= self.cfg.refresh.min_interval:
            return "drift"
        return None

    def encode_frame(self, img: np.ndarray) -> list[Packet]:
        if img.shape != (self.cfg.size, self.cfg.size, 3):
            raise StreamcodecError(f"frame {self._frame} is {img.shape[1]}x{img.shape[0]}; "
                                   f"the session codes {self.cfg.size}x{self.cfg.size} (prepare the input)")
        i = self._frame
        det = self.backend.detect(img)
        if det is not None and det.faces > 1:
            if self.stats.several_faces_frames == 0:
                log.warning("frame %d: %d faces; coding the largest", i, det.faces)
            self.stats.several_faces_frames += 1
        reason = self._keyframe_reason(img, det is not None)
        packets: list[Packet] = []
        if reason:
            packets.append(self._keyframe(img, reason))
        if det is None:
            self._face_lost += 1
            self.stats.no_face_frames += 1
            packets.append(Packet(PacketType.STRUCTURE, i, b"", FLAG_NOFACE))
        else:
            self._face_lost = 0
            packets += self._structure(img, det.points, keyframe=reason is not None)
        self._frame += 1
        self.stats.frames += 1
        return self._count(packets)

    def _keyframe(self, img: np.ndarray, reason: str) -> Packet:
        data, self._key_quality = encode_to_budget(self.still, img, self.cfg.keyframe.max_bytes, self._key_quality)
        self._key_image = self.still.decode(data)
        self._pending_key = True
        self._last_key = self._frame
        self._have_ref = False  # the receiver drops its reference until this frame's structure arrives
        self.stats.keyframes += 1
        self.stats.keyframe_reasons.append((self._frame, reason))
        return Packet(PacketType.KEYFRAME, self._frame, bytes([self.still.codec_id]) + data)

    def _structure(self, img: np.ndarray, points: np.ndarray, keyframe: bool) -> list[Packet]:
        i = self._frame
        rv, s, t, c = self.basis.fit(points)
        q = self.coder.quantise(params_from_fit(rv, s, t, c, self.cfg.structure.num_coeffs))
        intra = keyframe or i - self._last_intra >= self.cfg.intra_period or self.coder.prev is None
        payload = self.coder.encode(q, intra)
        if intra:
            self._last_intra = i
        out = [Packet(PacketType.STRUCTURE, i, payload, FLAG_INTRA if intra else 0)]
        lm = self.coder.landmarks(q)
        if keyframe:
            person = self.segmenter(self._key_image)
            self._ref_stats = measure_texture(self._key_image, lm, self.backend.layout, person)
            self.synth.set_reference(Reference(self._key_image, lm, person, self._ref_stats), self.backend.layout)
            self._ref_person = person
            self._have_ref = True
            self._baseline, self._low_checks = None, 0
            out.append(self._texture(img, lm, prediction=self._key_image))
        elif self._have_ref:
            if (i - self._last_key) % self.cfg.texture.check_interval == 0:
                cur = measure_texture(img, lm, self.backend.layout, self.segmenter(img))
                if drift(cur, self._sent_texture, DRIFT_WEIGHTS) > self.cfg.texture.drift_threshold:
                    out.append(self._texture(img, lm, cur, prediction=None))
            if (i - self._last_key) % self.cfg.refresh.check_interval == 0:
                self._check_drift(img, lm)
        return out

    def _texture(self, img: np.ndarray, lm: np.ndarray, cur: RegionStats | None = None,
                 prediction: np.ndarray | None = None) -> Packet:
        """A texture packet for this frame; `prediction` is what the receiver's warp makes of it
        (computed here when None and the learned code needs it)."""
        if cur is None:
            cur = measure_texture(img, lm, self.backend.layout, self.segmenter(img))
        q = self.texture_codec.quantise(cur, self._ref_stats)
        sent = self.texture_codec.dequantise(q, self._ref_stats)
        payload = self.texture_codec.encode(q)
        if self.learned is not None:
            from .decoder.learned import encode_code

            if prediction is None and self.cfg.texture.refine_steps:
                prediction = self.synth.synthesize(lm, sent)
            payload = join_payload(payload, encode_code(
                self.learned, img, lm, self.backend.layout, self._ref_person, prediction,
                self.cfg.texture.refine_steps, self.cfg.texture.refine_lr, reference=self._key_image))
        self._sent_texture = sent
        self.stats.texture_updates += 1
        return Packet(PacketType.TEXTURE, self._frame, payload)

    def _check_drift(self, img: np.ndarray, lm: np.ndarray) -> None:
        pred = self.synth.synthesize(lm, self._sent_texture)
        p = face_psnr(pred, img, lm)
        if self._baseline is None:
            self._baseline = p
        self._low_checks = self._low_checks + 1 if p < self._baseline - self.cfg.refresh.psnr_drop_db else 0

    def end(self) -> Packet:
        return self._count([Packet(PacketType.END, self._frame, struct.pack(">I", self._frame))])[0]


@dataclass
class DecodedFrame:
    index: int
    image: np.ndarray
    landmarks: np.ndarray | None
    concealed: bool = False


class SessionDecoder:
    """Decodes packets in order; conceals what is lost (holds the last frame) and says so."""

    def __init__(self, header: Header, basis: ShapeBasis | None = None,
                 decoder: DecoderConfig | str | None = None) -> None:
        """`decoder`: the decoder's settings, or just its name ("warp" or "learned") with the others
        from configs/default.yaml; None takes all of configs/default.yaml's."""
        self.header = header
        backend_name = BACKEND_IDS.get(header.backend_id)
        if backend_name is None:
            raise VersionMismatch(f"stream uses landmark backend id {header.backend_id}, unknown to this decoder")
        self.basis = basis or load_default_basis(backend_name)
        if self.basis.basis_id != header.basis_id:
            raise VersionMismatch(
                f"stream was coded with shape basis {header.basis_id.hex()}, this decoder has "
                f"{self.basis.basis_id.hex()} ({backend_name}); decode with the matching streamcodec release")
        self._learned_stream = header.texture_codec == LEARNED_CODEC_ID
        if self._learned_stream:
            self.texture_codec = ColourStatsCodec()
        elif header.texture_codec in TEXTURE_CODECS:
            self.texture_codec = TEXTURE_CODECS[header.texture_codec]()
            if self.texture_codec.model_id != header.texture_model_id:
                raise VersionMismatch("stream was coded with another texture model")
        else:
            raise VersionMismatch(f"unknown texture codec id {header.texture_codec}")
        self.synth = get_synthesizer(decoder_config(decoder))
        model_id = getattr(self.synth, "model_id", None)
        if self._learned_stream and model_id is not None and model_id != header.texture_model_id:
            raise VersionMismatch(
                f"stream was coded with learned texture model {header.texture_model_id.hex()}, this decoder has "
                f"{model_id.hex()}; decode with the matching weights, or with the warp decoder (--decoder warp)")
        self.layout = get_backend_layout(backend_name)
        cfg = StructureConfig.from_header(header.num_coeffs, list(header.structure_steps))
        self.coder = StructureCoder(self.basis, cfg, header.width)
        self.segmenter = PersonSegmenter()
        self.size = header.width
        self._next = 0
        self._ref: Reference | None = None
        self._key_image: np.ndarray | None = None
        self._key_frame = -1
        self._key_bytes = 0
        self._texture: RegionStats | None = None
        self._last: DecodedFrame | None = None
        self._synced = False
        self.errors: list[str] = []
        self.needs_keyframe = False

    @property
    def synced(self) -> bool:
        """False from a lost structure packet until the next intra one: inter packets cannot decode."""
        return self._synced

    def _blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size, 3), np.uint8)

    def _hold(self, index: int) -> DecodedFrame:
        img = self._last.image if self._last is not None else (
            self._key_image if self._key_image is not None else self._blank())
        lm = self._last.landmarks if self._last is not None else None
        return DecodedFrame(index, img, lm, concealed=True)

    def _emit(self, f: DecodedFrame) -> DecodedFrame:
        self._last = f
        return f

    def decode(self, p: Packet) -> list[DecodedFrame]:
        """Frames completed by this packet (missing frames before it come out concealed)."""
        out: list[DecodedFrame] = []
        if p.type == PacketType.END:
            return out
        if p.frame < self._next:
            if p.type == PacketType.STRUCTURE:
                self.errors.append(f"frame {p.frame}: late or duplicate structure packet dropped")
                return out
        while p.type == PacketType.STRUCTURE and self._next < p.frame:
            self._synced = False  # inter prediction lost its chain
            out.append(self._emit(self._hold(self._next)))
            self.errors.append(f"frame {self._next}: missing, held the previous frame")
            self._next += 1
        try:
            if p.type == PacketType.KEYFRAME:
                self._on_keyframe(p)
            elif p.type == PacketType.TEXTURE:
                self._on_texture(p)
            elif p.type == PacketType.STRUCTURE:
                out.append(self._emit(self._on_structure(p)))
                self._next = p.frame + 1
        except (DecodeError, EntropyError, KeyframeDecodeError) as exc:
            self.errors.append(f"frame {p.frame}: {exc}")
            if p.type == PacketType.STRUCTURE:
                self._synced = False
                out.append(self._emit(self._hold(p.frame)))
                self._next = p.frame + 1
            if p.type == PacketType.KEYFRAME:
                self.needs_keyframe = True
        return out

    def _on_keyframe(self, p: Packet) -> None:
        if not p.payload:
            raise DecodeError("empty key frame")
        codec = get_codec(p.payload[0]) if p.payload[0] in _codec_ids() else None
        if codec is None:
            raise DecodeError(f"unknown still-image codec id {p.payload[0]}")
        img = codec.decode(p.payload[1:])
        if img.shape != (self.size, self.size, 3):
            raise DecodeError(f"key frame is {img.shape[1]}x{img.shape[0]}, stream is {self.size}x{self.size}")
        self._key_image, self._key_frame, self._key_bytes = img, p.frame, len(p.payload) - 1
        self._ref = None
        self.needs_keyframe = False

    def _on_texture(self, p: Packet) -> None:
        if self._ref is None:
            raise DecodeError("texture code before its key frame")
        colour, code = split_payload(p.payload) if self._learned_stream else (p.payload, b"")
        q = self.texture_codec.decode(colour)
        self._texture = self.texture_codec.dequantise(q, self._ref.stats)
        if code:
            self.synth.set_codes(code)

    def _on_structure(self, p: Packet) -> DecodedFrame:
        if p.flags & FLAG_NOFACE:
            if self._key_image is not None and p.frame == self._key_frame:
                return DecodedFrame(p.frame, self._key_image, None)
            return self._hold(p.frame) if self._last is not None or self._key_image is None else DecodedFrame(
                p.frame, self._key_image, None)
        intra = bool(p.flags & FLAG_INTRA)
        if not intra and not self._synced:
            raise DecodeError("inter structure packet while out of sync (waiting for an intra packet)")
        q = self.coder.decode(p.payload, intra)
        self._synced = True
        lm = self.coder.landmarks(q)
        if self._key_image is not None and p.frame == self._key_frame:
            person = self.segmenter(self._key_image)
            stats = measure_texture(self._key_image, lm, self.layout, person)
            self._ref = Reference(self._key_image, lm, person, stats, self._key_bytes)
            self.synth.set_reference(self._ref, self.layout)
            self._key_image = self.synth.key_frame()  # shown for this frame, and held if the next is lost
            self.synth.set_codes(None)
            self._texture = None
            return DecodedFrame(p.frame, self._key_image, lm)
        if self._ref is None:
            self.needs_keyframe = True
            raise DecodeError("structure without a reference frame")
        return DecodedFrame(p.frame, self.synth.synthesize(lm, self._texture), lm)


def decoder_config(decoder: DecoderConfig | str | None) -> DecoderConfig:
    """The settings `SessionDecoder(decoder=...)` means."""
    if isinstance(decoder, DecoderConfig):
        return decoder
    default = load_config().decoder
    return default if decoder is None else replace(default, name=decoder)


def _learned_texture(codec: str, weights: str = ""):
    """(model, model id) for texture codec "learned" with these weights ("": the shipped ones),
    (None, b"") for "colourstats"."""
    if codec == "colourstats":
        return None, b""
    if codec != "learned":
        raise StreamcodecError(f"unknown texture codec {codec!r}; expected 'colourstats' or 'learned'")
    from .decoder.learned import load_model, model_id_of, weights_path

    path = weights_path(weights)
    return load_model(path), model_id_of(path)


def _codec_ids() -> set[int]:
    from .keyframe import CODECS

    return set(CODECS)


def get_backend_layout(name: str):
    from .structure.landmarks import dlib68_layout, mediapipe_layout

    return mediapipe_layout() if name == "mediapipe478" else dlib68_layout()
