"""Byte layout of the .scv container; see docs/bitstream.md for the specification.

Packets are self-delimiting and CRC-checked so the same bytes can travel one
per data-channel message, and a damaged file can be resynchronised.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass, field
from typing import Iterator

from .. import StreamcodecError

MAGIC = b"SCVF"
VERSION = (1, 0)
MAX_PAYLOAD = 1 << 20  # a key frame at 512x512 is ~20 kB; anything larger is corruption
_MAX_TIMESTAMP = 1 << 42  # parse_packet reads at most 6 varint bytes
_HEADER_FMT = ">4sBBHHHHBB8s5fB8sB"
_HEADER_LEN = struct.calcsize(_HEADER_FMT) + 2  # + CRC16

FLAG_INTRA = 0x1  # structure: absolute values, adaptive models reset
FLAG_NOFACE = 0x2  # structure: no face in this frame, the receiver holds the last structure
FLAG_TIMESTAMP = 0x8  # an explicit timestamp (ms, varint) follows the frame index


class BitstreamError(StreamcodecError):
    """The bytes are not a valid streamcodec bitstream."""


class VersionMismatch(BitstreamError):
    """The stream was written by an incompatible version or with other models."""


class PacketType(enum.IntEnum):
    KEYFRAME = 1
    STRUCTURE = 2
    TEXTURE = 3
    END = 15


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    fps_num: int
    fps_den: int
    backend_id: int
    num_coeffs: int
    basis_id: bytes
    structure_steps: tuple[float, ...]
    texture_codec: int
    texture_model_id: bytes
    flags: int = 0
    version: tuple[int, int] = VERSION

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den


@dataclass
class Packet:
    type: PacketType
    frame: int  # 8-bit on the wire; unwrapped by read_stream (and by the call receiver)
    payload: bytes
    flags: int = 0
    timestamp_ms: int | None = None
    wire_size: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Corruption:
    """A damaged byte range that read_stream skipped."""

    offset: int
    length: int
    reason: str


def _crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def write_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varint of a negative number {n}")  # n >>= 7 would never reach 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    n = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise BitstreamError("truncated varint")
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos + i + 1
    raise BitstreamError("varint too long")


def encode_header(h: Header) -> bytes:
    body = struct.pack(_HEADER_FMT, MAGIC, *h.version, h.width, h.height, h.fps_num, h.fps_den,
                       h.backend_id, h.num_coeffs, h.basis_id, *h.structure_steps,
                       h.texture_codec, h.texture_model_id, h.flags)
    return body + struct.pack(">H", _crc(body))


def parse_header(data: bytes) -> tuple[Header, int]:
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a streamcodec bitstream (bad magic)")
    if len(data) < 6:
        raise BitstreamError("truncated header")
    if data[4] != VERSION[0]:
        raise VersionMismatch(f"bitstream version {data[4]}.{data[5]}; this decoder reads {VERSION[0]}.x")
    if len(data) < _HEADER_LEN:
        raise BitstreamError("truncated header")
    body = data[: _HEADER_LEN - 2]
    if struct.unpack(">H", data[_HEADER_LEN - 2:_HEADER_LEN])[0] != _crc(body):
        raise BitstreamError("header CRC mismatch")
    f = struct.unpack(_HEADER_FMT, body)
    h = Header(width=f[3], height=f[4], fps_num=f[5], fps_den=f[6], backend_id=f[7], num_coeffs=f[8],
               basis_id=f[9], structure_steps=tuple(f[10:15]), texture_codec=f[15], texture_model_id=f[16],
               flags=f[17], version=(f[1], f[2]))
    if not (16 <= h.width <= 4096 and 16 <= h.height <= 4096 and h.fps_num > 0 and h.fps_den > 0):
        raise BitstreamError(f"implausible header values {h.width}x{h.height} @ {h.fps_num}/{h.fps_den}")
    return h, _HEADER_LEN


def encode_packet(p: Packet) -> bytes:
    if len(p.payload) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    if p.timestamp_ms is not None and not 0 <= p.timestamp_ms < _MAX_TIMESTAMP:
        raise ValueError(f"timestamp {p.timestamp_ms} ms outside 0..2^42-1 (6 varint bytes)")
    # FLAG_TIMESTAMP on the wire says whether a timestamp follows, whatever p.flags claims.
    flags = (p.flags & ~FLAG_TIMESTAMP) | (FLAG_TIMESTAMP if p.timestamp_ms is not None else 0)
    out = bytearray([(int(p.type) << 4) | (flags & 0xF)])
    out.append(p.frame & 0xFF)
    if p.timestamp_ms is not None:
        out += write_varint(p.timestamp_ms)
    out += write_varint(len(p.payload))
    out += p.payload
    out += struct.pack(">H", _crc(bytes(out)))
    return bytes(out)


def parse_packet(data: bytes, pos: int = 0) -> tuple[Packet, int]:
    """Parse one packet at `pos`; raise BitstreamError unless it is whole and intact."""
    if len(data) - pos < 5:
        raise BitstreamError("truncated packet")
    t, flags = data[pos] >> 4, data[pos] & 0xF
    try:
        ptype = PacketType(t)
    except ValueError:
        raise BitstreamError(f"unknown packet type {t}") from None
    frame = data[pos + 1]
    q = pos + 2
    ts = None
    if flags & FLAG_TIMESTAMP:
        ts, q = read_varint(data, q, 6)
    n, q = read_varint(data, q, 3)
    if n > MAX_PAYLOAD:
        raise BitstreamError(f"packet length {n} exceeds the maximum")
    end = q + n
    if end + 2 > len(data):
        raise BitstreamError("truncated packet")
    if struct.unpack_from(">H", data, end)[0] != _crc(data[pos:end]):
        raise BitstreamError("packet CRC mismatch")
    return Packet(ptype, frame, bytes(data[q:end]), flags & ~FLAG_TIMESTAMP, ts, end + 2 - pos), end + 2


def unwrap_frame(frame8: int, last: int) -> int:
    """The full index nearest after `last` with these 8 low bits (a gap of up to ~5 s at 25 fps)."""
    base = last - (last & 0xFF)
    cands = [c for c in (base - 0x100 + frame8, base + frame8, base + 0x100 + frame8) if c >= 0]
    return min(cands, key=lambda c: (abs(c - last - 64), c))


def _near(p: Packet, last: int) -> bool:
    return last < 0 or -8 <= unwrap_frame(p.frame, last) - last <= 128


def _confirmed(data: bytes, p: Packet, nxt: int) -> bool:
    """A candidate followed at once by another intact packet of the same or a next frame."""
    try:
        q, _ = parse_packet(data, nxt)
    except BitstreamError:
        return False
    return (q.frame - p.frame) & 0xFF <= 8


def read_stream(data: bytes, offset: int) -> Iterator[Packet | Corruption]:
    """Packets from `offset` on, skipping (and reporting) damaged ranges.

    Resynchronisation accepts a candidate only if its CRC holds and its frame
    index is near the last good one, which keeps false locks rare; a candidate
    beyond that window (the damage swallowed more than ~5 s) is accepted when
    the next packet is intact too, and is then placed after the last good frame.
    """
    pos, last = offset, -1
    while pos < len(data):
        jump = False
        try:
            p, nxt = parse_packet(data, pos)
        except BitstreamError as exc:
            start, reason = pos, str(exc)
            pos += 1
            while pos < len(data):
                try:
                    p, nxt = parse_packet(data, pos)
                    if _near(p, last):
                        break
                    if _confirmed(data, p, nxt):
                        jump = True
                        break
                except BitstreamError:
                    pass
                pos += 1
            yield Corruption(start, pos - start, reason)
            if pos >= len(data):
                return
        if jump:  # the smallest index after `last` with these low bits
            p.frame = last + 1 + ((p.frame - last - 1) & 0xFF)
        elif last >= 0:
            p.frame = unwrap_frame(p.frame, last)
        last = p.frame
        yield p
        pos = nxt
