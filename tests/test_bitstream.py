"""The .scv container: header, packets, frame-index unwrapping and resynchronisation past damage."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcodec.bitstream import (FLAG_INTRA, FLAG_NOFACE, FLAG_TIMESTAMP, MAGIC, MAX_PAYLOAD, VERSION,
                                   BitstreamError, Corruption, Header, Packet, PacketType, VersionMismatch,
                                   encode_header, encode_packet, parse_header, parse_packet, read_stream)
from streamcodec.bitstream.format import unwrap_frame

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def make_header(**kw) -> Header:
    base = dict(width=256, height=256, fps_num=25, fps_den=1, backend_id=1, num_coeffs=32, basis_id=b"basis-01",
                # float32 on the wire: exactly representable values round-trip exactly
                structure_steps=(0.5, 0.25, 0.125, 1.0, 0.25), texture_codec=1, texture_model_id=b"texmodel")
    base.update(kw)
    return Header(**base)


HEADER = encode_header(make_header())


# ---------------------------------------------------------------- header


def test_header_layout_and_round_trip():
    h = make_header(width=512, height=384, fps_num=30000, fps_den=1001, backend_id=2, num_coeffs=8,
                    flags=0x5A, version=(VERSION[0], 7))
    data = encode_header(h)
    assert len(data) == 56
    assert data[:4] == MAGIC and data[4] == VERSION[0] and data[5] == 7
    assert struct.unpack(">HHHH", data[6:14]) == (512, 384, 30000, 1001)
    assert data[14] == 2 and data[15] == 8 and data[16:24] == b"basis-01"
    assert struct.unpack(">5f", data[24:44]) == (0.5, 0.25, 0.125, 1.0, 0.25)
    assert data[44] == 1 and data[45:53] == b"texmodel" and data[53] == 0x5A
    got, off = parse_header(data + b"trailing packets")
    assert got == h and off == 56
    assert got.fps == pytest.approx(30000 / 1001)


def test_header_steps_are_float32():
    got, _ = parse_header(encode_header(make_header(structure_steps=(0.006, 0.004, 0.45, 0.16, 0.25))))
    assert got.structure_steps == pytest.approx((0.006, 0.004, 0.45, 0.16, 0.25), rel=1e-7)


def test_minor_version_is_accepted():
    got, _ = parse_header(encode_header(make_header(version=(VERSION[0], VERSION[1] + 3))))
    assert got.version == (VERSION[0], VERSION[1] + 3)


@pytest.mark.parametrize("major", [0, VERSION[0] + 1, 255])
def test_major_version_mismatch(major):
    data = encode_header(make_header(version=(major, 4)))
    with pytest.raises(VersionMismatch, match=rf"version {major}\.4.*reads {VERSION[0]}\.x"):
        parse_header(data)
    # checked before the CRC, and even on a header cut short after the version bytes
    with pytest.raises(VersionMismatch):
        parse_header(data[:6])
    assert issubclass(VersionMismatch, BitstreamError)


@pytest.mark.parametrize("data", [b"", b"SC", b"SCVG" + HEADER[4:], b"\x00" * 56, b"RIFF" + HEADER[4:]])
def test_bad_magic(data):
    with pytest.raises(BitstreamError, match="magic"):
        parse_header(data)


def test_truncated_header():
    for n in range(len(HEADER)):
        with pytest.raises(BitstreamError) as ei:
            parse_header(HEADER[:n])
        assert not isinstance(ei.value, VersionMismatch)


def test_header_crc_and_implausible_values():
    for i in list(range(6, 54)):
        bad = bytearray(HEADER)
        bad[i] ^= 0x41
        with pytest.raises(BitstreamError, match="CRC"):
            parse_header(bytes(bad))
    for kw in (dict(width=8), dict(height=5000), dict(fps_num=0), dict(fps_den=0)):
        with pytest.raises(BitstreamError, match="implausible"):
            parse_header(encode_header(make_header(**kw)))


# ---------------------------------------------------------------- packets


SIZES = sorted({0, 1, 2, 126, 127, 128, 129, 255, 256, 1000, 2000, *range(3, 2000, 97)})


@pytest.mark.parametrize("ptype", list(PacketType))
@pytest.mark.parametrize("ts", [None, 0, 40, 127, 128, 123_456_789])
def test_packet_round_trip(ptype, ts):
    rng = random.Random(int(ptype) * 1000 + (ts or 0))
    for n in SIZES:
        payload = rng.randbytes(n)
        frame, flags = rng.randrange(256), rng.choice([0, FLAG_INTRA, FLAG_NOFACE, FLAG_INTRA | 0x4])
        p = Packet(ptype, frame, payload, flags, ts)
        wire = encode_packet(p)
        assert bool(wire[0] & FLAG_TIMESTAMP) == (ts is not None) and wire[0] >> 4 == int(ptype)
        got, end = parse_packet(b"xyz" + wire + b"tail", 3)
        assert got == p and end == 3 + len(wire) and got.wire_size == len(wire)


def test_packet_frame_is_8_bit_on_the_wire():
    got, _ = parse_packet(encode_packet(Packet(PacketType.STRUCTURE, 300, b"ab")))
    assert got.frame == 300 & 0xFF


def test_packet_limits():
    ok = Packet(PacketType.KEYFRAME, 0, bytes(MAX_PAYLOAD))
    assert parse_packet(encode_packet(ok))[0].payload == ok.payload
    with pytest.raises(ValueError):
        encode_packet(Packet(PacketType.KEYFRAME, 0, bytes(MAX_PAYLOAD + 1)))
    big = (1 << 42) - 1
    assert parse_packet(encode_packet(Packet(PacketType.END, 0, b"", 0, big)))[0].timestamp_ms == big
    for ts in (-1, 1 << 42):  # -1 used to loop forever in the varint writer
        with pytest.raises(ValueError):
            encode_packet(Packet(PacketType.END, 0, b"", 0, ts))
    # a stale FLAG_TIMESTAMP in flags without a timestamp must not corrupt the layout
    got, _ = parse_packet(encode_packet(Packet(PacketType.TEXTURE, 3, b"abc", FLAG_TIMESTAMP | FLAG_INTRA)))
    assert got == Packet(PacketType.TEXTURE, 3, b"abc", FLAG_INTRA, None)


def test_parse_packet_rejects_damage():
    wire = encode_packet(Packet(PacketType.TEXTURE, 7, b"hello world", 0, 99))
    for n in range(len(wire)):
        with pytest.raises(BitstreamError):
            parse_packet(wire[:n])
    for i in range(len(wire)):
        bad = bytearray(wire)
        bad[i] ^= 0x10
        with pytest.raises(BitstreamError):
            parse_packet(bytes(bad))
    unknown = bytes([0x40]) + wire[1:]
    with pytest.raises(BitstreamError, match="unknown packet type"):
        parse_packet(unknown)
    huge = bytes([0x20, 0, 0x81, 0x80, 0x40]) + bytes(8)  # length 2^20 + 1
    with pytest.raises(BitstreamError, match="exceeds"):
        parse_packet(huge)


# ---------------------------------------------------------------- frame indices


def test_unwrap_frame():
    assert unwrap_frame(0, 255) == 256
    assert unwrap_frame(4, 250) == 260
    assert unwrap_frame(250, 260) == 250  # a little late
    assert unwrap_frame(5, 1000) == 1029
    for last in range(0, 1200, 7):
        for d in range(-64, 192):
            if last + d >= 0:
                assert unwrap_frame((last + d) & 0xFF, last) == last + d
    # never a negative frame, even for a packet that would be "just before" frame 0
    assert all(unwrap_frame(f, last) >= 0 for last in range(70) for f in range(256))


def test_frame_index_unwrap_600_packets():
    types = [PacketType.STRUCTURE, PacketType.TEXTURE, PacketType.KEYFRAME]
    packets = [Packet(types[i % 3] if i % 7 == 0 else PacketType.STRUCTURE, i, bytes([i & 0xFF]) * (i % 11),
                      timestamp_ms=i * 40 if i % 5 == 0 else None) for i in range(600)]
    data = HEADER + b"".join(encode_packet(p) for p in packets)
    _, off = parse_header(data)
    out = list(read_stream(data, off))
    assert out == packets
    assert [p.frame for p in out] == list(range(600))


# ---------------------------------------------------------------- resynchronisation


def small_stream(n_frames: int = 20, seed: int = 0) -> tuple[bytes, list[Packet], list[tuple[int, int]]]:
    """A header and packets shaped like a session's; returns data, packets and their byte ranges."""
    rng = random.Random(seed)
    packets = []
    for i in range(n_frames):
        if i % 10 == 0:
            packets.append(Packet(PacketType.KEYFRAME, i, bytes([1]) + rng.randbytes(rng.randrange(60, 200))))
        packets.append(Packet(PacketType.STRUCTURE, i, rng.randbytes(rng.randrange(2, 12)),
                              FLAG_INTRA if i % 10 == 0 else 0))
        if i % 10 == 0 or i % 4 == 3:
            packets.append(Packet(PacketType.TEXTURE, i, rng.randbytes(rng.randrange(1, 8))))
    packets.append(Packet(PacketType.END, n_frames, struct.pack(">I", n_frames)))
    data, ranges = bytearray(HEADER), []
    for p in packets:
        w = encode_packet(p)
        ranges.append((len(data), len(data) + len(w)))
        data += w
    return bytes(data), packets, ranges


