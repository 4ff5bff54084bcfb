"""Browser ↔ SFU media probe (development aid, not a test).

Starts `onedoor serve` (DEBUG logging for media/aiortc), opens N Chromium pages in one mediation
room (host + N-1 joiners by link, admitted from the lobby), waits, then prints each page's
RTP stats and the server log lines about media. Run inside a loopback-only namespace:

    tests/e2e/run-in-netns.sh .venv/bin/python -m bench.browser_probe 2
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.network import join_room
from bench.server_process import start_server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

STATS_JS = """async () => {
  const ui = window.onedoorRoom; const pc = ui && ui.media && ui.media.pc;
  if (!pc) return 'no pc';
  const out = {state: pc.connectionState, sig: pc.signalingState, rtp: []};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') out.rtp.push([s.type, s.kind, s.mid, s.ssrc, s.packetsReceived ?? s.packetsSent, s.framesDecoded ?? s.framesEncoded, s.codecId, s.pliCount, s.nackCount, s.keyFramesDecoded ?? s.keyFramesEncoded]);
  });
  out.tr = pc.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection, t.receiver.track.kind, t.receiver.track.id]);
  return out;
}"""


def watch(page: Any, lines: list[str]) -> None:
    """Keep a page's console messages and uncaught errors in `lines`."""
    page.on("console", lambda m: lines.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"pageerror: {e}"))


async def main(n: int, wait_s: float) -> None:
    from playwright.async_api import async_playwright

    tmp = Path(tempfile.mkdtemp(prefix="probe-"))
    server = start_server(tmp, ONEDOOR_LOG_LEVEL="DEBUG")
    logs: dict[str, list[str]] = {}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            pages = []
            for i in range(n):
                ctx = await browser.new_context(viewport={"width": 1000, "height": 700})
                p = await ctx.new_page()
                await p.add_init_script("window.ONEDOOR_DEBUG = true")
                name = f"p{i}"
                logs[name] = []
                watch(p, logs[name])
                pages.append(p)
            host = pages[0]
            guests = [(f"guest{i}", p) for i, p in enumerate(pages[1:], 1)]
            await join_room(host, guests, server.base_url)
            await asyncio.sleep(wait_s)
            for i, p in enumerate(pages):
                print(f"--- p{i}", json.dumps(await p.evaluate(STATS_JS)))
            for i, p in enumerate(pages):
                await p.screenshot(path=str(tmp / f"p{i}.png"))
            await browser.close()
    finally:
        server.process.terminate()
        server.process.wait(10)
        for name, lines in logs.items():
            for line in lines:
                if "sig" not in line or "offer" in line or "answer" in line:
                    print(f"[{name}] {line[:300]}")
        print("server log:", tmp / "server.log")


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 2,
            float(sys.argv[2]) if len(sys.argv) > 2 else 6,
        )
    )
