"""Peer-connection set-up: aiortc without STUN, in-process pairing for tests, HTTP signalling for the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

log = logging.getLogger(__name__)

MAX_SIGNAL_BYTES = 64 * 1024  # an SDP is a few kB


def allow_loopback_candidates() -> None:
    """Make aioice offer 127.0.0.1 as a host candidate.

    aioice leaves 127.0.0.1 out of its host addresses, so in a loopback-only network (a test
    namespace, a machine without interfaces) no candidate is gathered and ICE never connects.
    Process-wide and idempotent; other addresses are gathered as before.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "_with_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addrs = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addrs:
            addrs.append("127.0.0.1")
        return addrs

    with_loopback._with_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback


def create_pc() -> RTCPeerConnection:
    # aiortc's default configuration names a public STUN server: unreachable here, and a call
    # on one host or LAN needs only host candidates.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connect_in_process(offerer: RTCPeerConnection, answerer: RTCPeerConnection, timeout: float = 10.0) -> None:
    """Offer/answer handed over directly (no signalling server). Data channels must exist already."""
    async def exchange() -> None:
        await offerer.setLocalDescription(await offerer.createOffer())  # gathers candidates first
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)

    await asyncio.wait_for(exchange(), timeout)


async def wait_connected(pc: RTCPeerConnection, timeout: float = 10.0) -> None:
    done = asyncio.get_running_loop().create_future()

    def check() -> None:
        if done.done():
            return
        if pc.connectionState == "connected":
            done.set_result(None)
        elif pc.connectionState in ("failed", "closed"):
            done.set_exception(ConnectionError(f"peer connection {pc.connectionState}"))

    pc.on("connectionstatechange", check)
    check()
    await asyncio.wait_for(done, timeout)


# ---------------------------------------------------------------- HTTP signalling (stdlib asyncio)
# aiohttp is not an aiortc 1.16 dependency; one POST with a JSON body does not need it.

def _sdp_json(desc: RTCSessionDescription) -> bytes:
    return json.dumps({"sdp": desc.sdp, "type": desc.type}).encode()


def _sdp_parse(body: bytes) -> RTCSessionDescription:
    d = json.loads(body)
    if not isinstance(d, dict) or not isinstance(d.get("sdp"), str) or d.get("type") not in ("offer", "answer"):
        raise ValueError("not a session description")
    return RTCSessionDescription(sdp=d["sdp"], type=d["type"])


async def _read_http(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """First line and body of one HTTP/1.1 message with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_SIGNAL_BYTES:
        raise ValueError("headers too long")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    if not 0 <= length <= MAX_SIGNAL_BYTES:
        raise ValueError(f"body of {length} bytes")
    return lines[0], await reader.readexactly(length)


def _http_response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


AnswerFn = Callable[[RTCSessionDescription], Awaitable[RTCSessionDescription]]


async def serve_offers(host: str, port: int, on_offer: AnswerFn) -> asyncio.Server:
    """POST /offer with {"sdp", "type": "offer"} -> 200 with the answer."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line, body = await asyncio.wait_for(_read_http(reader), 10)
            method, path, *_ = line.split(" ")
            if method != "POST" or path != "/offer":
                writer.write(_http_response("404 Not Found", b'{"error": "POST /offer"}'))
            else:
                answer = await asyncio.wait_for(on_offer(_sdp_parse(body)), 15)
                writer.write(_http_response("200 OK", _sdp_json(answer)))
        except Exception as exc:  # a bad request must not take the receiver down
            log.warning("signalling request failed: %s", exc)
            writer.write(_http_response("400 Bad Request", json.dumps({"error": str(exc)}).encode()))
        finally:
            try:
                await writer.drain()
                writer.close()
            except ConnectionError:
                pass

    return await asyncio.start_server(handle, host, port)


async def post_offer(host: str, port: int, offer: RTCSessionDescription, timeout: float = 15.0) -> RTCSessionDescription:
    async def go() -> RTCSessionDescription:
        reader, writer = await asyncio.open_connection(host, port)
        body = _sdp_json(offer)
        writer.write((f"POST /offer HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        await writer.drain()
        line, resp = await _read_http(reader)
        writer.close()
        if " 200 " not in line + " ":
            raise ConnectionError(f"signalling failed: {line} {resp[:200]!r}")
        return _sdp_parse(resp)

    return await asyncio.wait_for(go(), timeout)