def split(items):
    packets = [x for x in items if isinstance(x, Packet)]
    bad = [x for x in items if isinstance(x, Corruption)]
    assert len(packets) + len(bad) == len(items)
    return packets, bad


def check_partition(items, off: int, n: int) -> None:
    """read_stream accounts for every byte exactly once, in order."""
    pos = off
    for x in items:
        if isinstance(x, Corruption):
            assert x.offset == pos and x.length > 0 and x.reason
            pos += x.length
        else:
            assert 0 < x.wire_size and len(x.payload) <= MAX_PAYLOAD
            pos += x.wire_size
    assert pos == n


def test_clean_stream_has_no_corruption():
    data, packets, _ = small_stream()
    items = list(read_stream(data, 56))
    assert items == packets
    check_partition(items, 56, len(data))


def test_flipped_byte_anywhere():
    data, packets, ranges = small_stream()
    rng = random.Random(1)
    for pos in range(56, len(data)):
        bad = bytearray(data)
        bad[pos] ^= rng.randrange(1, 256)
        items = list(read_stream(bytes(bad), 56))
        got, corrupt = split(items)
        hit = next(k for k, (a, b) in enumerate(ranges) if a <= pos < b)
        assert got == packets[:hit] + packets[hit + 1:], pos
        assert len(corrupt) == 1 and corrupt[0].offset == ranges[hit][0] and corrupt[0].length == (
            ranges[hit][1] - ranges[hit][0]), pos
        check_partition(items, 56, len(data))


