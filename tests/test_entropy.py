"""The adaptive arithmetic coder, its models, and the layers coded with it (structure, texture)."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcodec.entropy import AdaptiveModel, ArithmeticDecoder, ArithmeticEncoder, EntropyError, SignedCoder
from streamcodec.structure.basis import ShapeBasis
from streamcodec.structure.coder import POSE_DIMS, StructureCoder, StructureConfig

FUZZ = settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def code_symbols(counts, symbols, increment=24) -> bytes:
    m, enc = AdaptiveModel(counts, increment), ArithmeticEncoder()
    for s in symbols:
        m.encode(enc, s)
    return enc.finish()


def decode_symbols(counts, data, n, increment=24) -> list[int]:
    m, dec = AdaptiveModel(counts, increment), ArithmeticDecoder(data)
    return [m.decode(dec) for _ in range(n)]


def code_signed(values, radius=8, counts=None, increment=24) -> bytes:
    c, enc = SignedCoder(radius, counts, increment), ArithmeticEncoder()
    for v in values:
        c.encode(enc, v)
    return enc.finish()


def decode_signed(data, n, radius=8, counts=None, increment=24) -> list[int]:
    c, dec = SignedCoder(radius, counts, increment), ArithmeticDecoder(data)
    return [c.decode(dec) for _ in range(n)]


# ---------------------------------------------------------------- AdaptiveModel


@pytest.mark.parametrize("symbols", [
    [], [0], [4], [3] * 5000, [0] * 3000 + [1], list(range(5)) * 200,
])
def test_model_round_trip_edge_cases(symbols):
    counts = [1, 2, 3, 4, 5]
    data = code_symbols(counts, symbols)
    assert data  # even an empty message flushes the final two bits
    assert decode_symbols(counts, data, len(symbols)) == symbols


def test_long_run_of_the_most_probable_symbol_is_nearly_free():
    counts = [1, 1000, 1]
    data = code_symbols(counts, [1] * 20000)
    assert len(data) < 40
    assert decode_symbols(counts, data, 20000) == [1] * 20000


@pytest.mark.parametrize("tail", [1, 2, 3, 5, 8])
def test_payloads_ending_in_many_zero_bits(tail):
    """Improbable low symbols at the end emit long runs of zeros, of which finish() strips at most 16."""
    counts = [1, 60000]
    symbols = [1] * 7 + [0] * tail
    data = code_symbols(counts, symbols, increment=1)
    assert decode_symbols(counts, data, len(symbols), increment=1) == symbols
    # the same with escapes of magnitude 1 (raw bits 0...) at the end of a SignedCoder payload
    values = [3, -2, 0] + [9] * tail
    assert decode_signed(code_signed(values), len(values)) == values


def test_random_models_round_trip():
    rng = random.Random(3)
    for _ in range(40):
        n = rng.randrange(1, 40)
        counts = [rng.randrange(1, 3000) for _ in range(n)]
        inc = rng.choice([1, 8, 24, 200])
        symbols = [rng.randrange(n) for _ in range(rng.randrange(0, 400))]
        assert decode_symbols(counts, code_symbols(counts, symbols, inc), len(symbols), inc) == symbols


def test_model_halves_below_max_total():
    from streamcodec.entropy.arith import MAX_TOTAL

    m = AdaptiveModel([40000, 40000, 1])
    assert m.total < MAX_TOTAL
    enc = ArithmeticEncoder()
    for _ in range(5000):
        m.encode(enc, 2)
        assert m.total < MAX_TOTAL and min(m.freq) >= 1
    with pytest.raises(ValueError):
        AdaptiveModel([1, 0])


# ---------------------------------------------------------------- SignedCoder


def test_signed_round_trip_with_escapes():
    rng = random.Random(11)
    values = []
    for _ in range(3000):
        u = rng.random()
        if u < 0.7:
            values.append(rng.randint(-8, 8))
        elif u < 0.9:
            values.append(rng.choice([-1, 1]) * rng.randint(9, 300))
        else:
            values.append(rng.choice([-1, 1]) * (8 + rng.randint(1, (1 << 24) - 1)))
    values += [8 + (1 << 24) - 1, -(8 + (1 << 24) - 1), 9, -9, 0]
    assert decode_signed(code_signed(values), len(values)) == values


def test_signed_limits():
    with pytest.raises(ValueError):
        code_signed([8 + (1 << 24)])
    with pytest.raises(ValueError):
        SignedCoder(4, [1, 2, 3])


def test_signed_round_trip_priors_and_reset():
    r = 6
    counts = [max(1, int(200 * 0.55 ** abs(v))) for v in range(-r, r + 1)] + [2]
    c, enc = SignedCoder(r, counts), ArithmeticEncoder()
    first = [0, 1, -1, 40, 0]
    for v in first:
        c.encode(enc, v)
    c.reset()
    assert c.model.freq == counts
    assert decode_signed(enc.finish(), len(first), r, counts) == first


def test_laplacian_size_close_to_empirical_entropy():
    rng = np.random.default_rng(0)
    values = np.round(rng.laplace(0.0, 2.0, 8000)).astype(int).tolist()
    assert max(abs(v) for v in values) > 8  # some escapes
    data = code_signed(values)
    n = len(values)
    h_bits = -sum(c * math.log2(c / n) for c in Counter(values).values())
    bits = len(data) * 8
    assert bits <= 1.05 * h_bits + 8 * 8, (bits, h_bits)
    assert bits >= 0.95 * h_bits, (bits, h_bits)
    assert decode_signed(data, n) == values


@FUZZ
@given(st.lists(st.integers(-40, 40) | st.integers(-(1 << 24) - 7, (1 << 24) + 7), max_size=200),
       st.integers(1, 12), st.integers(1, 64))
def test_fuzz_signed_round_trip(values, radius, inc):
    values = [v for v in values if abs(v) - radius < (1 << 24)]
    assert decode_signed(code_signed(values, radius, None, inc), len(values), radius, None, inc) == values


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 300), st.integers(0, 12))
def test_fuzz_signed_decode_garbage(data, n, radius):
    try:
        out = decode_signed(data, n, radius)
    except EntropyError:
        return
    assert len(out) == n and all(abs(v) < (1 << 24) + radius for v in out)


def test_decoder_stops_reading_far_past_the_end():
    """Raw (p = 1/2) symbols cost a bit each, so asking for too many runs out of payload."""
    enc = ArithmeticEncoder()
    for b in [1, 0, 1, 1] * 10:
        enc.encode(b, b + 1, 2)
    data = enc.finish()
    dec = ArithmeticDecoder(data)
    got = []
    for _ in range(40):
        b = dec.target(2)
        dec.consume(b, b + 1, 2)
        got.append(b)
    assert got == [1, 0, 1, 1] * 10
    with pytest.raises(EntropyError, match="past the end"):
        for _ in range(200):
            b = dec.target(2)
            dec.consume(b, b + 1, 2)


# ---------------------------------------------------------------- StructureCoder


def small_basis(seed: int = 0, points: int = 30, k: int = 10) -> ShapeBasis:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(points, 3))
    mean -= mean.mean(0)
    mean /= np.sqrt((mean ** 2).sum(1).mean())
    q, _ = np.linalg.qr(rng.normal(size=(points * 3, k)))
    return ShapeBasis(backend="test", mean=mean, components=q.T.copy(), stddev=np.linspace(1.0, 0.2, k))


CFG = StructureConfig(num_coeffs=8)


def param_track(n: int, seed: int = 1) -> np.ndarray:
    """Pose + coefficients drifting like a talking head, with still stretches and sudden jumps."""
    rng = np.random.default_rng(seed)
    dims = POSE_DIMS + CFG.num_coeffs
    p = np.zeros(dims)
    p[3], p[4:6] = np.log(90.0), (128.0, 120.0)
    scale = np.array([0.01, 0.01, 0.01, 0.005, 0.6, 0.6] + [0.12] * CFG.num_coeffs)
    out = []
    for i in range(n):
        if i % 37 < 5:
            pass  # still
        elif i % 53 == 0:
            p = p + rng.normal(size=dims) * scale * 40  # a jump: escapes
        else:
            p = p + rng.normal(size=dims) * scale
        out.append(p.copy())
    return np.array(out)


def encode_track(track, intra_every):
    enc = StructureCoder(small_basis(), CFG, 256)
    coded = []
    for i, params in enumerate(track):
        q = enc.quantise(params)
        intra = i % intra_every == 0
        coded.append((enc.encode(q, intra), intra, q))
    return coded


def test_structure_round_trip_many_packets():
    coded = encode_track(param_track(400), intra_every=25)
    dec = StructureCoder(small_basis(), CFG, 256)
    for i, (payload, intra, q) in enumerate(coded):
        got = dec.decode(payload, intra)
        assert got.dtype == np.int64 and np.array_equal(got, q), i
    assert any(len(p) <= 1 for p, intra, _ in coded if not intra)  # still frames cost about a bit
    landmarks = dec.landmarks(coded[-1][2])
    assert landmarks.shape == (30, 2) and np.isfinite(landmarks).all()


def test_structure_models_persist_across_packets():
    """Inter packets depend on the model state left by the packets before them."""
    coded = encode_track(param_track(60, seed=4), intra_every=1000)
    fresh = StructureCoder(small_basis(), CFG, 256)
    fresh.decode(coded[0][0], True)
    fresh.prev = coded[29][2].copy()  # right prediction, but models that missed packets 1..29
    try:
        got = [fresh.decode(p, intra) for p, intra, _ in coded[30:]]
    except EntropyError:
        return
    assert any(not np.array_equal(g, q) for g, (_, _, q) in zip(got, coded[30:]))


def test_inter_without_intra_is_an_error():
    coded = encode_track(param_track(3), intra_every=100)
    with pytest.raises(EntropyError):
        StructureCoder(small_basis(), CFG, 256).decode(coded[1][0], False)


@pytest.mark.parametrize("lost", [26, 31, 47])
def test_lost_packet_recovers_at_next_intra(lost):
    period = 25
    coded = encode_track(param_track(130, seed=lost), intra_every=period)
    assert not np.array_equal(coded[lost][2], coded[lost - 1][2])  # the lost packet moved the face
    dec = StructureCoder(small_basis(), CFG, 256)
    nxt = (lost // period + 1) * period
    wrong = 0
    for i, (payload, intra, q) in enumerate(coded):
        if i == lost:
            continue
        try:
            got = dec.decode(payload, intra)
        except EntropyError:
            assert lost < i < nxt
            wrong += 1
            continue
        if i < lost or i >= nxt:
            assert np.array_equal(got, q), i
        else:
            wrong += not np.array_equal(got, q)
    assert wrong > 0


@FUZZ
@given(st.binary(max_size=64), st.booleans(), st.integers(0, 2))
def test_fuzz_structure_decode_garbage(data, intra, warm):
    dec = StructureCoder(small_basis(), CFG, 256)
    for payload, was_intra, _ in _WARMUP[:warm]:
        dec.decode(payload, was_intra)
    try:
        q = dec.decode(data, intra)
    except EntropyError:
        return
    assert q.shape == (POSE_DIMS + CFG.num_coeffs,) and q.dtype == np.int64


_WARMUP = encode_track(param_track(2), intra_every=100)


# ---------------------------------------------------------------- ColourStatsCodec


def test_colour_stats_round_trip():
    from streamcodec.texture import REGIONS, ColourStatsCodec

    codec = ColourStatsCodec()
    rng = np.random.default_rng(2)
    for trial in range(20):
        q = {r: rng.integers(-60, 61, 3) * (trial % 3 != 0) + rng.integers(-3, 4, 3)
             for r in REGIONS if rng.random() < 0.7}
        got = codec.decode(codec.encode(q))
        assert got.keys() == q.keys() and all(np.array_equal(got[r], q[r]) for r in q)
    assert codec.decode(codec.encode({})) == {}


@FUZZ
@given(st.binary(max_size=120))
def test_fuzz_colour_stats_decode_garbage(data):
    from streamcodec.texture import REGIONS, ColourStatsCodec

    try:
        out = ColourStatsCodec().decode(data)
    except EntropyError:
        return
    assert set(out) <= set(REGIONS) and all(v.shape == (3,) for v in out.values())
