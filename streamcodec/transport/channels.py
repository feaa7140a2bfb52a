"""Message framing and the two ends of a call over aiortc data channels.

Channels (both negotiated out of band, so neither side waits for the other's
DATA_CHANNEL_OPEN):
  "control"   reliable, ordered. Sender -> receiver: first the stream header,
              then key frames (with their frame's structure and texture packets)
              and texture packets. Receiver -> sender: small JSON text messages.
  "structure" unordered, maxRetransmits=0: structure packets, the loss-tolerant
              layer (the decoder holds and resyncs at intra packets).

Binary messages hold one or more encoded packets back to back; packets are
self-delimiting, so the receiver parses them in a loop. Text messages are JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

from aiortc import RTCDataChannel, RTCPeerConnection

from ..bitstream import (BitstreamError, Header, Packet, PacketType, encode_header, encode_packet, parse_header,
                         parse_packet)
from ..bitstream.format import unwrap_frame
from ..session import DecodedFrame, SessionDecoder, SessionEncoder

log = logging.getLogger(__name__)

CONTROL = "control"
STRUCTURE = "structure"
MAX_MESSAGE = 256 * 1024  # the SCTP maximum message aiortc accepts; anything larger is not ours
# Per data-channel message on the wire (IPv4 20 + UDP 8 + DTLS 37 + SCTP 28, shared/NOTES.md); an estimate.
WIRE_OVERHEAD_PER_MESSAGE = 93
IP_UDP_OVERHEAD = 28  # added per DTLS record to the DTLS transport's own byte count


# ---------------------------------------------------------------- framing

def pack_packets(packets: list[Packet]) -> bytes:
    return b"".join(encode_packet(p) for p in packets)


def unpack_message(data: bytes) -> list[Packet]:
    """All packets in a binary message; BitstreamError if any byte of it is not a whole packet."""
    out, pos = [], 0
    while pos < len(data):
        p, pos = parse_packet(data, pos)
        out.append(p)
    if not out:
        raise BitstreamError("empty message")
    return out


def open_channels(pc: RTCPeerConnection) -> tuple[RTCDataChannel, RTCDataChannel]:
    """Both peers call this before the offer/answer exchange; the ids match by construction."""
    control = pc.createDataChannel(CONTROL, ordered=True, negotiated=True, id=0)
    structure = pc.createDataChannel(STRUCTURE, ordered=False, maxRetransmits=0, negotiated=True, id=1)
    return control, structure


async def wait_open(channel: RTCDataChannel, timeout: float = 10.0) -> None:
    if channel.readyState == "open":
        return
    opened = asyncio.get_running_loop().create_future()
    channel.once("open", lambda: opened.done() or opened.set_result(None))
    await asyncio.wait_for(opened, timeout)


# ---------------------------------------------------------------- stats

@dataclass
class ChannelStats:
    messages_sent: int = 0
    bytes_sent: int = 0  # payload bytes (what the application hands to send())
    messages_received: int = 0
    bytes_received: int = 0

    def sent(self, n: int) -> None:
        self.messages_sent += 1
        self.bytes_sent += n

    def received(self, n: int) -> None:
        self.messages_received += 1
        self.bytes_received += n

    def wire_estimate_sent(self) -> int:
        """Payload + the documented per-message overhead (SACKs and fragmentation not included)."""
        return self.bytes_sent + WIRE_OVERHEAD_PER_MESSAGE * self.messages_sent


def _payload_len(msg: bytes | str) -> int:
    return len(msg.encode() if isinstance(msg, str) else msg)


def transport_bytes(pc: RTCPeerConnection) -> dict[str, int] | None:
    """Bytes and packets the DTLS transport under SCTP sent and received (SACKs, handshake and all).

    aiortc counts them per DTLS record; add IP_UDP_OVERHEAD per packet for the wire.
    STUN consent checks go around DTLS and are not included. None if not connected or if this
    aiortc lacks the counters: RTCPeerConnection.getStats() reports only media senders/receivers,
    so this reads RTCDtlsTransport._get_stats() (private in aiortc 1.16).
    """
    sctp = pc.sctp
    get_stats = getattr(sctp.transport, "_get_stats", None) if sctp is not None else None
    if get_stats is None:
        return None
    report = get_stats()
    for s in report.values():
        if getattr(s, "type", None) == "transport":
            return {"bytes_sent": s.bytesSent, "packets_sent": s.packetsSent,
                    "bytes_received": s.bytesReceived, "packets_received": s.packetsReceived,
                    "wire_bytes_sent": s.bytesSent + IP_UDP_OVERHEAD * s.packetsSent,
                    "wire_bytes_received": s.bytesReceived + IP_UDP_OVERHEAD * s.packetsReceived}
    return None


# ---------------------------------------------------------------- sender

# Decides, per outgoing structure message (0, 1, 2, ...), whether to drop it before send: loss injection.
DropFn = Callable[[int], bool]
# A key-frame request within this long after a key frame was sent is taken as asking for that one.
KEYFRAME_GUARD_S = 0.3


class Outbox:
    """One channel's outgoing queue: packets gather until flushed as one message.

    `drop` (loss injection for tests) decides per message sequence number whether the message is
    withheld; the frames it carried are remembered so a test can tell which frames were lost.

    `redundancy` n > 0 repeats the packets of the previous n messages in each message (RFC 2198
    style): a single lost message is repaired by the next one, with no round trip and no freeze.
    Structure packets are ~20 B against ~93 B of per-message overhead, so a copy is cheap on the wire.
    """

    def __init__(self, channel: RTCDataChannel, stats: ChannelStats, drop: DropFn | None = None,
                 redundancy: int = 0) -> None:
        if not 0 <= redundancy <= 4:
            raise ValueError("redundancy must be 0..4 messages")
        self.channel, self.stats, self.drop = channel, stats, drop
        self.pending: list[Packet] = []
        self.seq = 0
        self.dropped_messages = 0
        self.dropped_frames: list[int] = []
        self._recent: deque[list[Packet]] = deque(maxlen=redundancy)  # maxlen 0 keeps nothing

    def add(self, p: Packet) -> None:
        self.pending.append(p)

    def flush(self) -> None:
        if not self.pending:
            return
        packets, self.pending = self.pending, []
        copies = [p for msg in self._recent for p in msg]
        self._recent.append(packets)
        seq, self.seq = self.seq, self.seq + 1
        if self.drop and self.drop(seq):
            self.dropped_messages += 1
            self.dropped_frames += [p.frame for p in packets]
            return
        send_message(self.channel, self.stats, pack_packets(copies + packets))

    def forget(self) -> None:
        """No copies across a key frame: what came before it is of no use after it."""
        self._recent.clear()


def send_message(channel: RTCDataChannel, stats: ChannelStats, msg: bytes | str) -> None:
    if channel.readyState != "open":
        log.warning("channel %s is %s; message dropped", channel.label, channel.readyState)
        return
    channel.send(msg)
    stats.sent(_payload_len(msg))


class CallSender:
    """Encoder side: frames out, key-frame requests in."""

    def __init__(self, control: RTCDataChannel, structure: RTCDataChannel, encoder: SessionEncoder,
                 frames_per_message: int = 1, drop_structure: DropFn | None = None,
                 drop_reliable: DropFn | None = None, redundancy: int = 2) -> None:
        if not 1 <= frames_per_message <= 16:
            raise ValueError("frames_per_message must be 1..16")
        self.control, self.structure = control, structure
        self.encoder = encoder
        self.frames_per_message = frames_per_message
        self.stats = {CONTROL: ChannelStats(), STRUCTURE: ChannelStats()}
        self.reliable = Outbox(control, self.stats[CONTROL], drop_reliable)  # e.g. withhold the first key frame
        self.unreliable = Outbox(structure, self.stats[STRUCTURE], drop_structure, redundancy)
        self.keyframe_requests: list[dict] = []
        self.intra_requests = 0
        self.keyframe_requests_ignored = 0
        self._last_key_sent = -1e9
        self.sent_packets: list[Packet] = []  # everything the encoder produced, for lossless comparisons
        # stream frame index -> (source frame index, capture time.monotonic()): frames dropped at
        # capture leave gaps in the source indices; the receiver's frame indices are stream indices.
        self.captured: dict[int, tuple[int, float]] = {}
        self._pending_frames = 0
        self._keyframe_budget: int | None = None  # a bitrate change, applied before the next encode
        control.on("message", lambda m: self._on_control(CONTROL, m))
        # Requests come on the unordered structure channel: on the ordered reliable one a lost
        # datagram holds them back for SCTP's retransmission timeout (>= 1 s).
        structure.on("message", lambda m: self._on_control(STRUCTURE, m))

    @property
    def dropped_structure_messages(self) -> int:
        return self.unreliable.dropped_messages

    @property
    def dropped_reliable_messages(self) -> int:
        return self.reliable.dropped_messages

    def _on_control(self, channel: str, msg: bytes | str) -> None:
        self.stats[channel].received(_payload_len(msg))
        try:
            if len(msg) > 4096 or not isinstance(msg, str):
                raise ValueError("not a short text message")
            req = json.loads(msg)
            if not isinstance(req, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # JSONDecodeError is a ValueError
            log.warning("control message from the receiver dropped: %s", exc)
            return
        if req.get("type") == "keyframe_request":
            self.keyframe_requests.append(req)
            if time.monotonic() - self._last_key_sent < KEYFRAME_GUARD_S:
                # Requests repeat while the receiver waits; the key frame just sent answers them.
                self.keyframe_requests_ignored += 1
                return
            self.encoder.request_keyframe(f"receiver: {req.get('reason', '?')}"[:80])
        elif req.get("type") == "intra_request":
            self.intra_requests += 1
            self.encoder.request_intra()
        else:
            log.warning("unknown control message type %r dropped", req.get("type"))

    def send_header(self, header: Header) -> None:
        send_message(self.control, self.stats[CONTROL], encode_header(header))

    def set_keyframe_budget(self, max_bytes: int) -> None:
        """The bitrate setting: bytes per key frame. Takes effect with a fresh key frame."""
        if not 300 <= max_bytes <= 100_000:
            raise ValueError("key-frame budget must be 300..100000 bytes")
        self._keyframe_budget = max_bytes

    def flush(self) -> None:
        self.unreliable.flush()
        self.reliable.flush()
        self._pending_frames = 0

    def send_packets(self, packets: list[Packet]) -> None:
        """One frame's packets. A key frame travels with its own structure packet on the reliable
        channel: the decoder needs the key before that structure, and the two channels do not keep
        order between them. A key frame is flushed at once (it is what a stalled receiver waits for)."""
        self.sent_packets += packets
        if any(p.type == PacketType.KEYFRAME for p in packets):
            self._last_key_sent = time.monotonic()
            self.unreliable.flush()  # earlier frames' structure first, so the receiver sees them in order
            self.unreliable.forget()
            for p in packets:
                self.reliable.add(p)
            self.reliable.flush()
            self._pending_frames = 0
            return
        for p in packets:
            (self.unreliable if p.type == PacketType.STRUCTURE else self.reliable).add(p)
        self._pending_frames += 1
        if self._pending_frames >= self.frames_per_message:
            self.flush()

    def _apply_settings(self) -> None:
        if self._keyframe_budget is None:
            return
        budget, self._keyframe_budget = self._keyframe_budget, None
        cfg = self.encoder.cfg
        self.encoder.cfg = replace(cfg, keyframe=replace(cfg.keyframe, max_bytes=budget))
        self.encoder.request_keyframe(f"key-frame budget {budget} B")

    async def encode_and_send(self, img, source_index: int | None = None, captured_at: float | None = None) -> None:
        # The encoder (landmarks, AV1 key frames) takes tens of ms: a thread keeps SCTP serviced meanwhile.
        self._apply_settings()
        index = self.encoder.stats.frames
        self.captured[index] = (index if source_index is None else source_index,
                                time.monotonic() if captured_at is None else captured_at)
        packets = await asyncio.to_thread(self.encoder.encode_frame, img)
        self.send_packets(packets)

    def end(self) -> None:
        self.reliable.add(self.encoder.end())
        self.flush()


class FrameSlot:
    """The newest captured frame, waiting for the encoder: a frame the encoder has not taken by the
    time the next one arrives is dropped (counted), so a slow encoder never builds a queue."""

    def __init__(self) -> None:
        self._item: tuple[int, float, object] | None = None
        self._ready = asyncio.Event()
        self.closed = False
        self.captured = 0
        self.dropped = 0

    def put(self, index: int, img) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = (index, time.monotonic(), img)
        self.captured += 1
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> tuple[int, float, object] | None:
        """(source index, capture time, image), or None once closed and empty."""
        while self._item is None:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        return item


async def encode_loop(sender: CallSender, slot: FrameSlot) -> None:
    """Encode whatever the slot holds, newest first, until it is closed."""
    while (item := await slot.get()) is not None:
        index, captured_at, img = item
        await sender.encode_and_send(img, index, captured_at)


# ---------------------------------------------------------------- receiver

@dataclass
class ReceiverStats:
    messages: dict[str, int] = field(default_factory=lambda: {CONTROL: 0, STRUCTURE: 0})
    bytes: dict[str, int] = field(default_factory=lambda: {CONTROL: 0, STRUCTURE: 0})
    dropped_messages: int = 0  # malformed or oversized
    late_packets: int = 0  # arrived after their frame was played out (or given up)
    skipped_frames: int = 0  # given up by the playout buffer
    redundant_packets: int = 0  # copies of structure already received (sender redundancy)
    keyframe_requests: int = 0
    intra_requests: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None


class CallReceiver:
    """Decoder side: packets in, frames out in frame order, key-frame requests back.

    Playout buffer: packets wait per frame until every earlier frame has been played out or
    given up. A missing frame is given up `playout_delay_ms` after its expected time, taken as
    the arrival of the first packet of any later frame: the sender's pace varies (live encoding
    on a loaded machine runs behind 25 fps), so a fixed 25 fps clock would drop whole streams.
    A given-up frame comes out of the decoder as a hold when the next structure packet arrives.
    """

    def __init__(self, control: RTCDataChannel, structure: RTCDataChannel, playout_delay_ms: float = 40.0,
                 out_of_sync_frames: int = 8, request_interval_ms: float = 500.0,
                 intra_request_interval_ms: float = 100.0,
                 on_frame: Callable[[DecodedFrame], None] | None = None) -> None:
        self.control, self.structure = control, structure
        self.playout_delay = playout_delay_ms / 1000.0
        self.out_of_sync_frames = out_of_sync_frames
        self.request_interval = request_interval_ms / 1000.0
        self.intra_request_interval = intra_request_interval_ms / 1000.0
        self._last_intra_request = -1e9
        self._structure_seen: set[int] = set()  # frames whose structure arrived (drops redundant copies)
        self.on_frame = on_frame
        self.header: Header | None = None
        self.decoder: SessionDecoder | None = None
        self.frames: list[DecodedFrame] = []
        self.stats = ReceiverStats()
        self.ended = asyncio.Event()
        self._pending: dict[int, list[Packet]] = {}
        self._later_seen_at: dict[int, float] = {}  # frame -> when a packet of a later frame first arrived
        self._next = 0  # next frame to play out
        self._highest = -1  # highest unwrapped frame index seen
        self._concealed_run = 0
        self._keys_seen = 0
        self._last_request = -1e9
        self._timer: asyncio.TimerHandle | None = None
        # Decoding (warp synthesis, AV1 key frames) runs in one worker thread, in packet order, so
        # the event loop keeps servicing SCTP (SACKs, retransmissions) meanwhile.
        self._queue: deque[Packet] = deque()
        self._pump_task: asyncio.Future | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="call-decoder")
        self.ready_at: dict[int, float] = {}  # frame index -> time.monotonic() it came out of the decoder
        control.on("message", lambda m: self._on_message(CONTROL, m))
        structure.on("message", lambda m: self._on_message(STRUCTURE, m))

    # -- input

    def _on_message(self, channel: str, msg: bytes | str) -> None:
        try:
            self._handle(channel, msg)
        except Exception:  # a bug or hostile input must cost one message, not the call
            self.stats.dropped_messages += 1
            log.exception("message on %s dropped", channel)

    def _handle(self, channel: str, msg: bytes | str) -> None:
        n = _payload_len(msg)
        self.stats.messages[channel] += 1
        self.stats.bytes[channel] += n
        if n > MAX_MESSAGE:
            self.stats.dropped_messages += 1
            log.warning("oversized message on %s (%d bytes) dropped", channel, n)
            return
        if isinstance(msg, str):  # the sender has nothing to say in text
            self.stats.dropped_messages += 1
            log.warning("unexpected text message on %s dropped", channel)
            return
        if self.header is None:
            if channel == CONTROL:
                self._on_header(msg)
                return
            # Structure can overtake the header on its own channel: parse now, decode once it is here.
        try:
            packets = unpack_message(msg)
        except BitstreamError as exc:
            self.stats.dropped_messages += 1
            log.warning("malformed message on %s dropped: %s", channel, exc)
            return
        now = time.monotonic()
        for p in packets:
            self._add(p, now)
        self._release()

    def _on_header(self, msg: bytes) -> None:
        try:
            header, _ = parse_header(msg)
            decoder = SessionDecoder(header)
        except Exception as exc:  # BitstreamError, VersionMismatch: without a header nothing decodes
            self.stats.dropped_messages += 1
            log.warning("stream header rejected: %s", exc)
            return
        self.header, self.decoder = header, decoder
        self._release()  # structure that overtook the header

    def _add(self, p: Packet, now: float) -> None:
        p.frame = unwrap_frame(p.frame, max(self._highest, self._next - 1, 0))
        if p.type == PacketType.STRUCTURE:
            if p.frame in self._structure_seen:
                self.stats.redundant_packets += 1
                return
            self._structure_seen.add(p.frame)
            if len(self._structure_seen) > 512:
                self._structure_seen = {f for f in self._structure_seen if f >= self._next - 64}
        if p.frame < self._next:
            if p.type in (PacketType.TEXTURE, PacketType.END) and self.decoder is not None:
                self._enqueue(p)  # a colour update still applies to the frames after it
            else:
                self.stats.late_packets += 1
                log.info("packet %s of frame %d arrived after its playout; dropped", p.type.name, p.frame)
            return
        if p.frame > self._highest:
            for f in range(max(self._highest, self._next), p.frame):
                self._later_seen_at.setdefault(f, now)
            self._highest = p.frame
        self._pending.setdefault(p.frame, []).append(p)

    # -- playout

    def _frame_ready(self, f: int) -> bool:
        return any(p.type in (PacketType.STRUCTURE, PacketType.END) for p in self._pending.get(f, []))

    def _release(self) -> None:
        if self.decoder is None:
            return
        now = time.monotonic()
        while self._next <= self._highest:
            f = self._next
            if self._frame_ready(f):
                # Encoder order (key, structure, texture) whichever channel each came on.
                for p in sorted(self._pending.pop(f), key=lambda p: _ORDER[p.type]):
                    self._enqueue(p)
            else:
                seen = self._later_seen_at.get(f)
                if seen is None or now - seen < self.playout_delay:
                    self._arm_timer(seen)
                    return
                leftovers = self._pending.pop(f, [])  # key/texture without structure: too late to be useful
                self.stats.late_packets += len(leftovers)
                self.stats.skipped_frames += 1
            self._later_seen_at.pop(f, None)
            self._next = f + 1

    def _arm_timer(self, seen: float | None) -> None:
        if seen is None or self._timer is not None:
            return
        delay = max(0.0, seen + self.playout_delay - time.monotonic()) + 0.002

        def fire() -> None:
            self._timer = None
            self._on_timer()

        self._timer = asyncio.get_running_loop().call_later(delay, fire)

    def _on_timer(self) -> None:
        try:
            self._release()
        except Exception:
            log.exception("playout failed")

    def _enqueue(self, p: Packet) -> None:
        self._queue.append(p)
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while self._queue:
            p = self._queue.popleft()
            try:
                await self._decode(p)
            except Exception:  # a decoder bug must cost a frame, not the call
                log.exception("decoding packet %s of frame %d failed", p.type.name, p.frame)

    async def _decode(self, p: Packet) -> None:
        assert self.decoder is not None
        if p.type == PacketType.END:
            self._conceal_until(p.frame)
            self.ended.set()
            return
        if p.type == PacketType.KEYFRAME:
            self._keys_seen += 1
        frames = await asyncio.get_running_loop().run_in_executor(self._executor, self.decoder.decode, p)
        for f in frames:
            self._show(f)
        self._check_sync()

    def _conceal_until(self, end: int) -> None:
        """Frames lost at the very end have no later structure packet to make the decoder hold them."""
        last = self.frames[-1] if self.frames else None
        start = last.index + 1 if last is not None else 0
        for i in range(start, end):
            if last is None:
                break  # nothing to hold
            self._show(DecodedFrame(i, last.image, last.landmarks, concealed=True))

    def _show(self, f: DecodedFrame) -> None:
        now = time.monotonic()
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = now
        self.stats.last_frame_at = now
        self.ready_at[f.index] = now
        self._concealed_run = self._concealed_run + 1 if f.concealed else 0
        self.frames.append(f)
        if self.on_frame is not None:
            self.on_frame(f)

    # -- feedback

    def _check_sync(self) -> None:
        assert self.decoder is not None
        if self.decoder.needs_keyframe:
            self.request_keyframe("decoder lost its reference")
        elif self._keys_seen == 0 and self._concealed_run > 0:
            # Frames are arriving but the first key frame never did (or its frame was given up).
            self.request_keyframe("no key frame received")
        elif self._concealed_run > self.out_of_sync_frames:
            self.request_keyframe(f"out of sync: {self._concealed_run} frames without a decoded frame")
        elif not self.decoder.synced and self._keys_seen > 0 and self._concealed_run > 0:
            # Lost structure broke the prediction chain, the reference image is fine: an intra
            # structure packet (tens of bytes) resyncs, a key frame (kilobytes) is not needed.
            self.request_intra()

    def request_intra(self) -> bool:
        now = time.monotonic()
        if now - self._last_intra_request < self.intra_request_interval or self.structure.readyState != "open":
            return False
        self._last_intra_request = now
        self.structure.send(json.dumps({"type": "intra_request"}))  # unreliable: repeated until resynced
        self.stats.intra_requests += 1
        log.info("intra structure requested")
        return True

    def request_keyframe(self, reason: str) -> bool:
        now = time.monotonic()
        if now - self._last_request < self.request_interval or self.structure.readyState != "open":
            return False  # rate limit: the key frame already asked for is probably in flight
        self._last_request = now
        # Unreliable and unordered, like intra requests: repeated while the decoder stays out of sync.
        self.structure.send(json.dumps({"type": "keyframe_request", "reason": reason}))
        self.stats.keyframe_requests += 1
        log.info("key frame requested: %s", reason)
        return True

    async def finish(self) -> None:
        """Play out whatever is left (end of call): missing frames are skipped, not waited for;
        returns once the decoder has worked through everything released."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for f in list(self._later_seen_at):
            self._later_seen_at[f] = -1e9
        self._release()
        while self._pump_task is not None and not self._pump_task.done():
            await self._pump_task
        self._executor.shutdown(wait=False)