def test_truncation_at_every_offset():
    data, packets, ranges = small_stream()
    ends = {b for _, b in ranges}
    for cut in range(56, len(data) + 1):
        items = list(read_stream(data[:cut], 56))
        got, corrupt = split(items)
        whole = [p for p, (_, b) in zip(packets, ranges) if b <= cut]
        assert got == whole, cut
        if cut in ends or cut == 56:
            assert corrupt == []
        else:
            start = max([56] + [b for b in ends if b < cut])
            assert corrupt == [Corruption(start, cut - start, corrupt[0].reason)], cut
            assert "truncated" in corrupt[0].reason
        check_partition(items, 56, cut)


@pytest.mark.parametrize("seed", range(30))
def test_inserted_garbage(seed):
    data, packets, ranges = small_stream(seed=seed)
    rng = random.Random(100 + seed)
    at = rng.randrange(56, len(data))
    garbage = rng.randbytes(rng.randrange(1, 600))
    bad = data[:at] + garbage + data[at:]
    items = list(read_stream(bad, 56))
    got, corrupt = split(items)
    inside = [k for k, (a, b) in enumerate(ranges) if a < at < b]
    assert got == [p for k, p in enumerate(packets) if k not in inside]
    assert len(corrupt) == 1
    c = corrupt[0]
    assert c.offset <= at and c.offset + c.length >= at + len(garbage)
    check_partition(items, 56, len(bad))


