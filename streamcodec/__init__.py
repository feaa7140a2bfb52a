"""streamcodec: structure-texture layered generative coding for face video."""

__version__ = "0.1.0"


class StreamcodecError(Exception):
    """Base class of the errors a user can cause (bad input, bad files)."""
