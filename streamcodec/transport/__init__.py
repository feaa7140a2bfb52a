"""Call transport: streamcodec packets over WebRTC data channels (aiortc)."""

from .channels import (CONTROL, MAX_MESSAGE, STRUCTURE, WIRE_OVERHEAD_PER_MESSAGE, CallReceiver, CallSender,
                       ChannelStats, FrameSlot, Outbox, ReceiverStats, drain, encode_loop, open_channels,
                       pack_packets, send_frames, transport_bytes, unpack_message, wait_open)
from .impair import (Impairment, SocketCounters, add_impairment_arguments, impair_pc, impairment_from_args)
from .peer import (allow_loopback_candidates, connect_in_process, create_pc, post_offer, serve_offers,
                   wait_connected)

__all__ = [
    "CONTROL", "MAX_MESSAGE", "STRUCTURE", "WIRE_OVERHEAD_PER_MESSAGE", "CallReceiver", "CallSender",
    "ChannelStats", "FrameSlot", "Outbox", "ReceiverStats", "drain", "encode_loop", "open_channels",
    "pack_packets", "send_frames", "transport_bytes", "unpack_message", "wait_open",
    "Impairment", "SocketCounters", "add_impairment_arguments", "impair_pc", "impairment_from_args",
    "allow_loopback_candidates", "connect_in_process", "create_pc", "post_offer", "serve_offers",
    "wait_connected",
]
