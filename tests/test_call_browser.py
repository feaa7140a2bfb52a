"""The browser page end to end: headless Chromium (Debian's), a fake camera fed from a bench clip,
the page's camera -> server encode -> data-channel hop -> decode -> video track back to the page."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium") if os.path.exists(p)), None)
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _thumb(img: np.ndarray) -> np.ndarray:
    g = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float64)
    return (g - g.mean()) / (g.std() + 1e-6)


def test_browser_page_end_to_end(tmp_path, talking_frames, cfg):
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is missing (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from streamcodec.io import write_video

    y4m = tmp_path / "camera.y4m"
    write_video(y4m, talking_frames[:50], fps=cfg.fps)  # Chromium loops it as the camera
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "rtc_demo", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "serving" in server.stdout.readline()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=FLAGS + [f"--use-file-for-fake-video-capture={y4m}"])
            page = browser.new_page(viewport={"width": 700, "height": 520})
            page.goto(f"http://127.0.0.1:{port}/?autostart")
            # Reconstructed frames arrive: the server counts them and the page's remote video plays.
            try:
                page.wait_for_function("() => window.streamcodec.stats && window.streamcodec.stats.frames_shown >= 20 "
                                       "&& document.getElementById('remote').videoWidth > 0", timeout=90_000)
            except Exception as exc:
                state = page.evaluate("() => [window.streamcodec.state, window.streamcodec.error, "
                                      "window.streamcodec.stats, document.getElementById('remote').videoWidth]")
                raise AssertionError(f"no reconstructed frames reached the page: {state}") from exc
            page.wait_for_timeout(1500)
            stats = page.evaluate("() => window.streamcodec.stats")
            boxes = page.evaluate("() => ['local', 'remote'].map(id => { const r = document.getElementById(id)"
                                  ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot))
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    crops = [img[int(y) + 2:int(y + h) - 2, int(x) + 2:int(x + w) - 2] for x, y, w, h in boxes]
    for name, c in zip(("camera", "reconstruction"), crops):
        assert c.size and c.std() > 20, f"the {name} video shows no picture (std {c.std():.1f})"
    # Both show the same talking head (the reconstruction lags by a few frames).
    corr = float((_thumb(crops[0]) * _thumb(crops[1])).mean())
    assert corr > 0.5, f"the reconstruction does not look like the camera (correlation {corr:.2f})"
    assert stats["payload_kbps"] > 0 and stats["wire_kbps"] > stats["payload_kbps"]
    assert stats["latency_ms"] is not None and stats["fps"] > 0