def test_resync_after_a_long_gap():
    """Damage that swallows more than the 128-frame plausibility window still resynchronises."""
    rng = random.Random(5)
    packets = [Packet(PacketType.STRUCTURE, i, rng.randbytes(6)) for i in range(600)]
    wires = [encode_packet(p) for p in packets]
    starts = [0]
    for w in wires:
        starts.append(starts[-1] + len(w))
    data = b"".join(wires)
    for gap in (10, 100, 140, 200, 240):  # a gap near 256 frames is ambiguous modulo 256
        lo, hi = 100, 100 + gap  # packets 100 .. hi-1 damaged: cut mid-packet on both sides
        d = data[: starts[lo] + 3] + data[starts[hi] + 4:]
        got, corrupt = split(list(read_stream(d, 0)))
        assert len(corrupt) == 1
        assert got == packets[:lo] + packets[hi + 1:], gap
        assert [p.frame for p in got] == list(range(lo)) + list(range(hi + 1, 600))


def test_resync_at_stream_start_takes_any_packet():
    data, packets, ranges = small_stream()
    bad = b"\xff\x00garbage" + data[56:]
    got, corrupt = split(list(read_stream(bad, 0)))
    assert got == packets and corrupt[0].offset == 0 and corrupt[0].length == 9


# ---------------------------------------------------------------- fuzzing


VALID, _, _ = small_stream(12, seed=7)


@st.composite
def mutated(draw):
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        else:
            del data[i:]
    return bytes(data)


def check_read_stream(data: bytes, off: int) -> None:
    items = list(read_stream(data, off))  # must not raise
    for x in items:
        assert isinstance(x, (Packet, Corruption))
        if isinstance(x, Packet):
            assert len(x.payload) <= min(MAX_PAYLOAD, len(data)) and x.frame >= 0
            assert isinstance(x.type, PacketType)
    check_partition(items, off, max(off, len(data)))


def check_parse_header(data: bytes) -> int:
    try:
        _, off = parse_header(data)
    except BitstreamError:
        return 0
    return off


@FUZZ
@given(st.binary(max_size=3000))
def test_fuzz_arbitrary_bytes(data):
    check_parse_header(data)
    check_parse_header(MAGIC + bytes([VERSION[0]]) + data)
    check_read_stream(data, 0)
    check_read_stream(data, min(len(data), 56))


@FUZZ
@given(mutated())
def test_fuzz_mutated_stream(data):
    off = check_parse_header(data) or min(56, len(data))
    check_read_stream(data, off)


@settings(FUZZ, max_examples=80)
@given(st.lists(st.tuples(st.sampled_from(list(PacketType)), st.integers(0, 255), st.binary(max_size=300),
                          st.integers(0, 15), st.none() | st.integers(0, (1 << 42) - 1)), max_size=12),
       st.integers(0, 10_000))
def test_fuzz_packet_sequences_round_trip(specs, seed):
    packets = [Packet(t, f, p, fl & ~FLAG_TIMESTAMP, ts) for t, f, p, fl, ts in specs]
    data = b"".join(encode_packet(p) for p in packets)
    for p, (q, _) in zip(packets, _walk(data)):
        assert q == p
    # and a single random byte flip is contained
    if data:
        bad = bytearray(data)
        bad[seed % len(data)] ^= 1 + seed % 255
        check_read_stream(bytes(bad), 0)


def _walk(data: bytes):
    pos = 0
    while pos < len(data):
        p, pos = parse_packet(data, pos)
        yield p, pos
