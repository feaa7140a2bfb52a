"""Command-line call demo: a streamcodec sender and receiver over WebRTC data channels."""
