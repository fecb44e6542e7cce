"""The dashboard: self-contained HTML with five SVG plots, escaped text, and a real render in headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import httpx2
import numpy as np
import pytest
from tests.web.conftest import CliServer

from cinematch.serving import charts
from cinematch.web import dashboard

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip


def png_pixels(path: Path) -> np.ndarray:
    """RGB pixels of an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes), without an imaging library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    assert header is not None
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    bpp = 3 if color_type == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            cur = (line + prev) & 255
        else:  # Average and Paeth depend on the byte to the left: plain Python lists are fastest here
            row, up = line.tolist(), prev.tolist()
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    row[i] = (row[i] + ((a + b) >> 1)) & 255
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.asarray(row, np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]


def test_page_is_self_contained_with_every_plot(server: CliServer) -> None:
    resp = httpx2.get(f"{server.url}/", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    html = resp.text
    assert html.count("<svg") == dashboard.N_PLOTS
    # no scripts, no external resources: every URL-bearing attribute is absent or a fragment
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "no drift reports yet" not in html  # the fixture has three
    # the second version was compared with the first on the same held-out rows: both scores are shown
    assert "ndcg@10 vs champion, same rows" in html
    assert re.search(r"<td>0\.\d{4} / 0\.\d{4}</td>", html)


def test_text_from_data_is_escaped() -> None:
    svg = charts.hbars("t", ['<script>alert("x")</script>'], [1.0])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "no data yet" in charts.grouped_bars("t", [], [])


@pytest.mark.browser
def test_dashboard_renders_in_chromium(server: CliServer, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed for browser tests (.ci/run installs it)"
    shot = tmp_path / "dashboard.png"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1400,2000", "--virtual-time-budget=5000", f"{server.url}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    pixels = png_pixels(shot)
    assert pixels.shape[:2] == (2000, 1400)
    colors = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colors) > 200, "screenshot looks blank"
    # the plots' palette is on screen: blue reference bars and orange latest/trending bars
    flat = pixels.reshape(-1, 3).astype(int)
    for rgb in ((0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18)):
        assert (np.abs(flat - rgb).sum(axis=1) < 12).sum() > 2_000, rgb
