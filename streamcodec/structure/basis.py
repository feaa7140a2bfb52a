"""Linear shape basis: rigid pose + PCA coefficients <-> landmarks.

x2d = s * (R @ (mean + coeffs @ components))[:2] + t, a weak-perspective model:
at a few kbps every coded number must earn its bits, and head rotation is
far cheaper to send as 3 angles than as the shape changes it causes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import StreamcodecError


class BasisError(StreamcodecError):
    """A shape basis file is missing or malformed."""


def rotvec_to_matrix(r: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * (K @ K)


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(c)
    if theta < 1e-9:
        return np.zeros(3)
    if np.pi - theta < 1e-6:
        # Near 180 degrees the antisymmetric part vanishes; faces never turn that far.
        w, v = np.linalg.eigh((R + R.T) / 2)
        return v[:, -1] * theta
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(theta))
    return v * theta


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: s, R, t minimising ||dst - (s R src + t)||."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        d[-1] = -1
    R = U @ np.diag(d) @ Vt
    var = (a ** 2).sum() / len(src)
    s = float((S * d).sum() / var)
    t = mu_d - s * R @ mu_s
    return s, R, t


@dataclass(frozen=True)
class ShapeBasis:
    backend: str
    mean: np.ndarray  # (N, 3), centred, RMS radius 1
    components: np.ndarray  # (K, N*3), orthonormal rows
    stddev: np.ndarray  # (K,)
    # Start counts for the structure coder's adaptive models, fitted with the basis
    # (keys: inter, intra, intra_offset, skip); part of the id since decoding depends on them.
    priors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return self.mean.shape[0]

    @property
    def num_coeffs(self) -> int:
        return self.components.shape[0]

    @property
    def basis_id(self) -> bytes:
        """8 bytes identifying the exact arrays; written into every bitstream header."""
        h = hashlib.sha256(self.backend.encode())
        for a in (self.mean, self.components):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        for k in sorted(self.priors):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.priors[k], np.int64).tobytes())
        return h.digest()[:8]

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, backend=np.array(self.backend), mean=self.mean.astype(np.float32),
                            components=self.components.astype(np.float32), stddev=self.stddev.astype(np.float32),
                            **{f"prior_{k}": v.astype(np.int64) for k, v in self.priors.items()})

    @classmethod
    def load(cls, path: str | Path) -> "ShapeBasis":
        try:
            with np.load(path, allow_pickle=False) as z:
                priors = {k[6:]: z[k] for k in z.files if k.startswith("prior_")}
                b = cls(str(z["backend"]), z["mean"], z["components"], z["stddev"], priors)
        except (OSError, KeyError, ValueError) as exc:
            raise BasisError(f"{path}: not a shape basis ({exc})") from None
        if b.components.shape[1] != b.mean.size:
            raise BasisError(f"{path}: components do not match the mean shape")
        return b

    def shape(self, coeffs: np.ndarray) -> np.ndarray:
        return self.mean + (coeffs @ self.components[: len(coeffs)]).reshape(-1, 3)

    def fit(self, points: np.ndarray, iters: int = 3) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Pose (rotvec, s, t2) and coefficients that best explain `points` (N, 3)."""
        c = np.zeros(self.num_coeffs)
        for _ in range(iters):
            s, R, t = similarity_fit(self.shape(c), points)
            aligned = (R.T @ (points - t).T).T / s
            c = self.components @ (aligned - self.mean).reshape(-1)
        s, R, t = similarity_fit(self.shape(c), points)
        return matrix_to_rotvec(R), s, t[:2], c

    def render(self, rotvec: np.ndarray, s: float, t2: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
        """2D landmark pixels (N, 2)."""
        X = self.shape(coeffs) @ rotvec_to_matrix(rotvec).T
        return (s * X[:, :2] + t2).astype(np.float32)


_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def default_basis_path(backend: str = "mediapipe478") -> Path:
    return _ASSETS / f"shape_basis_{backend}.npz"


def load_default_basis(backend: str = "mediapipe478") -> ShapeBasis:
    path = default_basis_path(backend)
    if not path.exists():
        raise BasisError(f"no shape basis shipped for backend {backend!r} (expected {path}); "
                         f"fit one with scripts/fit_shape_basis.py --backend {backend}")
    return ShapeBasis.load(path)
