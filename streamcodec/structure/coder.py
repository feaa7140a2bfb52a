"""Structure layer: landmarks -> pose + shape coefficients -> quantised, predicted, entropy-coded.

Prediction is always from the previous *decoded* frame, so encoder and decoder
stay in lockstep; intra packets code absolute values and reset the adaptive
models so a receiver that lost packets resynchronises on the next intra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..entropy import ArithmeticDecoder, ArithmeticEncoder, EntropyError, SignedCoder
from ..entropy.models import AdaptiveModel
from .basis import ShapeBasis

POSE_DIMS = 6  # rotvec (3), log scale, tx, ty


@dataclass(frozen=True)
class StructureConfig:
    """Quantiser steps at 256x256; they scale with the working size so pixel error stays put."""

    num_coeffs: int = 32
    step_rot: float = 0.006  # radians
    step_logscale: float = 0.004
    step_trans: float = 0.45  # pixels
    step_coeff: float = 0.16  # model units (RMS radius 1)
    hysteresis: float = 0.25  # extra dead band, in steps: keeps still faces still and costs nothing
    inter_radius: int = 8
    intra_radius: int = 15

    def steps(self, size: int) -> np.ndarray:
        k = 256.0 / size
        pose = [self.step_rot * k] * 3 + [self.step_logscale * k, self.step_trans, self.step_trans]
        return np.array(pose + [self.step_coeff * k] * self.num_coeffs, np.float64)

    def to_header(self) -> list[float]:
        return [self.step_rot, self.step_logscale, self.step_trans, self.step_coeff, self.hysteresis]

    @classmethod
    def from_header(cls, num_coeffs: int, values: list[float]) -> "StructureConfig":
        r, ls, t, c, h = values
        return cls(num_coeffs=num_coeffs, step_rot=r, step_logscale=ls, step_trans=t, step_coeff=c, hysteresis=h)


def params_from_fit(rotvec: np.ndarray, s: float, t2: np.ndarray, coeffs: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([rotvec, [np.log(s)], t2, coeffs[:k]])


@dataclass
class StructurePriors:
    """Start counts of the adaptive models, from training statistics."""

    inter: np.ndarray  # (dims, 2*inter_radius+2)
    intra: np.ndarray  # (dims, 2*intra_radius+2)
    intra_offset: np.ndarray  # (dims,) typical absolute index, subtracted before intra coding
    skip: np.ndarray = field(default_factory=lambda: np.array([1, 1]))

    @classmethod
    def from_basis(cls, basis: ShapeBasis) -> "StructurePriors | None":
        p = basis.priors
        if not {"inter", "intra", "intra_offset"} <= set(p):
            return None
        return cls(p["inter"], p["intra"], p["intra_offset"], p.get("skip", np.array([1, 1])))

    @classmethod
    def flat(cls, dims: int, cfg: StructureConfig, size: int) -> "StructurePriors":
        inter = np.ones((dims, 2 * cfg.inter_radius + 2), np.int64)
        inter[:, cfg.inter_radius] = 8
        offset = np.zeros(dims)
        offset[4:6] = np.round(size / 2 / cfg.steps(size)[4:6])
        return cls(inter, np.ones((dims, 2 * cfg.intra_radius + 2), np.int64), offset)


class StructureCoder:
    """One per stream end; the encoder and decoder run identical state updates."""

    def __init__(self, basis: ShapeBasis, cfg: StructureConfig, size: int,
                 priors: StructurePriors | None = None) -> None:
        if cfg.num_coeffs > basis.num_coeffs:
            raise ValueError(f"basis has {basis.num_coeffs} coefficients, config asks {cfg.num_coeffs}")
        self.basis, self.cfg, self.size = basis, cfg, size
        self.dims = POSE_DIMS + cfg.num_coeffs
        self.step = cfg.steps(size)
        priors = priors if priors is not None else StructurePriors.from_basis(basis)
        fits = (priors is not None and priors.inter.shape == (self.dims, 2 * cfg.inter_radius + 2)
                and priors.intra.shape == (self.dims, 2 * cfg.intra_radius + 2))
        pri = priors if fits else StructurePriors.flat(self.dims, cfg, size)
        self._inter = [SignedCoder(cfg.inter_radius, list(c)) for c in pri.inter]
        self._intra = [SignedCoder(cfg.intra_radius, list(c)) for c in pri.intra]
        self._skip = AdaptiveModel(list(pri.skip), increment=32)
        self._offset = pri.intra_offset.astype(np.int64)
        self.prev: np.ndarray | None = None  # last decoded quantised indices

    # -- quantisation -------------------------------------------------------
    def quantise(self, params: np.ndarray) -> np.ndarray:
        x = params / self.step
        q = np.round(x).astype(np.int64)
        if self.prev is not None:
            keep = np.abs(x - self.prev) <= 0.5 + self.cfg.hysteresis
            q = np.where(keep, self.prev, q)
        return q

    def dequantise(self, q: np.ndarray) -> np.ndarray:
        return q * self.step

    def landmarks(self, q: np.ndarray) -> np.ndarray:
        p = self.dequantise(q)
        return self.basis.render(p[:3], float(np.exp(p[3])), p[4:6], p[POSE_DIMS:])

    # -- coding -------------------------------------------------------------
    def _reset_models(self) -> None:
        for c in (*self._inter, *self._intra):
            c.reset()
        self._skip.reset()

    def encode(self, q: np.ndarray, intra: bool) -> bytes:
        enc = ArithmeticEncoder()
        if intra or self.prev is None:
            self._reset_models()
            for c, v in zip(self._intra, q - self._offset):
                c.encode(enc, int(v))
        else:
            d = q - self.prev
            still = not d.any()
            self._skip.encode(enc, int(still))
            if not still:
                for c, v in zip(self._inter, d):
                    c.encode(enc, int(v))
        self.prev = q.copy()
        return enc.finish()

    def decode(self, payload: bytes, intra: bool) -> np.ndarray:
        dec = ArithmeticDecoder(payload)
        if intra:
            self._reset_models()
            q = np.array([c.decode(dec) for c in self._intra], np.int64) + self._offset
        else:
            if self.prev is None:
                raise EntropyError("inter structure packet without a preceding intra packet")
            if self._skip.decode(dec):
                q = self.prev.copy()
            else:
                q = self.prev + np.array([c.decode(dec) for c in self._inter], np.int64)
        self.prev = q.copy()
        return q

