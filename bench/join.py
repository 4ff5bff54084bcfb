"""Join latency (issue #8 §5): "signaling join -> first decoded remote frame".

    python -m bench.join [--scale 1.0]          # prints the JSON report
    python -m bench join

In one run, on loopback, against one `onedoor serve` (bench/server_process.py):

- **aiortc through onedoor**: a staff publisher (bench/sigclient.py, the pre-encoded
  VP8 + Opus clip of bench/media_clip.py) already sends in a mediation room; 20 x scale (min 5)
  times, a fresh aiortc client (another staff member, joining straight into the room) opens
  the WebSocket, `join`s, offers its own clip tracks (as the web client does), answers the
  server's renegotiation offer and decodes the first remote video frame (only that one; then
  it leaves). Clock: from opening the WebSocket (`join_ws_*`) and from sending `join`.
- **bare baseline**, interleaved with the above: two aiortc peers negotiating directly in this
  process (offer/answer handed over in memory, no server): createOffer -> first decoded frame
  of the publisher's clip.
- **Chromium** (only as root with /usr/bin/chromium and playwright): re-run inside a
  loopback-only network namespace created for it (`ip netns exec ... python -m bench.join
  --browser-inner`), with its own `onedoor serve` and publisher: each time a fresh browser
  context signs in as staff, then loads /rooms/<room>; the page's RTCPeerConnection
  `connected` (from an init script) is read as milliseconds since the navigation started.

Checks: `join_p50_over_bare` <= 1.2 and `browser_connected_p50_s` <= 0.7.
Joins are 1.5 s apart: the SFU asks the publisher for a keyframe at most once a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.mediastreams import MediaStreamTrack

from bench.common import check, percentile, plot_path, smoke
from bench.sigclient import MediaParticipant, SigClient, Staff

ROOT = Path(__file__).resolve().parent.parent
JOINERS = [f"window{i:02d}" for i in range(1, 8)] + [f"handler{i:02d}" for i in range(1, 13)]
JOIN_GAP_S = 1.5
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "join_p50_over_bare",
    "join_p95_s",
    "browser_connected_p50_s",
)
TIMEOUT = (600.0, 900.0)  # overall bound in s: fixed + per unit of scale
FRAME_TIMEOUT_S = 15.0
CHROMIUM = "/usr/bin/chromium"
PLOT = ROOT / "docs" / "img" / "join_latency.png"

log = logging.getLogger("bench.join")


def _samples(values: list[float]) -> list[float]:
    return [round(1000 * v, 1) for v in values]


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(1000 * percentile(values, 50), 1) if values else None,
        "p95_ms": round(1000 * percentile(values, 95), 1) if values else None,
        "min_ms": round(1000 * min(values), 1) if values else None,
        "max_ms": round(1000 * max(values), 1) if values else None,
    }


class FirstFrame:
    """Decodes the first remote video frame of a peer connection, then stops reading."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.at: float | None = None
        self.done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        pc.on("track", self._on_track)

        self.first_rtp: float | None = None
        self.first_keyframe_rtp: float | None = None
        self.connected: float | None = None
        self._pc = pc

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected" and self.connected is None:
                self.connected = time.perf_counter()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            return
        self._tasks.append(asyncio.create_task(self._first(track)))
        receiver = next(t.receiver for t in self._pc.getTransceivers() if t.receiver.track is track)
        original = receiver._handle_rtp_packet

        async def handle_rtp(packet: Any, arrival_time_ms: int) -> None:
            # timing marks only: first video RTP, first packet starting a VP8 keyframe
            now = time.perf_counter()
            if self.first_rtp is None:
                self.first_rtp = now
            if self.first_keyframe_rtp is None:
                with contextlib.suppress(Exception):
                    desc, data = VpxPayloadDescriptor.parse(packet.payload)
                    if desc.partition_start and desc.partition_id == 0 and data[0] & 1 == 0:
                        self.first_keyframe_rtp = now
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]

    async def _first(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            await track.recv()  # a decoded av.VideoFrame
            if self.at is None:
                self.at = time.perf_counter()
                self.done.set()

    async def wait(self, timeout_s: float = FRAME_TIMEOUT_S) -> float:
        async with asyncio.timeout(timeout_s):
            await self.done.wait()
        assert self.at is not None
        return self.at

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _add_clip(pc: RTCPeerConnection, clip: Any) -> None:
    from bench.media_clip import ClipTrack
    from media import adapter

    for track in (ClipTrack.video(clip), ClipTrack.audio(clip)):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        adapter.on_keyframe_request(transceiver.sender, track.request_keyframe)


bare_phases: list[dict[str, float]] = []


async def bare_once(clip: Any) -> float:
    """Two aiortc peers, offer/answer in memory: createOffer -> first decoded frame."""
    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    first = FirstFrame(sub)
    try:
        _add_clip(pub, clip)
        started = time.perf_counter()
        await pub.setLocalDescription(await pub.createOffer())
        await sub.setRemoteDescription(pub.localDescription)
        await sub.setLocalDescription(await sub.createAnswer())
        await pub.setRemoteDescription(sub.localDescription)
        frame_at = await first.wait()
        bare_phases.append(
            {
                "connected_s": (first.connected or frame_at) - started,
                "first_video_rtp_s": (first.first_rtp or frame_at) - started,
                "first_frame_s": frame_at - started,
            }
        )
        return frame_at - started
    finally:
        await first.close()
        await pub.close()
        await sub.close()


async def sfu_join_once(
    http: aiohttp.ClientSession, base_url: str, cookie: str, room_id: str, clip: Any, name: str
) -> dict[str, float]:
    """A staff aiortc client joins the room through signaling and decodes one frame."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    first = FirstFrame(pc)
    sig = SigClient(http, base_url, cookie=cookie, name=name)
    lock = asyncio.Lock()
    marks: dict[str, float] = {}

    async def on_offer(sdp: str) -> None:
        async with lock:
            marks.setdefault("server_offer", time.perf_counter())
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await sig.request("answer", sdp=pc.localDescription.sdp)

    sig.on_offer = on_offer
    try:
        started = time.perf_counter()
        await sig.connect()
        marks["hello"] = time.perf_counter()
        await sig.join(room_id)
        marks["welcome"] = time.perf_counter()
        async with lock:
            _add_clip(pc, clip)
            await pc.setLocalDescription(await pc.createOffer())
            marks["offer_ready"] = time.perf_counter()
            reply = await sig.request("offer", sdp=pc.localDescription.sdp)
            marks["answer"] = time.perf_counter()
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        frame_at = await first.wait()
        ice_at = marks.get("server_offer", frame_at)
        answer_at = marks["answer"]
        return {
            "answer_to_connected_s": (first.connected or frame_at) - answer_at,
            "answer_to_first_video_rtp_s": (first.first_rtp or frame_at) - answer_at,
            "answer_to_first_keyframe_rtp_s": (first.first_keyframe_rtp or frame_at) - answer_at,
            "first_keyframe_rtp_to_frame_s": frame_at - (first.first_keyframe_rtp or frame_at),
            "from_ws_s": frame_at - started,
            "from_join_s": frame_at - marks["hello"],
            "ws_hello_s": marks["hello"] - started,
            "join_welcome_s": marks["welcome"] - marks["hello"],
            "offer_create_s": marks["offer_ready"] - marks["welcome"],
            "offer_answer_s": marks["answer"] - marks["offer_ready"],
            "answer_to_server_offer_s": ice_at - marks["answer"],
            "server_offer_to_frame_s": frame_at - ice_at,
        }
    finally:
        await sig.leave()
        await first.close()
        await pc.close()
        await sig.close()


async def measure_aiortc(scale: float) -> dict[str, Any]:
    from bench import loadclient
    from bench.media_clip import make_clip
    from bench.server_process import start_server

    n = 2 if smoke(scale) else max(5, round(20 * scale))
    gap_s = 0.2 if smoke(scale) else JOIN_GAP_S
    loadclient.prepare_process(["127.0.0.1"])
    clip = make_clip()
    tmp = Path(tempfile.mkdtemp(prefix="onedoor-join-"))
    server = start_server(tmp, ONEDOOR_LOG_LEVEL="WARNING")
    bare: list[float] = []
    joins: list[dict[str, float]] = []
    failures: list[str] = []
    try:
        host_cookie, host_csrf = await asyncio.to_thread(server.sign_in, "mediator01")
        cookies = [
            (await asyncio.to_thread(server.sign_in, name))[0] for name in JOINERS[: min(n, 6)]
        ]
        async with aiohttp.ClientSession() as http:
            staff = Staff(http, server.base_url, host_cookie, host_csrf)
            session = await staff.create_session(title="join bench", capacity=8)
            publisher = MediaParticipant(SigClient(http, server.base_url, cookie=host_cookie))
            await publisher.sig.connect()
            await publisher.sig.join(session["room_id"])
            await publisher.publish(clip)
            await bare_once(clip)  # warm-up (imports, codec set-up), not counted
            try:
                for i in range(n):
                    bare.append(await bare_once(clip))
                    await asyncio.sleep(gap_s)
                    try:
                        joins.append(
                            await sfu_join_once(
                                http,
                                server.base_url,
                                cookies[i % len(cookies)],
                                session["room_id"],
                                clip,
                                f"joiner{i}",
                            )
                        )
                    except Exception as e:
                        failures.append(f"join {i}: {type(e).__name__}: {e}")
                    await asyncio.sleep(gap_s)
            finally:
                await publisher.close()
    finally:
        server.stop()
    parts = {
        key: round(1000 * percentile([j[key] for j in joins], 50), 1)
        for key in (joins[0] if joins else {})
    }
    bare_parts = {
        key: round(1000 * percentile([b[key] for b in bare_phases[-len(bare) :]], 50), 1)
        for key in (bare_phases[0] if bare_phases else {})
    }
    return {
        "joins": n,
        "bare_first_frame": _stats(bare),
        "bare_phases_p50_ms": bare_parts,
        "join_ws_first_frame": _stats([j["from_ws_s"] for j in joins]),
        "join_msg_first_frame": _stats([j["from_join_s"] for j in joins]),
        "join_phases_p50_ms": parts,
        "samples_ms": {
            "bare": _samples(bare),
            "join_ws": _samples([j["from_ws_s"] for j in joins]),
        },
        "failures": failures,
        "server_log": str(server.log_path),
    }


# ------------------------------------------------------------------------------ Chromium

CONNECTED_JS = """
(() => {
  window.__od = {};
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig {
    constructor(...args) {
      super(...args);
      if (window.__od.created === undefined) window.__od.created = performance.now();
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected' && window.__od.connected === undefined)
          window.__od.connected = performance.now();
      });
    }
  };
})();
"""
FRAMES_JS = """async () => {
  const pc = window.onedoorRoom && window.onedoorRoom.media && window.onedoorRoom.media.pc;
  if (!pc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0; });
  return frames;
}"""


async def measure_browser(scale: float) -> dict[str, Any]:
    """Inside a loopback-only namespace: Chromium pages join a room with an aiortc publisher."""
    from playwright.async_api import async_playwright

    from bench import loadclient
    from bench.media_clip import make_clip
    from bench.server_process import start_server
    from tests.e2e.conftest import CHROMIUM_ARGS
    from tests.e2e.webclient import sign_in

    n = 1 if smoke(scale) else max(3, round(10 * scale))
    gap_s = 0.2 if smoke(scale) else JOIN_GAP_S
    loadclient.prepare_process(["127.0.0.1"])
    clip = make_clip()
    tmp = Path(tempfile.mkdtemp(prefix="onedoor-join-browser-"))
    server = start_server(tmp, ONEDOOR_LOG_LEVEL="WARNING")
    connected: list[float] = []
    created: list[float] = []
    first_frame: list[float] = []
    failures: list[str] = []
    try:
        host_cookie, host_csrf = await asyncio.to_thread(server.sign_in, "mediator01")
        async with aiohttp.ClientSession() as http, async_playwright() as pw:
            staff = Staff(http, server.base_url, host_cookie, host_csrf)
            # Closed pages stay in the room for the grace period (30 s): room for the publisher,
            # the warm-up page and every measured page.
            session = await staff.create_session(title="join bench", capacity=n + 2)
            publisher = MediaParticipant(SigClient(http, server.base_url, cookie=host_cookie))
            await publisher.sig.connect()
            await publisher.sig.join(session["room_id"])
            await publisher.publish(clip)
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                for i in range(n + 1):  # the first one warms Chromium up, not counted
                    ctx = await browser.new_context(viewport={"width": 1000, "height": 700})
                    try:
                        page = await ctx.new_page()
                        await sign_in(page, server.base_url, JOINERS[i % len(JOINERS)])
                        await page.add_init_script(CONNECTED_JS)
                        await page.goto(f"{server.base_url}/rooms/{session['room_id']}")
                        deadline = time.monotonic() + FRAME_TIMEOUT_S
                        marks: dict[str, Any] = {}
                        frame_ms = None
                        while time.monotonic() < deadline:
                            marks = await page.evaluate("window.__od || {}")
                            if (
                                "connected" in marks
                                and frame_ms is None
                                and await page.evaluate(FRAMES_JS) > 0
                            ):
                                frame_ms = await page.evaluate("performance.now()")
                            if "connected" in marks and frame_ms is not None:
                                break
                            await asyncio.sleep(0.02)
                        if "connected" not in marks:
                            raise TimeoutError(f"not connected: {marks}")
                        if i:
                            connected.append(marks["connected"] / 1000)
                            created.append(marks.get("created", 0.0) / 1000)
                            if frame_ms is not None:
                                first_frame.append(frame_ms / 1000)
                    except Exception as e:
                        failures.append(f"browser {i}: {type(e).__name__}: {e}")
                    finally:
                        await ctx.close()
                    await asyncio.sleep(gap_s)
            finally:
                await browser.close()
                await publisher.close()
    finally:
        server.stop()
    return {
        "joins": n,
        "page_load_to_connected": _stats(connected),
        "page_load_to_peer_connection_created": _stats(created),
        "page_load_to_first_frame_polled": _stats(first_frame),
        "no_frame_within_s": {
            "timeout_s": FRAME_TIMEOUT_S,
            "pages": len(connected) - len(first_frame),
        },
        "samples_ms": {"connected": _samples(connected), "first_frame": _samples(first_frame)},
        "failures": failures,
    }


def browser_available() -> str | None:
    """None when the browser part can run, else why not."""
    if os.geteuid() != 0:
        return "needs root (a network namespace)"
    if not Path(CHROMIUM).exists() or shutil.which("ip") is None:
        return f"needs {CHROMIUM} and iproute2"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "needs playwright"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


async def browser_in_namespace(scale: float) -> dict[str, Any]:
    name = f"onedoor-join-{os.getpid()}"
    if (await asyncio.to_thread(_ip, "netns", "add", name)).returncode != 0:
        raise RuntimeError(f"ip netns add {name} failed")
    fd, out_name = tempfile.mkstemp(prefix="join-browser-", suffix=".json")
    os.close(fd)
    try:
        await asyncio.to_thread(_ip, "-n", name, "link", "set", "lo", "up")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", name, sys.executable, "-m", "bench.join",
            "--browser-inner", "--scale", str(scale), "--out", out_name,
            cwd=str(ROOT), env=env,
        )  # fmt: skip
        try:
            async with asyncio.timeout(120 + 60 * scale):
                rc = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        text = await asyncio.to_thread(Path(out_name).read_text)
        if rc != 0 or not text:
            raise RuntimeError(f"browser part exited with {rc}")
        result: dict[str, Any] = json.loads(text)
        return result
    finally:
        os.unlink(out_name)
        pids = await asyncio.to_thread(_ip, "netns", "pids", name)
        for pid in pids.stdout.split():  # only what this benchmark started in its namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        await asyncio.to_thread(_ip, "netns", "del", name)


async def run(scale: float = 1.0) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "load": {"loadavg_start": os.getloadavg()}}
    result["aiortc"] = await measure_aiortc(scale)
    a = result["aiortc"]
    checks = []
    if a["bare_first_frame"]["n"] and a["join_ws_first_frame"]["n"]:
        ratio = a["join_ws_first_frame"]["p50_ms"] / a["bare_first_frame"]["p50_ms"]
        result["join_p50_over_bare"] = round(ratio, 3)
        checks.append(check("join_p50_over_bare", ratio, "<= 1.2", "x"))
        checks.append(check("join_p95_s", a["join_ws_first_frame"]["p95_ms"] / 1000, "<= 10", "s"))
    why_not = browser_available()
    if why_not is None:
        try:
            result["browser"] = await browser_in_namespace(scale)
            p50 = result["browser"]["page_load_to_connected"]["p50_ms"]
            if p50 is not None:
                result["browser_connected_p50_s"] = round(p50 / 1000, 3)
                checks.append(check("browser_connected_p50_s", p50 / 1000, "<= 0.7", "s"))
        except Exception as e:
            result["browser"] = {"error": f"{type(e).__name__}: {e}"}
        if "browser_connected_p50_s" not in result:  # say why in the check itself
            why = result["browser"].get("error") or f"no page connected: {result['browser']}"
            checks.append(
                {"name": "browser_connected_p50_s", "value": None, "goal": "<= 0.7", "unit": "s"}
                | {"pass": False, "error": str(why)[:2000]}
            )
    else:
        result["browser"] = {"skipped": why_not}
        checks.append(
            {"name": "browser_connected_p50_s", "value": None, "goal": "<= 0.7", "unit": "s"}
            | {"pass": False, "skipped": why_not}
        )
    result["load"]["loadavg_end"] = os.getloadavg()
    result["checks"] = checks
    with contextlib.suppress(ImportError):  # matplotlib comes with the bench extra
        result["plot"] = str(plot(result, plot_path(PLOT)))
    return result


def plot(result: dict[str, Any], path: Path = PLOT) -> Path:
    """Each join as a dot, per kind: bare aiortc pair, aiortc through onedoor, Chromium."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[tuple[str, list[float]]] = [
        ("bare aiortc pair\n(createOffer -> frame)", result["aiortc"]["samples_ms"]["bare"]),
        ("aiortc via onedoor\n(WebSocket -> frame)", result["aiortc"]["samples_ms"]["join_ws"]),
    ]
    browser = result.get("browser", {}).get("samples_ms")
    if browser:
        rows.append(("Chromium via onedoor\n(page load -> connected)", browser["connected"]))
        rows.append(("Chromium via onedoor\n(page load -> frame, polled)", browser["first_frame"]))
    fig, ax = plt.subplots(figsize=(7.2, 3.6), dpi=110)
    for y, (_, values) in enumerate(rows):
        if not values:
            continue
        jitter = [y + 0.12 * ((i * 7919) % 11 - 5) / 5 for i in range(len(values))]
        ax.scatter(values, jitter, s=14, alpha=0.7)
        p50 = percentile(values, 50)
        ax.plot([p50, p50], [y - 0.3, y + 0.3], "k-", lw=1.5)
        ax.annotate(f"p50 {p50:.0f} ms", (p50, y + 0.32), fontsize=7, ha="center")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    ax.set_xlabel("milliseconds")
    ax.set_xlim(left=0)
    ratio = result.get("join_p50_over_bare")
    title = "join latency, each join a dot"
    if ratio is not None:
        title += f" (aiortc via onedoor / bare p50: {ratio:.2f}x)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--browser-inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.browser_inner:
        Path(args.out).write_text(json.dumps(asyncio.run(measure_browser(args.scale))))
        return
    print(json.dumps(asyncio.run(run(args.scale)), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
