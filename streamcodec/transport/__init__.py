"""Call transport: streamcodec packets over WebRTC data channels (aiortc)."""

from .channels import (CONTROL, MAX_MESSAGE, STRUCTURE, WIRE_OVERHEAD_PER_MESSAGE, CallReceiver, CallSender,
                       ChannelStats, ReceiverStats, open_channels, pack_packets, transport_bytes, unpack_message,
                       wait_open, send_frames, drain)
from .peer import (allow_loopback_candidates, connect_in_process, create_pc, post_offer, serve_offers,
                   wait_connected)

__all__ = [
    "CONTROL", "MAX_MESSAGE", "STRUCTURE", "WIRE_OVERHEAD_PER_MESSAGE", "CallReceiver", "CallSender",
    "ChannelStats", "ReceiverStats", "open_channels", "pack_packets", "transport_bytes", "unpack_message",
    "wait_open", "send_frames", "drain", "allow_loopback_candidates", "connect_in_process", "create_pc", "post_offer", "serve_offers",
    "wait_connected",
]
