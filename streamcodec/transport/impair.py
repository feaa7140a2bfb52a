"""Network impairment on the real transport, in process: delay, jitter, random loss, a rate cap.

The kernel here has no netem, so the impairment sits where aioice hands datagrams to the UDP
socket: every ICE/STUN protocol object of a peer connection gets its `asyncio.DatagramTransport`
wrapped. Every packet that peer sends goes through it — DTLS records carrying data-channel
messages, SCTP SACKs and retransmissions, STUN consent checks — so impairing both peers impairs
both directions. No root, no namespace. The wrapper also counts the datagrams and bytes that
really reach the socket each way, which is where wire rates are measured.

Model (per sending peer, like one netem + tbf qdisc on its egress):
  loss      each datagram dropped with probability `loss` (independent, seeded);
  rate cap  a FIFO drained at `rate_kbps` (IP+UDP headers counted); a datagram that would wait
            longer than `queue_ms` is dropped (tail drop);
  delay     `delay_ms` + uniform jitter in [-jitter_ms, +jitter_ms] added after the queue; the
            order is kept (a datagram never overtakes the one before), so jitter shows as
            bunching rather than reordering.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

IP_UDP_HEADER = 28


@dataclass(frozen=True)
class Impairment:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0  # probability, 0..1
    rate_kbps: float = 0.0  # 0: no cap
    queue_ms: float = 200.0  # rate-cap queue limit
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.rate_kbps < 0 or self.queue_ms <= 0:
            raise ValueError("delay, jitter and rate must be >= 0, the queue limit > 0")
        if self.jitter_ms > self.delay_ms:
            raise ValueError("jitter must not exceed the delay (a datagram cannot arrive before it was sent)")

    @property
    def active(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss or self.rate_kbps)

    def describe(self) -> str:
        if not self.active:
            return "none"
        parts = []
        if self.delay_ms:
            parts.append(f"{self.delay_ms:g} ms delay" + (f" ±{self.jitter_ms:g}" if self.jitter_ms else ""))
        if self.loss:
            parts.append(f"{self.loss * 100:g}% loss")
        if self.rate_kbps:
            parts.append(f"{self.rate_kbps:g} kbps cap")
        return ", ".join(parts)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Impairment":
        d = dict(d or {})
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown impairment settings {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_impairment_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("network impairment (this peer's outgoing packets)")
    g.add_argument("--delay-ms", type=float, default=0.0)
    g.add_argument("--jitter-ms", type=float, default=0.0, help="uniform ± around the delay")
    g.add_argument("--loss", type=float, default=0.0, help="random loss probability, e.g. 0.05")
    g.add_argument("--rate-kbps", type=float, default=0.0, help="rate cap (0: none)")
    g.add_argument("--queue-ms", type=float, default=200.0, help="rate-cap queue limit")
    g.add_argument("--impair-seed", type=int, default=None)


def impairment_from_args(args: argparse.Namespace) -> Impairment:
    return Impairment(delay_ms=args.delay_ms, jitter_ms=args.jitter_ms, loss=args.loss, rate_kbps=args.rate_kbps,
                      queue_ms=args.queue_ms, seed=args.impair_seed)


@dataclass
class SocketCounters:
    """What really crossed this peer's UDP socket(s); wire bytes include 28 B of IPv4+UDP."""
    packets_offered: int = 0  # handed to the socket by aioice
    packets_sent: int = 0  # left the impairment and reached the socket
    bytes_sent: int = 0  # UDP payload bytes
    packets_received: int = 0
    bytes_received: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    delays_ms: list[float] = field(default_factory=list)  # per sent datagram, queue + delay + jitter

    @property
    def wire_bytes_sent(self) -> int:
        return self.bytes_sent + IP_UDP_HEADER * self.packets_sent

    @property
    def wire_bytes_received(self) -> int:
        return self.bytes_received + IP_UDP_HEADER * self.packets_received

    def snapshot(self) -> dict[str, int]:
        return {"packets_offered": self.packets_offered, "packets_sent": self.packets_sent,
                "bytes_sent": self.bytes_sent, "wire_bytes_sent": self.wire_bytes_sent,
                "packets_received": self.packets_received, "bytes_received": self.bytes_received,
                "wire_bytes_received": self.wire_bytes_received, "dropped_loss": self.dropped_loss,
                "dropped_queue": self.dropped_queue}


class ImpairedTransport:
    """Stands in for an asyncio.DatagramTransport; sendto goes through the impairment."""

    def __init__(self, inner: asyncio.DatagramTransport, imp: Impairment, counters: SocketCounters,
                 rng: random.Random) -> None:
        self._inner, self._imp, self._counters, self._rng = inner, imp, counters, rng
        self._loop = asyncio.get_event_loop()
        self._queue_free_at = 0.0  # when the rate-capped link finishes the datagrams before
        self._last_arrival = 0.0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        c, imp = self._counters, self._imp
        c.packets_offered += 1
        if not imp.active:
            self._deliver(data, addr, 0.0)
            return
        if imp.loss and self._rng.random() < imp.loss:
            c.dropped_loss += 1
            return
        now = self._loop.time()
        t = now
        if imp.rate_kbps:
            start = max(now, self._queue_free_at)
            if (start - now) * 1000.0 > imp.queue_ms:
                c.dropped_queue += 1
                return
            self._queue_free_at = start + (len(data) + IP_UDP_HEADER) * 8 / (imp.rate_kbps * 1000.0)
            t = self._queue_free_at
        t += (imp.delay_ms + (self._rng.uniform(-imp.jitter_ms, imp.jitter_ms) if imp.jitter_ms else 0.0)) / 1000.0
        t = max(t, self._last_arrival)  # FIFO: no reordering
        self._last_arrival = t
        if t <= now:
            self._deliver(data, addr, 0.0)
        else:
            self._loop.call_at(t, self._deliver, data, addr, (t - now) * 1000.0)

    def _deliver(self, data: bytes, addr: Any, delayed_ms: float) -> None:
        if self._inner.is_closing():
            return
        self._inner.sendto(data, addr)
        self._counters.packets_sent += 1
        self._counters.bytes_sent += len(data)
        if len(self._counters.delays_ms) < 100_000:
            self._counters.delays_ms.append(delayed_ms)

    def __getattr__(self, name: str) -> Any:  # close(), is_closing(), get_extra_info(), ...
        return getattr(self._inner, name)


def _ice_connection(pc: RTCPeerConnection):
    sctp = pc.sctp
    if sctp is None:
        raise ValueError("the peer connection has no data-channel transport (create channels first)")
    return sctp.transport.transport.iceGatherer._connection  # aioice.Connection (private in aiortc 1.16)


def impair_pc(pc: RTCPeerConnection, imp: Impairment) -> SocketCounters:
    """Impair and count every datagram this peer sends from now on (and count what it receives).

    Call once its candidates are gathered (after setLocalDescription); connect first to keep ICE
    checks out of the impairment and the counts.
    """
    counters = SocketCounters()
    rng = random.Random(imp.seed)
    for proto in _ice_connection(pc)._protocols:
        if isinstance(proto.transport, ImpairedTransport):
            raise RuntimeError("this peer connection is impaired already")
        proto.transport = ImpairedTransport(proto.transport, imp, counters, rng)
        original = proto.datagram_received

        def counted(data: bytes, addr: Any, _original=original) -> None:
            counters.packets_received += 1
            counters.bytes_received += len(data)
            _original(data, addr)

        proto.datagram_received = counted  # the event loop looks it up on the instance
    return counters
