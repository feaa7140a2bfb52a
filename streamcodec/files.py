"""File codec: video file <-> .scv file, built on the session codec."""

from __future__ import annotations

import bisect

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .bitstream import (Corruption, Header, Packet, PacketType, encode_header, encode_packet, parse_header,
                        read_stream)
from .config import DecoderConfig, SessionConfig
from .io import PrepareConfig, is_prepared, iter_frames, prepare_frames
from .session import DecodedFrame, SessionDecoder, SessionEncoder

log = logging.getLogger(__name__)


def input_frames(path: str | Path, cfg: SessionConfig, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Prepared frames: used as they are if the file is already in working format, else prepared."""
    pcfg = PrepareConfig(size=cfg.size, fps=cfg.fps, max_frames=max_frames)
    if is_prepared(path, pcfg):
        for i, (_, f) in enumerate(iter_frames(path)):
            if max_frames is not None and i >= max_frames:
                return
            yield f
    else:
        yield from prepare_frames(path, pcfg)


@dataclass
class EncodeResult:
    frames: int
    bytes_total: int
    seconds: float
    keyframes: list[tuple[int, str]]
    bytes_by_type: dict[str, int]
    no_face_frames: int
    several_faces_frames: int


def encode_frames(frames, out: str | Path, cfg: SessionConfig, progress: bool = True) -> EncodeResult:
    enc = SessionEncoder(cfg)
    t0 = time.perf_counter()
    out = Path(out)
    with open(out, "wb") as f:
        f.write(encode_header(enc.header()))
        it = tqdm(frames, desc="encode", unit="f", disable=not progress, leave=False)
        for img in it:
            for p in enc.encode_frame(img):
                f.write(encode_packet(p))
        f.write(encode_packet(enc.end()))
    s = enc.stats
    return EncodeResult(s.frames, out.stat().st_size, time.perf_counter() - t0, s.keyframe_reasons,
                        s.bytes_by_type, s.no_face_frames, s.several_faces_frames)


def encode_file(src: str | Path, out: str | Path, cfg: SessionConfig, max_frames: int | None = None,
                progress: bool = True) -> EncodeResult:
    return encode_frames(input_frames(src, cfg, max_frames), out, cfg, progress)


@dataclass
class StreamContents:
    header: Header
    packets: list[Packet]
    corruptions: list[Corruption] = field(default_factory=list)
    truncated: bool = False

    def key_frames(self) -> list[int]:
        """Frame numbers of the key frames, in order."""
        return list(self._keys)

    @cached_property
    def _keys(self) -> tuple[int, ...]:
        # asked once per frame by the training cache and the reports: scan the packets once
        return tuple(sorted(p.frame for p in self.packets if p.type == PacketType.KEYFRAME))

    def key_frame_of(self, i: int) -> int | None:
        """The key frame that frame `i` is predicted from (the last one at or before it), or None."""
        j = bisect.bisect_right(self._keys, i)
        return self._keys[j - 1] if j else None


def read_scv(path: str | Path) -> StreamContents:
    data = Path(path).read_bytes()
    header, off = parse_header(data)
    packets, bad = [], []
    for item in read_stream(data, off):
        (bad if isinstance(item, Corruption) else packets).append(item)
    ended = bool(packets) and packets[-1].type == PacketType.END
    return StreamContents(header, packets, bad, truncated=not ended)


def decode_file(path: str | Path, decoder: DecoderConfig | str = "warp"
                ) -> tuple[StreamContents, list[DecodedFrame], list[str]]:
    """`decoder`: see SessionDecoder."""
    contents = read_scv(path)
    dec = SessionDecoder(contents.header, decoder=decoder)
    frames: list[DecodedFrame] = []
    for p in tqdm(contents.packets, desc="decode", unit="pkt", leave=False, disable=len(contents.packets) < 50):
        frames.extend(dec.decode(p))
    errors = [f"damaged bytes {c.offset}..{c.offset + c.length}: {c.reason}" for c in contents.corruptions]
    if contents.truncated:
        errors.append("stream ends without an END packet (truncated); decoded what was intact")
    return contents, frames, errors + dec.errors
