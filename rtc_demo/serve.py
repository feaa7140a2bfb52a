"""python -m rtc_demo serve: the browser page.

The page sends its camera over WebRTC to this server. The server crops it to the session size,
encodes it with streamcodec, sends the packets through a real data-channel hop (a second pair of
RTCPeerConnections in this process, over loopback UDP, optionally impaired), decodes them on the
far side and returns the reconstruction to the page as a video track. Stats go to the page once a
second over the page's "stats" data channel; the page sends its bitrate setting back on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from argparse import Namespace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from streamcodec.config import load_config
from streamcodec.session import DecodedFrame, SessionEncoder
from streamcodec.transport import (CONTROL, STRUCTURE, CallReceiver, CallSender, FrameSlot, Impairment,
                                   allow_loopback_candidates, connect_in_process, create_pc, encode_loop,
                                   impair_pc, impairment_from_args, open_channels, wait_open)

log = logging.getLogger("rtc_demo.serve")
PAGE = Path(__file__).with_name("static")
KEYFRAME_BUDGETS = (1000, 3000, 8000)  # bytes per key frame: the page's bitrate setting


def square_crop(img: np.ndarray, size: int) -> np.ndarray:
    """A live camera is not prepared like a file: take the centred square and scale it."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = img[y:y + s, x:x + s]
    return crop if s == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


class ReconstructionTrack(VideoStreamTrack):
    """The newest reconstructed frame, sent back at the track's own 25 fps clock."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.image = np.zeros((size, size, 3), np.uint8)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class Hop:
    """Encoder -> data channels (sender peer) -> loopback UDP -> receiver peer -> decoder."""

    def __init__(self, impairment: Impairment, on_frame) -> None:
        self.cfg = load_config()
        self.impairment = impairment
        self.on_frame = on_frame
        self.slot = FrameSlot()
        self.a, self.b = create_pc(), create_pc()
        ca, sa = open_channels(self.a)
        cb, sb = open_channels(self.b)
        self.tx = CallSender(ca, sa, SessionEncoder(self.cfg.for_live()))
        self.rx = CallReceiver(cb, sb, on_frame=self._frame)
        self.channels = (ca, sa, cb, sb)
        self.latencies: list[float] = []
        self.shown = 0
        self.task: asyncio.Future | None = None

    async def start(self) -> None:
        await connect_in_process(self.a, self.b)
        for ch in self.channels:
            await wait_open(ch, 10)
        self.sock_tx, self.sock_rx = impair_pc(self.a, self.impairment), impair_pc(self.b, self.impairment)
        self.tx.send_header(self.tx.encoder.header())
        self.task = asyncio.ensure_future(encode_loop(self.tx, self.slot))

    def _frame(self, f: DecodedFrame) -> None:
        if f.concealed:
            return
        self.shown += 1
        cap = self.tx.captured.get(f.index)
        if cap is not None:
            self.latencies.append((time.monotonic() - cap[1]) * 1000)
        self.on_frame(f)

    async def close(self) -> None:
        self.slot.close()
        if self.task is not None:
            await self.task
        await self.a.close()
        await self.b.close()


class Stats:
    """Per-second rates from the hop's counters."""

    def __init__(self, hop: Hop) -> None:
        self.hop = hop
        self.t, self.prev = time.monotonic(), self._counts()

    def _counts(self) -> dict[str, float]:
        h = self.hop
        return {"payload": h.tx.stats[CONTROL].bytes_sent + h.tx.stats[STRUCTURE].bytes_sent,
                "wire_fwd": h.sock_tx.wire_bytes_sent, "wire_back": h.sock_rx.wire_bytes_sent,
                "offered": h.sock_tx.packets_offered + h.sock_rx.packets_offered,
                "dropped": h.sock_tx.dropped_loss + h.sock_tx.dropped_queue + h.sock_rx.dropped_loss
                + h.sock_rx.dropped_queue, "shown": h.shown, "captured": h.slot.captured}

    def report(self) -> dict:
        now, cur = time.monotonic(), self._counts()
        dt, d = max(now - self.t, 1e-3), {k: cur[k] - self.prev[k] for k in cur}
        self.t, self.prev = now, cur
        lat, self.hop.latencies = self.hop.latencies, []
        return {"type": "stats", "payload_kbps": d["payload"] * 8 / dt / 1000,
                "wire_kbps": d["wire_fwd"] * 8 / dt / 1000, "wire_back_kbps": d["wire_back"] * 8 / dt / 1000,
                "latency_ms": float(np.median(lat)) if lat else None, "fps": d["shown"] / dt,
                "camera_fps": d["captured"] / dt,
                "packet_loss": d["dropped"] / d["offered"] if d["offered"] else 0.0,
                "frames_shown": cur["shown"], "keyframe_budget": self.hop.tx.encoder.cfg.keyframe.max_bytes,
                "keyframes": self.hop.tx.encoder.stats.keyframes, "impairment": self.hop.impairment.describe()}


