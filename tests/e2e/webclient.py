"""Helpers for the web client's browser journeys: sign-in, decoded-frame polling (from the
test: wait_for_function does not await promises) and the green-pixel check of remote video."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_PASSWORD

FRAMES_JS = """async () => {
  const ui = window.onedoorRoom;
  if (!ui || !ui.media || !ui.media.pc) return {frames: 0, state: 'none', tracks: 0};
  const stats = await ui.media.pc.getStats();
  let frames = 0; let tracks = 0;
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') { frames += s.framesDecoded || 0; tracks += 1; } });
  return {frames, tracks, state: ui.media.pc.connectionState};
}"""

PER_TRACK_JS = """async () => {
  const ui = window.onedoorRoom;
  if (!ui || !ui.media || !ui.media.pc) return {state: 'none', video: [], audio: []};
  const stats = await ui.media.pc.getStats();
  const video = []; const audio = [];
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') video.push([s.trackIdentifier, s.framesDecoded || 0]);
    else audio.push([s.trackIdentifier, s.packetsReceived || 0]);
  });
  return {state: ui.media.pc.connectionState, video, audio};
}"""

DIAG_JS = """async () => {
  const pc = window.onedoorRoom && window.onedoorRoom.media && window.onedoorRoom.media.pc;
  if (!pc) return 'no pc';
  const tr = pc.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection, t.receiver.track.kind, t.receiver.track.muted, t.receiver.track.id]);
  const st = []; (await pc.getStats()).forEach((s) => { if (s.type.includes('rtp')) st.push([s.type, s.kind, s.packetsReceived ?? s.packetsSent]); });
  return JSON.stringify({tr, st, tiles: document.querySelectorAll('#room .tile').length});
}"""

PIXEL_JS = """(sel) => {
  const out = [];
  for (const v of document.querySelectorAll(sel)) {
    if (!v.videoWidth) { out.push(null); continue; }
    const c = document.createElement('canvas'); c.width = 64; c.height = 48;
    const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 48);
    const d = g.getImageData(0, 0, 64, 48).data;
    let r = 0, gg = 0, b = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) { r += d[i]; gg += d[i + 1]; b += d[i + 2]; n++; }
    out.push([r / n, gg / n, b / n]);
  }
  return out;
}"""

REMOTE_VIDEOS = "#room .grid .tile:not(.self):not(.screen) video"


async def sign_in(page: Any, base_url: str, username: str) -> None:
    await page.goto(base_url + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("h1", timeout=10_000)


async def wait_frames(
    page: Any, *, minimum: int = 10, tracks: int = 1, timeout_s: float = 25
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await page.evaluate(FRAMES_JS)
        if last["frames"] >= minimum and last["tracks"] >= tracks:
            return last
        await asyncio.sleep(0.3)
    diag = await page.evaluate(DIAG_JS)
    raise AssertionError(f"remote video not decoded in time: {last} {diag}")


async def wait_each_decoding(
    page: Any, *, publishers: int, minimum: int = 10, timeout_s: float = 25
) -> dict[str, Any]:
    """Every one of `publishers` remote video tracks has decoded `minimum` frames, and as many
    remote audio tracks receive packets (getStats polled from the test, bounded)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await page.evaluate(PER_TRACK_JS)
        videos = [n for _, n in last["video"] if n >= minimum]
        audios = [n for _, n in last["audio"] if n >= 10]
        if len(videos) >= publishers and len(audios) >= publishers:
            return last
        await asyncio.sleep(0.3)
    diag = await page.evaluate(DIAG_JS)
    raise AssertionError(f"not every remote track decoded in time: {last} {diag}")


async def remote_colours(page: Any, *, expect: int = 1, timeout_s: float = 15) -> list[list[float]]:
    deadline = time.monotonic() + timeout_s
    colours: list[Any] = []
    while time.monotonic() < deadline:
        colours = await page.evaluate(PIXEL_JS, REMOTE_VIDEOS)
        good = [c for c in colours if c is not None and is_fake_camera_green(c)]
        if len(good) >= expect:
            return good
        await asyncio.sleep(0.3)
    raise AssertionError(f"remote tiles are not showing the fake camera: {colours}")


def is_fake_camera_green(rgb: list[float]) -> bool:
    r, g, b = rgb
    return g > 80 and g > r + 40 and g > b + 40


def db_rows(data_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    files = [p for p in data_dir.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]
    assert files, f"no SQLite database under {data_dir}"
    con = sqlite3.connect(files[0])
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


async def watch(page: Any, name: str) -> list[str]:
    """Collect the page's console messages and errors (printed by pytest on failure)."""
    log: list[str] = []
    if os.environ.get("ONEDOOR_E2E_DEBUG"):
        await page.add_init_script("window.ONEDOOR_DEBUG = true")
    page.on("console", lambda m: log.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"[{name}] pageerror: {e}"))
    page.on("close", lambda _p: print("\n".join(log)))
    return log
