"""python -m rtc_demo send|receive: a one-way call over aiortc data channels, HTTP signalling."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
import time

os.environ.setdefault("GLOG_minloglevel", "2")

from streamcodec.config import load_config  # noqa: E402
from streamcodec.transport import (CONTROL, STRUCTURE, CallReceiver, CallSender, add_impairment_arguments,  # noqa: E402
                                   allow_loopback_candidates, create_pc, drain, impair_pc, impairment_from_args,
                                   open_channels, post_offer, send_frames, serve_offers, transport_bytes,
                                   wait_connected, wait_open)

log = logging.getLogger("rtc_demo")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _print_wire(label: str, wire: dict[str, int] | None) -> None:
    if wire is None:
        print(f"{label}: DTLS transport counters unavailable")
    else:
        print(f"{label}: DTLS sent {wire['bytes_sent']} B in {wire['packets_sent']} packets, received "
              f"{wire['bytes_received']} B in {wire['packets_received']} (wire incl. IP+UDP: "
              f"{wire['wire_bytes_sent']} B out, {wire['wire_bytes_received']} B in)")


async def send(args: argparse.Namespace) -> int:
    from streamcodec.files import input_frames
    from streamcodec.session import SessionEncoder

    cfg = load_config()
    frames = list(input_frames(args.file, cfg, args.max_frames))  # prepared up front: pacing stays honest
    if not frames:
        print("no frames in the input", file=sys.stderr)
        return 1
    if _is_loopback(args.host):
        allow_loopback_candidates()
    pc = create_pc()
    control, structure = open_channels(pc)
    sender = CallSender(control, structure, SessionEncoder(cfg.for_live()),
                        frames_per_message=args.frames_per_message, redundancy=args.redundancy)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        await pc.setRemoteDescription(await post_offer(args.host, args.port, pc.localDescription))
        await wait_connected(pc, 15)
        await wait_open(control)
        await wait_open(structure)
        sock = impair_pc(pc, impairment_from_args(args))
        sender.send_header(sender.encoder.header())
        t0 = time.monotonic()
        slot = await asyncio.wait_for(send_frames(sender, frames, cfg.fps, drop_late=not args.every_frame),
                                      30 + len(frames))
        secs = time.monotonic() - t0
        await drain([control, structure])
        await asyncio.sleep(0.3)  # let the last SACKs and a late key-frame request come in
        wire = transport_bytes(pc)
    finally:
        await pc.close()
    st = sender.stats
    encoded = sender.encoder.stats.frames
    print(f"sent {len(frames)} frames in {secs:.1f} s: {encoded} encoded ({encoded / secs:.1f} fps), "
          f"{slot.dropped if slot else 0} dropped at capture; key frames {sender.encoder.stats.keyframes}; "
          f"key-frame requests received {len(sender.keyframe_requests)} "
          f"({sender.keyframe_requests_ignored} answered by a key frame just sent), "
          f"intra requests {sender.intra_requests}")
    for name in (CONTROL, STRUCTURE):
        s = st[name]
        per = s.bytes_sent / s.messages_sent if s.messages_sent else 0.0
        print(f"  {name}: {s.messages_sent} messages, {s.bytes_sent} payload B ({per:.1f} B/message) sent; "
              f"{s.messages_received} messages, {s.bytes_received} B received; "
              f"estimated wire {s.wire_estimate_sent()} B (payload + 93 B/message)")
    dur = len(frames) / cfg.fps
    payload = sum(s.bytes_sent for s in st.values())
    print(f"  payload {payload * 8 / dur / 1000:.2f} kbps over {dur:.1f} s of video")
    _print_wire("  measured", wire)
    _print_socket("  socket", sock, dur)
    return 0


def _print_socket(label: str, sock, secs: float) -> None:
    print(f"{label}: {sock.packets_sent} datagrams out ({sock.wire_bytes_sent * 8 / secs / 1000:.2f} kbps wire), "
          f"{sock.packets_received} in ({sock.wire_bytes_received * 8 / secs / 1000:.2f} kbps wire); "
          f"impairment dropped {sock.dropped_loss} (loss) + {sock.dropped_queue} (queue)")


async def receive(args: argparse.Namespace) -> int:
    from streamcodec.io import write_video

    if _is_loopback(args.host):
        allow_loopback_candidates()
    done = asyncio.Event()
    state: dict = {}

    async def on_offer(offer):
        if "pc" in state:
            raise RuntimeError("this receiver takes one call")
        pc = create_pc()
        control, structure = open_channels(pc)
        state["pc"] = pc
        state["rx"] = CallReceiver(control, structure, playout_delay_ms=args.playout_delay_ms)

        @pc.on("connectionstatechange")
        def _changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                done.set()

        async def until_end() -> None:
            await state["rx"].ended.wait()
            done.set()

        state["end_task"] = asyncio.ensure_future(until_end())
        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
        state["sock"] = impair_pc(pc, impairment_from_args(args))  # candidates exist once the answer is set
        return pc.localDescription

    server = await serve_offers(args.host, args.port, on_offer)
    print(f"receiver listening on http://{args.host}:{args.port}/offer", flush=True)
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except asyncio.TimeoutError:
        print("timed out waiting for the call to end", file=sys.stderr)
    finally:
        server.close()
    rx: CallReceiver | None = state.get("rx")
    if rx is None:
        return 1
    await asyncio.sleep(0.2)  # frames still in the playout buffer's delay
    await rx.finish()
    wire = transport_bytes(state["pc"])
    await state["pc"].close()
    frames = sorted(rx.frames, key=lambda f: f.index)
    if args.record and frames:
        write_video(args.record, [f.image for f in frames], fps=rx.header.fps if rx.header else 25.0)
    _print_receiver_stats(rx, frames)
    _print_wire("  measured", wire)
    _print_socket("  socket", state["sock"], max(len(frames), 1) / (rx.header.fps if rx.header else 25.0))
    return 0 if frames else 1


def _print_receiver_stats(rx: CallReceiver, frames) -> None:
    fps = rx.header.fps if rx.header else 25.0
    shown = sum(not f.concealed for f in frames)
    sent = frames[-1].index + 1 if frames else 0
    run = longest = 0
    for f in frames:
        run = run + 1 if f.concealed else 0
        longest = max(longest, run)
    s = rx.stats
    payload = sum(s.bytes.values())
    dur = max(len(frames), 1) / fps
    print(f"received {len(frames)} frames of {sent} sent ({shown} decoded, {len(frames) - shown} concealed); "
          f"longest freeze {longest} frames ({longest / fps * 1000:.0f} ms)")
    print(f"  payload {payload * 8 / dur / 1000:.2f} kbps; messages {s.messages}; bytes {s.bytes}; "
          f"dropped messages {s.dropped_messages}; late packets {s.late_packets}; "
          f"skipped frames {s.skipped_frames}; key-frame requests sent {s.keyframe_requests}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtc_demo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send", help="encode a clip live and send it")
    s.add_argument("--file", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--frames-per-message", type=int, default=1)
    s.add_argument("--redundancy", type=int, default=2,
                   help="structure messages repeat the packets of the previous N messages (0..4)")
    s.add_argument("--max-frames", type=int, default=None)
    s.add_argument("--every-frame", action="store_true",
                   help="encode every frame of the file even when the encoder falls behind real time "
                        "(default: drop at capture, newest wins, as a camera would)")
    r = sub.add_parser("receive", help="serve POST /offer, decode, record")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8765)
    r.add_argument("--record", default=None, help="output video (.mp4, .mkv, ...)")
    r.add_argument("--playout-delay-ms", type=float, default=40.0)
    r.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    v = sub.add_parser("serve", help="web page: your camera next to its streamcodec reconstruction")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8080)
    for p in (s, r, v):
        p.add_argument("-v", "--verbose", action="store_true")
        add_impairment_arguments(p)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "serve":
        from .serve import serve

        return asyncio.run(serve(args))
    return asyncio.run(send(args) if args.cmd == "send" else receive(args))


if __name__ == "__main__":
    sys.exit(main())