class Session:
    """One browser: its peer connection, the hop, the returned track, the stats channel."""

    def __init__(self, impairment: Impairment) -> None:
        self.pc = create_pc()
        self.hop = Hop(impairment, self._reconstructed)
        self.back = ReconstructionTrack(self.hop.cfg.size)
        self.channel = None
        self.tasks: list[asyncio.Future] = []
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _reconstructed(self, f: DecodedFrame) -> None:
        self.back.image = f.image

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            return
        self.pc.addTrack(self.back)  # onto the camera's transceiver: sendrecv
        self.tasks.append(asyncio.ensure_future(self._camera(track)))

    async def _camera(self, track: MediaStreamTrack) -> None:
        await self.hop.start()
        log.info("data-channel hop up; encoding the page's camera")
        self.tasks.append(asyncio.ensure_future(self._stats_loop()))
        size, i = self.hop.cfg.size, 0
        while True:
            try:
                frame = await track.recv()
            except Exception as exc:  # MediaStreamError: the page went away
                log.info("camera track ended after %d frames: %r", i, exc)
                return
            self.hop.slot.put(i, square_crop(frame.to_ndarray(format="rgb24"), size))
            i += 1

    def _on_channel(self, channel) -> None:
        log.info("page data channel %r", channel.label)
        self.channel = channel
        channel.on("message", self._on_message)

    def _on_message(self, msg) -> None:
        try:
            req = json.loads(msg) if isinstance(msg, str) and len(msg) < 1024 else None
            if isinstance(req, dict) and req.get("type") == "settings":
                self.hop.tx.set_keyframe_budget(int(req["keyframe_max_bytes"]))
            else:
                raise ValueError("not a settings message")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("message from the page dropped: %s", exc)

    async def _stats_loop(self) -> None:
        try:
            stats = Stats(self.hop)
            while True:
                await asyncio.sleep(1.0)
                if self.channel is not None and self.channel.readyState == "open":
                    self.channel.send(json.dumps(stats.report()))
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must show, not silently end the page's stats
            log.exception("stats loop failed")

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await self.hop.close()
        await self.pc.close()


def make_app(impairment: Impairment) -> web.Application:
    sessions: set[Session] = set()

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")

    async def offer(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            desc = RTCSessionDescription(sdp=str(body["sdp"]), type="offer")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"not an offer: {exc}"}, status=400)
        s = Session(impairment)
        sessions.add(s)
        await s.pc.setRemoteDescription(desc)
        await s.pc.setLocalDescription(await s.pc.createAnswer())
        return web.json_response({"sdp": s.pc.localDescription.sdp, "type": s.pc.localDescription.type,
                                  "budgets": KEYFRAME_BUDGETS})

    async def on_shutdown(_: web.Application) -> None:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    app.router.add_static("/static", PAGE)
    app.on_shutdown.append(on_shutdown)
    return app


async def serve(args: Namespace) -> int:
    allow_loopback_candidates()
    runner = web.AppRunner(make_app(impairment_from_args(args)))
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    print(f"serving on http://{args.host}:{args.port}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0
