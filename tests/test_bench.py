"""The rate-quality runner and report on a tiny real workload, including resume from its cache."""

from __future__ import annotations

import time
from dataclasses import replace

from streamcodec.eval.report import write
from streamcodec.eval.runner import BenchConfig, Sampling, run

from .conftest import ROOT, SINGLE_FACE


def test_bench_runs_resumes_and_reports(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / SINGLE_FACE.name).symlink_to(SINGLE_FACE)
    bc = BenchConfig(folder, max_frames=12, codecs=("libx264",), variants=("half_fps",),
                     streamcodec_budgets=(1500, 4000), sweep_stride=3, sampling=Sampling(4, 4, 12, 4),
                     store=tmp_path / "points")
    rows = run(bc, progress=False)
    codecs = {r["codec"] for r in rows}
    assert codecs == {"streamcodec", "freeze", "libx264"}
    for r in rows:
        assert r["kbps"] > 0 and 0 <= r["lpips_alex"] < 1 and r["psnr"] > 10
    sc = sorted((r for r in rows if r["codec"] == "streamcodec"), key=lambda r: r["param"])
    assert sc[0]["bytes"] < sc[1]["bytes"]  # a larger key-frame budget costs more
    for s in sc:
        freeze = next(r for r in rows if r["codec"] == "freeze" and r["param"] == s["param"])
        assert freeze["bytes"] < s["bytes"]  # the anchor pays only its key frame
    t0 = time.perf_counter()
    again = run(bc, progress=False, workers=2)
    assert again == rows and time.perf_counter() - t0 < 10  # every point came from the cache, in workers
    # Other session settings are other points: the decoder's background option changes the scores, not the
    # stream; the classical points stay cached.
    still = tmp_path / "still.yaml"
    still.write_text((ROOT / "configs" / "default.yaml").read_text().replace("background: synth", "background: key"))
    cached = len(list(bc.store.iterdir()))
    rows2 = run(replace(bc, session=still), progress=False)
    assert len(list(bc.store.iterdir())) == cached + 4  # two streamcodec and two freeze points
    sc2 = sorted((r for r in rows2 if r["codec"] == "streamcodec"), key=lambda r: r["param"])
    assert [r["bytes"] for r in sc2] == [r["bytes"] for r in sc]
    assert any(a["psnr"] != b["psnr"] for a, b in zip(sc, sc2))
    assert [r for r in rows2 if r["codec"] == "libx264"] == [r for r in rows if r["codec"] == "libx264"]
    report = write(rows, tmp_path / "out", ["- test run"])
    text = report.read_text()
    assert "BD-rate" in text and "libx264" in text and "freeze" in text
    assert (tmp_path / "out" / "rd_curves.png").stat().st_size > 10_000
