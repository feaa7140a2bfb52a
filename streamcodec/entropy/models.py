"""Adaptive frequency models and a signed-integer coder with escape."""

from __future__ import annotations

from typing import Sequence

from .arith import MAX_TOTAL, ArithmeticDecoder, ArithmeticEncoder, EntropyError


class AdaptiveModel:
    """Frequency counts over symbols 0..n-1, incremented after each use.

    Start counts come from training statistics so the model codes well from the
    first frame of a stream; adaptation then follows the speaker.
    """

    def __init__(self, counts: Sequence[int], increment: int = 24) -> None:
        if not counts or min(counts) < 1:
            raise ValueError("every symbol needs a positive start count")
        self._init = [int(c) for c in counts]
        self.increment = increment
        self.reset()

    def reset(self) -> None:
        self.freq = list(self._init)
        self.total = sum(self.freq)
        while self.total >= MAX_TOTAL:
            self._halve()

    def _halve(self) -> None:
        self.freq = [max(1, f >> 1) for f in self.freq]
        self.total = sum(self.freq)

    def _update(self, s: int) -> None:
        self.freq[s] += self.increment
        self.total += self.increment
        if self.total >= MAX_TOTAL:
            self._halve()

    def encode(self, enc: ArithmeticEncoder, s: int) -> None:
        lo = sum(self.freq[:s])
        enc.encode(lo, lo + self.freq[s], self.total)
        self._update(s)

    def decode(self, dec: ArithmeticDecoder) -> int:
        t = dec.target(self.total)
        lo = 0
        for s, f in enumerate(self.freq):
            if t < lo + f:
                dec.consume(lo, lo + f, self.total)
                self._update(s)
                return s
            lo += f
        raise EntropyError("symbol outside the model")  # unreachable when target() is in range


def _encode_raw(enc: ArithmeticEncoder, value: int, nbits: int) -> None:
    for i in reversed(range(nbits)):
        b = (value >> i) & 1
        enc.encode(b, b + 1, 2)


def _decode_raw(dec: ArithmeticDecoder, nbits: int) -> int:
    v = 0
    for _ in range(nbits):
        b = dec.target(2)
        dec.consume(b, b + 1, 2)
        v = (v << 1) | b
    return v


class SignedCoder:
    """Integers in [-radius, radius] through an adaptive model, others via an escape.

    Escaped values carry an Elias-gamma length and raw bits, bounded by `max_bits`
    so corrupt data cannot ask for unbounded work.
    """

    def __init__(self, radius: int, counts: Sequence[int] | None = None, increment: int = 24,
                 max_bits: int = 24) -> None:
        self.radius = radius
        self.max_bits = max_bits
        n = 2 * radius + 2  # symbols: -r..r, then escape
        self.model = AdaptiveModel(counts if counts is not None else [1] * n, increment)
        if len(self.model.freq) != n:
            raise ValueError(f"expected {n} start counts, got {len(self.model.freq)}")

    def reset(self) -> None:
        self.model.reset()

    def encode(self, enc: ArithmeticEncoder, v: int) -> None:
        r = self.radius
        if -r <= v <= r:
            self.model.encode(enc, v + r)
            return
        self.model.encode(enc, 2 * r + 1)
        mag = abs(v) - r  # >= 1
        nbits = mag.bit_length()
        if nbits > self.max_bits:
            raise ValueError(f"value {v} too large to code")
        _encode_raw(enc, nbits - 1, 5)
        _encode_raw(enc, mag - (1 << (nbits - 1)), nbits - 1)
        _encode_raw(enc, 1 if v < 0 else 0, 1)

    def decode(self, dec: ArithmeticDecoder) -> int:
        r = self.radius
        s = self.model.decode(dec)
        if s <= 2 * r:
            return s - r
        nbits = _decode_raw(dec, 5) + 1
        if nbits > self.max_bits:
            raise EntropyError("escaped value longer than allowed")
        mag = (1 << (nbits - 1)) + _decode_raw(dec, nbits - 1)
        neg = _decode_raw(dec, 1)
        return -(mag + r) if neg else mag + r