_ORDER = {PacketType.KEYFRAME: 0, PacketType.STRUCTURE: 1, PacketType.TEXTURE: 2, PacketType.END: 3}


async def send_frames(sender: CallSender, frames, fps: float = 25.0, pace: bool = True,
                      drop_late: bool = True) -> FrameSlot | None:
    """Play `frames` as a live camera at `fps` into the encoder, then send the end packet.

    With `drop_late` frames the encoder is still busy with are dropped at capture (newest wins),
    as a camera would; without it every frame is encoded and a late one goes at once (tests that
    compare frame for frame). Returns the capture slot (its drop count) when dropping.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    if not drop_late:
        for i, img in enumerate(frames):
            if pace:
                await asyncio.sleep(max(0.0, t0 + i / fps - loop.time()))
            await sender.encode_and_send(img, i)
        sender.end()
        return None
    slot = FrameSlot()
    encoding = asyncio.ensure_future(encode_loop(sender, slot))
    try:
        for i, img in enumerate(frames):
            await asyncio.sleep(max(0.0, t0 + i / fps - loop.time()))
            slot.put(i, img)
    finally:
        slot.close()
        await encoding
    sender.end()
    return slot


async def drain(channels: list[RTCDataChannel], timeout: float = 5.0) -> None:
    """Wait until what was handed to send() has left the SCTP queue (closing first would lose it)."""
    async def empty() -> None:
        while any(c.readyState == "open" and c.bufferedAmount > 0 for c in channels):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(empty(), timeout)
