"""Call transport over real aiortc peers on loopback: loss, key-frame requests, hostile input, the CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiortc")

from streamcodec.bitstream import PacketType, encode_packet  # noqa: E402
from streamcodec.session import SessionDecoder, SessionEncoder  # noqa: E402
from streamcodec.transport import (CONTROL, MAX_MESSAGE, STRUCTURE, CallReceiver, CallSender,  # noqa: E402
                                   allow_loopback_candidates, connect_in_process, create_pc, drain,
                                   open_channels, send_frames, transport_bytes, wait_open)

ROOT = Path(__file__).resolve().parents[1]


async def _pair(playout_delay_ms: float = 40.0):
    """Sender and receiver peer connections in this process, connected over loopback."""
    allow_loopback_candidates()
    a, b = create_pc(), create_pc()
    ca, sa = open_channels(a)
    cb, sb = open_channels(b)
    rx = CallReceiver(cb, sb, playout_delay_ms=playout_delay_ms)
    await connect_in_process(a, b)
    for ch in (ca, sa, cb, sb):
        await wait_open(ch, 10)
    return a, b, (ca, sa), rx


def _lossless(header, packets) -> dict[int, np.ndarray]:
    dec = SessionDecoder(header)
    return {f.index: f.image for p in packets for f in dec.decode(p)}


def _camera_until(frames: list[np.ndarray], done: Callable[[int], bool], limit: int) -> Iterator[np.ndarray]:
    """The clip played forwards and backwards (no cut) until `done(frames given)` or `limit` frames."""
    cycle = frames + frames[-2:0:-1]
    n = 0
    while n < limit and not done(n):
        yield cycle[n % len(cycle)]
        n += 1


def test_loss_and_keyframe_request(talking_frames, cfg):
    # Intra structure every 10 frames so a lost structure message resyncs inside the clip.
    cfg10 = cfg.with_overrides(intra_period=10)
    # When the requested key frame goes out depends on the host's speed (the first request falls in
    # the guard of the withheld key; on a slow CI host the answer came at frame 49): the camera runs
    # until 30 frames have followed it, so what is checked after it does not depend on the host.
    after_key, limit = 30, 300
    dropped_frames: list[int] = []
    sent: list[int] = []

    async def call():
        a, b, (ca, sa), rx = await _pair()
        try:
            enc = SessionEncoder(cfg10)
            # Deterministic ~10% structure loss; reliable message 0 is the first key frame: withheld.
            # No redundancy: every lost message must break the chain, to test concealment and resync.
            tx = CallSender(ca, sa, enc, drop_structure=lambda i: i % 10 == 4, drop_reliable=lambda i: i == 0,
                            redundancy=0)
            tx.send_header(enc.header())

            def answered(n: int) -> bool:
                keys = [p.frame for p in tx.sent_packets if p.type == PacketType.KEYFRAME]
                return len(keys) >= 2 and n - keys[1] >= after_key

            camera = _camera_until(talking_frames, answered, limit)
            await asyncio.wait_for(send_frames(tx, camera, cfg10.fps, drop_late=False), 200)
            await drain([ca, sa])
            await asyncio.wait_for(rx.ended.wait(), 10)
            await rx.finish()
            dropped_frames.extend(tx.unreliable.dropped_frames)
            sent.append(tx.encoder.stats.frames)
            return tx, rx, transport_bytes(a)
        finally:
            await a.close()
            await b.close()

    tx, rx, wire = asyncio.run(asyncio.wait_for(call(), 240))
    n = sent[0]
    got = {f.index: f for f in rx.frames}
    assert sorted(got) == list(range(n)), "every frame index comes out, lost ones concealed"
    assert tx.dropped_structure_messages >= 3 and dropped_frames
    assert tx.keyframe_requests, "withholding the first key frame must make the receiver ask for one"
    assert rx.stats.keyframe_requests >= 1
    keys = [p.frame for p in tx.sent_packets if p.type == PacketType.KEYFRAME]
    assert len(keys) >= 2 and keys[0] == 0 and n - keys[1] >= after_key, f"{n} frames, keys {keys}"
    assert all(got[i].concealed for i in range(keys[1])), "nothing decodes before the requested key frame"
    # From the requested key frame on, a frame decodes unless its structure was lost or its chain
    # broke since the last intra packet; those frames must equal a lossless decode of the same packets.
    ref = _lossless(tx.encoder.header(), tx.sent_packets)
    intra = {p.frame for p in tx.sent_packets if p.type == PacketType.STRUCTURE and p.flags & 1}
    broken, compared = False, 0
    for i in range(keys[1], n):
        if i in dropped_frames:
            broken = True
        elif i in intra:
            broken = False
        if broken:
            assert got[i].concealed, f"frame {i} should be held until the next intra packet"
            continue
        assert not got[i].concealed, f"frame {i} should decode"
        # Not bit-exact: landmark floats differ by ~2e-5 px between two decoders when an encoder runs
        # in a thread beside them (threaded float maths), which flips a few pixels by one level.
        d = np.abs(got[i].image.astype(np.int16) - ref[i])
        assert (d > 0).mean() < 0.005 and d.mean() < 0.05, (
            f"frame {i} differs from the lossless decode (max {d.max()}, {(d > 0).mean():.2%} of pixels); "
            f"keys {keys} dropped {dropped_frames} intra {sorted(intra)}")
        compared += 1
    assert compared >= 8  # of 30: ~3 losses each hold up to the next intra packet (every 10 frames)
    assert any(got[i].concealed for i in range(keys[1], n)), "injected loss shows after the key"
    assert tx.stats[STRUCTURE].messages_sent == n - len(keys) - tx.dropped_structure_messages
    received = tx.stats[CONTROL].messages_received + tx.stats[STRUCTURE].messages_received
    assert received == len(tx.keyframe_requests) + tx.intra_requests
    # A broken chain asks for an intra structure packet, not a key frame.
    assert tx.intra_requests >= 1 and rx.stats.intra_requests == tx.intra_requests
    assert wire is not None and wire["bytes_sent"] > tx.stats[CONTROL].bytes_sent + tx.stats[STRUCTURE].bytes_sent


def test_redundancy_repairs_single_losses_without_a_freeze(talking_frames, cfg):
    """Each structure message repeats the previous one: every third message is lost, yet every
    frame after the key frame decodes, equal to a lossless decode, with no request at all."""
    frames = talking_frames[:30]

    async def call():
        a, b, (ca, sa), rx = await _pair()
        try:
            enc = SessionEncoder(cfg)
            tx = CallSender(ca, sa, enc, drop_structure=lambda i: i % 3 == 1, redundancy=1)
            tx.send_header(enc.header())
            await asyncio.wait_for(send_frames(tx, frames, cfg.fps, drop_late=False), 120)
            await drain([ca, sa])
            await asyncio.wait_for(rx.ended.wait(), 10)
            await rx.finish()
            return tx, rx
        finally:
            await a.close()
            await b.close()

    tx, rx = asyncio.run(asyncio.wait_for(call(), 150))
    assert tx.dropped_structure_messages >= 8
    got = {f.index: f for f in rx.frames}
    assert sorted(got) == list(range(len(frames)))
    # The last message has no successor to repair it: its frame may be held at the end.
    concealed = [i for i, f in got.items() if f.concealed]
    assert concealed in ([], [len(frames) - 1]), concealed
    ref = _lossless(tx.encoder.header(), tx.sent_packets)
    for i, f in got.items():
        if not f.concealed:
            d = np.abs(f.image.astype(np.int16) - ref[i])
            assert (d > 0).mean() < 0.005 and d.mean() < 0.05, f"frame {i} differs from the lossless decode"
    assert rx.stats.redundant_packets > 0
    assert not tx.keyframe_requests and tx.intra_requests == 0, (rx.decoder.errors, tx.unreliable.dropped_frames)


def test_malformed_and_oversized_messages_are_dropped(talking_frames, cfg, caplog):
    frames = talking_frames[:12]

    async def call():
        a, b, (ca, sa), rx = await _pair()
        try:
            enc = SessionEncoder(cfg)
            tx = CallSender(ca, sa, enc)
            tx.send_header(enc.header())
            for i, img in enumerate(frames):
                await tx.encode_and_send(img)
                if i == 4:
                    good = encode_packet(tx.sent_packets[-1])
                    sa.send(b"\x2f\xff garbage")  # not a packet
                    sa.send(good[:-1] + bytes([good[-1] ^ 1]))  # CRC broken
                    ca.send("not for you")  # text from the sender
                    # aiortc will not send over 256 KiB; a peer with another stack might: inject it.
                    rx.control.emit("message", b"\x00" * (MAX_MESSAGE + 1))
                await asyncio.sleep(0.02)
            tx.end()
            await drain([ca, sa])
            await asyncio.wait_for(rx.ended.wait(), 10)
            await rx.finish()
            return rx
        finally:
            await a.close()
            await b.close()

    with caplog.at_level(logging.WARNING, logger="streamcodec.transport.channels"):
        rx = asyncio.run(asyncio.wait_for(call(), 90))
    assert rx.stats.dropped_messages == 4
    text = caplog.text
    assert "malformed message on structure" in text and "oversized message on control" in text
    assert "unexpected text message" in text
    assert [f.index for f in rx.frames] == list(range(len(frames)))
    assert not any(f.concealed for f in rx.frames), "decoding carried on after the bad messages"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_send_receive(tmp_path, talking_frames, cfg):
    from streamcodec.io import iter_frames, write_video

    clip = tmp_path / "clip.mkv"  # already in working format: the sender skips preparation
    write_video(clip, talking_frames[:30], fps=cfg.fps)
    out, port = tmp_path / "out.mp4", _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    recv = subprocess.Popen([sys.executable, "-m", "rtc_demo", "receive", "--port", str(port), "--record", str(out),
                             "--timeout", "90", "--loss", "0.1", "--impair-seed", "8"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = recv.stdout.readline()  # the receiver is listening once it says so
        assert "listening" in line, line
        send = subprocess.run([sys.executable, "-m", "rtc_demo", "send", "--file", str(clip), "--port", str(port),
                               "--max-frames", "30", "--frames-per-message", "2", "--every-frame",
                               "--loss", "0.1", "--impair-seed", "7"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=100)
        assert send.returncode == 0, send.stderr[-3000:]
        rest, _ = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
    assert recv.returncode == 0, rest[-3000:]
    # 10% of the datagrams each way are dropped on the real sockets; SCTP repairs the reliable channel, lost
    # structure is concealed. --every-frame: no capture drops however loaded the machine, so all 30 frames
    # must come out and be recorded.
    import re

    drops = [int(m) for m in re.findall(r"impairment dropped (\d+) \(loss\)", send.stdout + rest)]
    assert drops and drops[0] > 0, send.stdout
    assert "received 30 frames of 30 sent" in rest, rest[-2000:]
    assert "sent 30 frames" in send.stdout and "30 encoded" in send.stdout, send.stdout
    assert out.exists() and sum(1 for _ in iter_frames(out)) == 30


def test_impairment_on_the_real_transport():
    """Loss and delay applied to every datagram the peers send: unreliable messages go missing
    at about the configured rate and arrive no sooner than the configured delay."""
    import struct
    import time

    from streamcodec.transport import Impairment, impair_pc

    n, delay_ms, loss = 200, 60.0, 0.2

    async def call():
        allow_loopback_candidates()
        a, b = create_pc(), create_pc()
        ca, sa = open_channels(a)
        cb, sb = open_channels(b)
        arrivals: list[float] = []
        sb.on("message", lambda m: arrivals.append((time.monotonic() - struct.unpack(">d", m[:8])[0]) * 1000))
        try:
            await connect_in_process(a, b)
            for ch in (ca, sa, cb, sb):
                await wait_open(ch, 10)
            imp = Impairment(delay_ms=delay_ms, loss=loss, seed=7)
            ta, tb = impair_pc(a, imp), impair_pc(b, imp)
            for _ in range(n):
                sa.send(struct.pack(">d", time.monotonic()) + b"x" * 40)
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)
            return arrivals, ta, tb
        finally:
            await a.close()
            await b.close()

    arrivals, ta, tb = asyncio.run(asyncio.wait_for(call(), 60))
    got = len(arrivals) / n
    assert 0.65 <= got <= 0.92, f"{got:.2f} of the messages arrived at {loss:.0%} loss"
    assert 0.1 <= ta.dropped_loss / ta.packets_offered <= 0.3
    assert tb.packets_sent > 0 and tb.dropped_loss > 0, "the way back (SACKs) is impaired too"
    assert min(arrivals) >= delay_ms - 1, f"arrived after {min(arrivals):.1f} ms"
    # No upper bound on arrival: on a loaded machine the event loop itself adds delay. The wrapper held
    # every datagram it sent for at least the configured delay.
    assert ta.delays_ms and min(ta.delays_ms) >= delay_ms - 0.5
    # Counted at both sockets: what one peer put on the wire is what the other took off it (a few in flight).
    assert abs(ta.packets_received - tb.packets_sent) <= 5 and abs(tb.packets_received - ta.packets_sent) <= 5
