"""Adaptive arithmetic coder (32-bit, Witten-Neal-Cleary with pending bits).

compressai's rANS coders take a fixed CDF per call; the structure layer needs a
model that adapts after every symbol and persists across frames, with ~50 bits
a frame, so a small exact arithmetic coder in Python is both simpler and
tighter. Every packet is flushed to a byte boundary so it decodes on its own.
"""

from __future__ import annotations

from .. import StreamcodecError

_BITS = 32
_TOP = (1 << _BITS) - 1
_HALF = 1 << (_BITS - 1)
_QUARTER = 1 << (_BITS - 2)
_MAX_STRIP = 16
MAX_TOTAL = 1 << 16  # model totals must stay below this so ranges never collapse


class EntropyError(StreamcodecError):
    """The coded data is inconsistent with the model (corrupt or truncated payload)."""


class ArithmeticEncoder:
    def __init__(self) -> None:
        self._low, self._high, self._pending = 0, _TOP, 0
        self._bits: list[int] = []

    def _emit(self, bit: int) -> None:
        self._bits.append(bit)
        if self._pending:
            self._bits.extend([bit ^ 1] * self._pending)
            self._pending = 0

    def encode(self, cum_low: int, cum_high: int, total: int) -> None:
        span = self._high - self._low + 1
        self._high = self._low + span * cum_high // total - 1
        self._low = self._low + span * cum_low // total
        while True:
            if self._high < _HALF:
                self._emit(0)
            elif self._low >= _HALF:
                self._emit(1)
                self._low -= _HALF
                self._high -= _HALF
            elif self._low >= _QUARTER and self._high < _HALF + _QUARTER:
                self._pending += 1
                self._low -= _QUARTER
                self._high -= _QUARTER
            else:
                break
            self._low = self._low * 2
            self._high = self._high * 2 + 1

    def finish(self) -> bytes:
        # Two bits pin a value inside [low, high]; the decoder pads with zeros.
        self._pending += 1
        self._emit(0 if self._low < _QUARTER else 1)
        bits = self._bits
        # Trailing zeros are implied by the decoder's zero padding; strip a bounded number so
        # the decoder can still tell a payload that ran out from one that merely ended in zeros.
        for _ in range(_MAX_STRIP):
            if not bits or bits[-1]:
                break
            bits.pop()
        out = bytearray((len(bits) + 7) // 8)
        for i, b in enumerate(bits):
            if b:
                out[i >> 3] |= 0x80 >> (i & 7)
        return bytes(out)


class ArithmeticDecoder:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._nbits = len(data) * 8
        self._pos = 0
        self._low, self._high = 0, _TOP
        self._value = 0
        for _ in range(_BITS):
            self._value = (self._value << 1) | self._next_bit()

    def _next_bit(self) -> int:
        p = self._pos
        self._pos += 1
        if p >= self._nbits:
            if p > self._nbits + _BITS + _MAX_STRIP + 8:
                raise EntropyError("arithmetic decoder ran past the end of its payload")
            return 0
        return (self._data[p >> 3] >> (7 - (p & 7))) & 1

    def target(self, total: int) -> int:
        span = self._high - self._low + 1
        t = ((self._value - self._low + 1) * total - 1) // span
        if not 0 <= t < total:
            raise EntropyError("arithmetic decoder state out of range")
        return t

    def consume(self, cum_low: int, cum_high: int, total: int) -> None:
        span = self._high - self._low + 1
        self._high = self._low + span * cum_high // total - 1
        self._low = self._low + span * cum_low // total
        while True:
            if self._high < _HALF:
                pass
            elif self._low >= _HALF:
                self._low -= _HALF
                self._high -= _HALF
                self._value -= _HALF
            elif self._low >= _QUARTER and self._high < _HALF + _QUARTER:
                self._low -= _QUARTER
                self._high -= _QUARTER
                self._value -= _QUARTER
            else:
                break
            self._low = self._low * 2
            self._high = self._high * 2 + 1
            self._value = (self._value << 1) | self._next_bit()
