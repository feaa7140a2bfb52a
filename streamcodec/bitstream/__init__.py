"""The .scv container: a versioned header and typed, CRC-protected packets (docs/bitstream.md)."""

from .format import (
    MAGIC, VERSION, BitstreamError, Corruption, Header, Packet, PacketType, VersionMismatch,
    FLAG_INTRA, FLAG_NOFACE, FLAG_TIMESTAMP, MAX_PAYLOAD,
    encode_header, encode_packet, parse_header, parse_packet, read_stream,
)

__all__ = [
    "MAGIC", "VERSION", "BitstreamError", "Corruption", "Header", "Packet", "PacketType", "VersionMismatch",
    "FLAG_INTRA", "FLAG_NOFACE", "FLAG_TIMESTAMP", "MAX_PAYLOAD",
    "encode_header", "encode_packet", "parse_header", "parse_packet", "read_stream",
]
