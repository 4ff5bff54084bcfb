"""sfu-peer benchmark (issue #8): the same load against Janus VideoRoom and our passthrough SFU,
in one run, compared as server CPU per forwarded stream. Not in CI; needs root (netns) and the
Debian `janus` package.

Load: rooms of 2, 4 and 8 participants; each publishes a pre-encoded 640x480@15 VP8 (~500 kbps)
+ Opus clip and subscribes to everyone else: N·(N-1) forwarded video streams and as many audio
streams. Load clients are cheap (bench/loadclient.py: no encode, no decode).

- Janus: `janus` (VideoRoom + HTTP transport only) — per participant one publisher and one
  subscriber PeerConnection, as the VideoRoom API wants. CPU from /proc/<janus pid>.
- onedoor: `media.sfu.SfuMediaNode` in one child process (`media.workers.WorkerPoolMediaNode(
  workers=1)`), negotiated in-process through accept_offer/accept_answer (no signaling
  server); one PeerConnection per participant. CPU from /proc/<worker pid>.

Everything media runs inside a network namespace this benchmark creates, with no route out:
Janus never gathers on an interface flagged loopback, so the namespace gets an interface of its
own carrying 10.99.0.1/24 (a `dummy` device; where the kernel has no dummy driver, a veth pair
whose both ends stay in the namespace). `run()` creates the namespace, re-runs this module in
it (`ip netns exec ... python -m bench.sfu_peer --inner`) and always deletes it.

    sudo .venv/bin/python -m bench.sfu_peer [--scale 0.5]     # prints the JSON report
    sudo .venv/bin/python -m bench sfu_peer
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CpuMeter, check, plot_path, smoke

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "img" / "sfu_peer.png"
SIZES = (2, 4, 8)
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "onedoor_over_janus_cpu_per_stream",
    "janus_room8_video_forwarded",
    "onedoor_room8_video_forwarded",
)
TIMEOUT = (600.0, 600.0)  # overall bound in s: fixed + per unit of scale
ADDRESS = "10.99.0.1"
PREFIX = 24
INNER_ENV = "ONEDOOR_SFU_PEER_NS"
FLOW_TIMEOUT_S = 20.0
SETTLE_S = 1.5
RATIO_GOAL = "<= 2"

log = logging.getLogger("bench.sfu_peer")


# ====================================================================== namespace (host side)


def _ip(*args: str, check_rc: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check_rc)


class Namespace:
    """A private network namespace: lo up, plus one interface carrying ADDRESS; no route out."""

    def __init__(self, address: str = ADDRESS) -> None:
        self.name = f"onedoor-sfupeer-{os.getpid()}"
        self.address = address
        self.interface = "d0"
        self.device_kind = ""
        self.created = False

    def create(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("bench.sfu_peer needs root to create a network namespace")
        _ip("netns", "add", self.name)
        self.created = True
        atexit.register(self.delete)
        n = ("-n", self.name)
        _ip(*n, "link", "set", "lo", "up")
        if _ip(*n, "link", "add", self.interface, "type", "dummy", check_rc=False).returncode == 0:
            self.device_kind = "dummy"
        else:  # no dummy driver in this kernel: a veth pair, both ends inside the namespace
            _ip(*n, "link", "add", self.interface, "type", "veth", "peer", "name", "d1")
            _ip(*n, "link", "set", "d1", "up")
            self.device_kind = "veth (both ends in the namespace)"
        _ip(*n, "addr", "add", f"{self.address}/{PREFIX}", "dev", self.interface)
        _ip(*n, "link", "set", self.interface, "up")
        routes = _ip(*n, "route", "show").stdout
        if "default" in routes:
            raise RuntimeError(f"namespace {self.name} has a default route: {routes}")

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.name, check_rc=False).stdout
        return [int(p) for p in out.split()]

    def delete(self) -> None:
        if not self.created:
            return
        self.created = False
        # Anything still inside was started by this benchmark (the inner run, Janus, workers).
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        _ip("netns", "del", self.name, check_rc=False)


# ====================================================================== measurement (inside)


def _cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def _sum_cpu(pids: list[int]) -> tuple[float, float]:
    user = system = 0.0
    for pid in pids:
        u, s = _cpu_split(pid)
        user, system = user + u, system + s
    return user, system


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def udp_drops(pids: list[int]) -> int:
    """Datagrams the kernel dropped on these processes' UDP sockets (full receive buffer),
    from /proc/net/udp of this namespace (only the benchmark's sockets live here)."""
    inodes = set().union(*(_socket_inodes(p) for p in pids)) if pids else set()
    total = 0
    with open("/proc/net/udp") as fh:
        for line in fh.read().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                total += int(fields[-1])
    return total


async def _wait_flowing(receivers: list[Any], per_peer: int, what: str) -> float:
    from bench.loadclient import all_flowing

    started = time.monotonic()
    while not all_flowing(receivers, per_peer):
        if time.monotonic() - started > FLOW_TIMEOUT_S:
            flows = [(p.name, p.flowing("video"), p.flowing("audio")) for p in receivers]
            raise TimeoutError(
                f"{what}: not all streams flowing after {FLOW_TIMEOUT_S:g} s: {flows}"
            )
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def _steady_window(
    receivers: list[Any], senders: list[Any], server_pids: Callable[[], list[int]], window_s: float
) -> dict[str, Any]:
    from bench.loadclient import rewinds, sent, totals

    await asyncio.sleep(SETTLE_S)
    frames0, rewinds0, sent0 = totals(receivers), rewinds(senders), sent(senders)
    user0, sys0 = _sum_cpu(server_pids())
    drops0 = udp_drops(server_pids()), udp_drops([os.getpid()])
    client = CpuMeter()
    client.start()
    t0 = time.monotonic()
    await asyncio.sleep(window_s)
    elapsed = time.monotonic() - t0
    client_cpu, _ = client.stop()
    user1, sys1 = _sum_cpu(server_pids())
    drops1 = udp_drops(server_pids()), udp_drops([os.getpid()])
    frames1, sent1 = totals(receivers), sent(senders)
    return {
        "sent": {k: sent1[k] - sent0[k] for k in sent1},
        "udp_drops": {"server": drops1[0] - drops0[0], "clients": drops1[1] - drops0[1]},
        "elapsed": elapsed,
        "server_user_s": user1 - user0,
        "server_system_s": sys1 - sys0,
        "client_cpu_s": client_cpu,
        "frames": {k: frames1[k] - frames0[k] for k in frames1},
        "keyframe_rewinds": rewinds(senders) - rewinds0,
    }


def _forwarded(w: dict[str, Any], streams: int, elapsed: float) -> float:
    from bench.media_clip import VIDEO_FPS

    delivered = w["frames"]["video"] / (streams * VIDEO_FPS * elapsed)
    loss = _loss(w["frames"], "video") or 0.0
    return round(delivered / (1 - loss), 3) if loss < 1 else 0.0


def _of_sent(w: dict[str, Any], kind: str, size: int) -> float | None:
    copies = w["sent"][kind] * (size - 1)
    return round(w["frames"][kind] / copies, 3) if copies else None


def _loss(frames: dict[str, int], kind: str) -> float | None:
    received, lost = frames[f"{kind}_packets"], frames[f"{kind}_lost"]
    return round(lost / (received + lost), 4) if received + lost else None


def _row(
    server: str, size: int, setup_s: float, flow_s: float, w: dict[str, Any]
) -> dict[str, Any]:
    from bench.media_clip import AUDIO_FPS, VIDEO_FPS

    streams = size * (size - 1)
    elapsed = w["elapsed"]
    cpu_s = w["server_user_s"] + w["server_system_s"]
    pct = 100 * cpu_s / elapsed
    return {
        "server": server,
        "room_size": size,
        "video_streams": streams,
        "audio_streams": streams,
        "window_s": round(elapsed, 2),
        "server_cpu_s": round(cpu_s, 3),
        "server_pct_core": round(pct, 2),
        "server_system_share": round(w["server_system_s"] / cpu_s, 2) if cpu_s else None,
        "pct_core_per_video_stream": round(pct / streams, 4),
        # the figure the goal is about: server CPU seconds per forwarded (video+audio) stream-second
        "cpu_s_per_stream_s": round(cpu_s / (streams * elapsed), 6),
        # the same per stream-second actually delivered (video frames / 15): a server starved of
        # CPU by other load forwards less and spends less; this does not flatter it
        "cpu_s_per_delivered_stream_s": (
            round(cpu_s / (w["frames"]["video"] / VIDEO_FPS), 6) if w["frames"]["video"] else None
        ),
        "video_delivered": round(w["frames"]["video"] / (streams * VIDEO_FPS * elapsed), 3),
        "audio_delivered": round(w["frames"]["audio"] / (streams * AUDIO_FPS * elapsed), 3),
        # sent: frames the publishers' clip tracks produced (1.0 = the clients kept pace);
        # delivered_of_sent: what reached subscribers of what was sent (N-1 copies each).
        "video_sent": round(w["sent"]["video"] / (size * VIDEO_FPS * elapsed), 3),
        "video_delivered_of_sent": _of_sent(w, "video", size),
        "audio_delivered_of_sent": _of_sent(w, "audio", size),
        "video_packet_loss": _loss(w["frames"], "video"),
        # share of the video the server sent: delivered, corrected for packets lost on the way
        # (sequence gaps; on this loopback, full receive buffers of the load clients — see
        # udp_rcvbuf_drops). Below 1: the server itself fell behind (starved of CPU).
        "video_forwarded_est": _forwarded(w, streams, elapsed),
        "audio_packet_loss": _loss(w["frames"], "audio"),
        "client_pct_core": round(100 * w["client_cpu_s"] / elapsed, 1),
        # where lost packets went: full socket receive buffers of the server or of the clients
        "udp_rcvbuf_drops": w["udp_drops"],
        "keyframe_rewinds": w["keyframe_rewinds"],
        **({"server_dropped_frames": w["server_dropped"]} if "server_dropped" in w else {}),
        "setup_s": round(setup_s, 2),
        "first_frames_s": round(flow_s, 2),
    }


async def janus_room(
    janus: Any, http: Any, size: int, window_s: float, clip: Any
) -> dict[str, Any]:
    from bench.janus import JanusSession
    from bench.loadclient import LoadPeer

    room = 1000 + size
    started = time.monotonic()
    sessions = [JanusSession(janus.url, http) for _ in range(size)]
    publishers = [LoadPeer(f"pub{i}") for i in range(size)]
    subscribers = [LoadPeer(f"sub{i}") for i in range(size)]
    try:
        for s in sessions:
            await s.__aenter__()
        admin = await sessions[0].attach()
        await admin.request(
            {
                "request": "create",
                "room": room,
                "publishers": size,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "bitrate": 0,
                "fir_freq": 0,
            }
        )

        def is_plugin(kind: str) -> Callable[[dict[str, Any]], bool]:
            return lambda e: e.get("plugindata", {}).get("data", {}).get("videoroom") == kind

        async def publish(i: int) -> None:
            handle = await sessions[i].attach()
            await handle.message(
                {
                    "request": "join",
                    "ptype": "publisher",
                    "room": room,
                    "id": i + 1,
                    "display": f"p{i}",
                }
            )
            await handle.wait_event(is_plugin("joined"))
            peer = publishers[i]
            peer.add_clip_senders(clip)
            offer = await peer.offer()
            await handle.message(
                {"request": "publish"}, jsep={"type": "offer", "sdp": offer, "trickle": False}
            )
            event = await handle.wait_event(lambda e: "jsep" in e)
            await peer.accept_answer(event["jsep"]["sdp"])
            await handle.wait_event(lambda e: e.get("janus") == "webrtcup", 20)

        async def subscribe(i: int) -> None:
            handle = await sessions[i].attach()
            feeds = [{"feed": j + 1} for j in range(size) if j != i]
            await handle.message(
                {"request": "join", "ptype": "subscriber", "room": room, "streams": feeds}
            )
            event = await handle.wait_event(lambda e: "jsep" in e)
            answer = await subscribers[i].answer(event["jsep"]["sdp"])
            await handle.message({"request": "start"}, jsep={"type": "answer", "sdp": answer})
            await handle.wait_event(lambda e: e.get("janus") == "webrtcup", 20)

        await asyncio.gather(*(publish(i) for i in range(size)))
        await asyncio.gather(*(subscribe(i) for i in range(size)))
        setup_s = time.monotonic() - started
        flow_s = await _wait_flowing(subscribers, size - 1, f"janus room of {size}")
        window = await _steady_window(subscribers, publishers, lambda: [janus.pid], window_s)
        with contextlib.suppress(Exception):
            await admin.request({"request": "destroy", "room": room})
    finally:
        for peer in publishers + subscribers:
            with contextlib.suppress(Exception):
                await peer.close()
        for s in sessions:
            await s.close()
    return _row("janus", size, setup_s, flow_s, window)


async def onedoor_room(size: int, window_s: float, clip: Any, address: str) -> dict[str, Any]:
    from bench.loadclient import LoadPeer
    from media.interfaces import PeerDescription, PeerFailed, PublishGrant, SessionDescription
    from media.workers import WorkerPoolMediaNode

    room = f"bench-{size}"
    started = time.monotonic()
    peers = {f"p{i}": LoadPeer(f"p{i}") for i in range(size)}
    failures: list[str] = []
    async with WorkerPoolMediaNode(
        workers=1, host_addresses=[address], restart_workers=False
    ) as pool:
        tasks: set[asyncio.Task[None]] = set()

        async def answer(peer_id: str, sdp: str) -> None:
            reply = await peers[peer_id].answer(sdp)
            await pool.accept_answer(
                room_id=room, peer_id=peer_id, answer=SessionDescription("answer", reply)
            )

        async def pump() -> None:
            async for event in pool.events():
                if isinstance(event, PeerDescription):
                    task = asyncio.create_task(answer(event.peer_id, event.description.sdp))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif isinstance(event, PeerFailed):
                    failures.append(f"{event.peer_id}: {event.reason}")

        pump_task = asyncio.create_task(pump())
        try:
            for peer_id, peer in peers.items():
                async with peer.lock:  # a server offer must wait for our answer to be applied
                    peer.add_clip_senders(clip)
                    offer = await peer.offer()
                    reply = await pool.accept_offer(
                        room_id=room,
                        peer_id=peer_id,
                        offer=SessionDescription("offer", offer),
                        ice_servers=[],
                        grant=PublishGrant(audio=True, video=True),
                    )
                    await peer.accept_answer(reply.sdp)
            setup_s = time.monotonic() - started
            receivers = list(peers.values())
            try:
                flow_s = await _wait_flowing(receivers, size - 1, f"onedoor room of {size}")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; failures: {failures}") from None
            stats0 = await pool.subscription_stats(room)
            window = await _steady_window(receivers, receivers, pool.worker_pids, window_s)
            stats1 = await pool.subscription_stats(room)
            window["server_dropped"] = {
                kind: sum(x.dropped for x in stats1 if x.kind == kind)
                - sum(x.dropped for x in stats0 if x.kind == kind)
                for kind in ("video", "audio")
            }
        finally:
            pump_task.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(pump_task, *tasks, return_exceptions=True)
            for peer in peers.values():
                with contextlib.suppress(Exception):
                    await peer.close()
    return _row("onedoor", size, setup_s, flow_s, window)


def _quality(row: dict[str, Any]) -> float:
    return float(min(row["video_delivered"], row["video_forwarded_est"]))


async def _with_retry(
    room: Callable[[], Awaitable[dict[str, Any]]], deadline: float, rooms_left: int
) -> dict[str, Any]:
    """Measure a room; if its server forwarded < 95 % of the video (a busy machine starving it)
    or the clients received < 95 %, and there is time left, measure once more; keep the better."""
    row = await room()
    row["attempts"] = 1
    per_room_s = row["window_s"] + 8
    if _quality(row) < 0.95 and time.monotonic() + per_room_s * (1 + rooms_left) < deadline:
        log.info(
            "%s room of %d delivered %.2f: measuring again",
            row["server"],
            row["room_size"],
            row["video_delivered"],
        )
        again = await room()
        again["attempts"] = 2
        again["first_attempt_video_delivered"] = row["video_delivered"]
        if _quality(again) >= _quality(row):
            row = again
        else:
            row["attempts"] = 2
    return row


async def measure(scale: float, address: str, interface: str) -> dict[str, Any]:
    """The measurement proper; must run inside the namespace (see `run`)."""
    import aiohttp

    from bench.janus import JanusServer
    from bench.loadclient import prepare_process
    from bench.media_clip import make_clip

    prepare_process([address])
    window_s = 0.5 if smoke(scale) else max(3.0, 20.0 * scale)
    # one re-measurement of a room that did not deliver, while the run stays within about
    # 3 minutes at scale 1 (6 windows + set-up take about 150 s)
    budget = time.monotonic() + 2 * len(SIZES) * (window_s + 8) + 25
    clip = await asyncio.to_thread(make_clip)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    janus = JanusServer(address=address, interface=interface)
    atexit.register(janus.stop)
    janus_skipped = (
        None if shutil.which("janus") else "janus is not installed (make bench installs it)"
    )
    version = "?"
    if janus_skipped:
        # not a failure of the benchmark: its two Janus checks are reported "skipped"
        log.warning("%s: measuring onedoor only", janus_skipped)
        errors["janus"] = janus_skipped
    else:
        try:
            await janus.start()
            version = janus.info.get("version_string", "?")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                for size in SIZES:
                    rows.append(
                        await _with_retry(
                            functools.partial(janus_room, janus, http, size, window_s, clip),
                            budget,
                            rooms_left=2 * len(SIZES) - len(rows) - 1,
                        )
                    )
                    log.info("janus %d: %s", size, rows[-1])
        except Exception as exc:
            log.exception("janus half failed")
            errors["janus"] = f"{type(exc).__name__}: {exc} | janus log: {janus.log_tail(8)}"
        finally:
            janus.stop()

    try:
        for size in SIZES:
            rows.append(
                await _with_retry(
                    functools.partial(onedoor_room, size, window_s, clip, address),
                    budget,
                    rooms_left=2 * len(SIZES) - len(rows) - 1,
                )
            )
            log.info("onedoor %d: %s", size, rows[-1])
    except Exception as exc:
        log.exception("onedoor half failed")
        errors["onedoor"] = f"{type(exc).__name__}: {exc}"
    return {
        "window_s": window_s,
        "janus_version": version,
        "clip": {
            "video": f"VP8 640x480@15, {clip.video_kbps:.0f} kbps, {len(clip.video)} frames",
            "audio": f"Opus 48 kHz mono 20 ms, {clip.audio_kbps:.0f} kbps",
        },
        "rows": rows,
        "errors": errors,
        "janus_skipped": janus_skipped,
    }


# ====================================================================== report (host side)


def _fit(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """server % of a core ≈ a·N (per publisher received) + b·N(N-1) (per forwarded stream)."""
    if len(rows) < 2:
        return None
    matrix = np.array([[r["room_size"], r["video_streams"]] for r in rows], dtype=float)
    y = np.array([r["server_pct_core"] for r in rows])
    (a, b), *_ = np.linalg.lstsq(matrix, y, rcond=None)
    return {"pct_core_per_publisher": round(float(a), 4), "pct_core_per_stream": round(float(b), 4)}


def summarize(inner: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    rows = inner["rows"]
    by = {(r["server"], r["room_size"]): r for r in rows}
    per_size = {}
    for size in SIZES:
        j, o = by.get(("janus", size)), by.get(("onedoor", size))
        if j and o and j["cpu_s_per_stream_s"]:
            per_size[str(size)] = round(o["cpu_s_per_stream_s"] / j["cpu_s_per_stream_s"], 2)
    fits = {s: _fit([r for r in rows if r["server"] == s]) for s in ("janus", "onedoor")}
    # Headline: server CPU per forwarded video stream-second (audio rides along) in the largest
    # room both servers completed (8 unless something failed). It also carries the per-publisher
    # receive cost, as a real room's does; the fit separates the two. Valid only if both rooms
    # delivered (the *_video_delivered checks): see each row's udp_rcvbuf_drops for who dropped.
    both = [int(s) for s in per_size]
    headline_size = max(both) if both else None
    ratio = per_size[str(headline_size)] if headline_size else None
    result: dict[str, Any] = {
        "bench": "sfu_peer",
        "what": "server CPU per forwarded stream, Janus VideoRoom vs onedoor SfuMediaNode, same load",
        "load": {
            **inner["clip"],
            "rooms": list(SIZES),
            "each": "publishes video+audio, subscribes to all others",
        },
        "window_s": inner["window_s"],
        "janus_version": inner["janus_version"],
        "namespace": namespace,
        "results": rows,
        "fit": fits,
        "onedoor_over_janus_cpu_per_stream_by_size": per_size,
        "onedoor_over_janus_cpu_per_stream": ratio,
        "ratio_room_size": headline_size,
        "errors": inner["errors"],
        "caveat": "2-core machine shared with other engineers' tests: absolute figures are noisy",
    }
    checks = []
    skipped = inner.get("janus_skipped")
    if skipped:  # the comparison cannot run; onedoor's own half still did
        result["janus_skipped"] = skipped
        for name in (
            "onedoor_over_janus_cpu_per_stream",
            f"janus_room{max(SIZES)}_video_forwarded",
        ):
            checks.append(
                {"name": name, "value": None, "goal": None, "unit": None, "pass": False}
                | {"skipped": skipped}
            )
        ours = by.get(("onedoor", max(SIZES)))
        if ours is not None:
            checks.append(
                check(
                    f"onedoor_room{max(SIZES)}_video_forwarded",
                    ours["video_forwarded_est"],
                    ">= 0.95",
                    "ratio",
                )
            )
    elif ratio is not None:
        checks.append(check("onedoor_over_janus_cpu_per_stream", ratio, RATIO_GOAL, "ratio"))
        for server in ("janus", "onedoor"):
            r = by[(server, headline_size)]
            checks.append(
                check(
                    f"{server}_room{headline_size}_video_forwarded",
                    r["video_forwarded_est"],
                    ">= 0.95",
                    "ratio",
                )
            )
    else:
        checks.append(
            {
                "name": "onedoor_over_janus_cpu_per_stream",
                "value": None,
                "goal": RATIO_GOAL,
                "unit": "ratio",
                "pass": False,
            }
        )
    result["checks"] = checks
    return result


def plot(result: dict[str, Any], path: Path = PLOT) -> Path | None:
    rows = result["results"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for server, style in (("janus", "o-"), ("onedoor", "s-")):
        pts = sorted((r["room_size"], r["server_pct_core"]) for r in rows if r["server"] == server)
        if pts:
            xs, ys = zip(*pts, strict=True)
            label = "Janus VideoRoom" if server == "janus" else "onedoor SfuMediaNode"
            ax.plot(xs, ys, style, label=label)
            for x, y in pts:
                ax.annotate(
                    f"{y:.1f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
    ax.set_xlabel("participants (each sends 640x480@15 VP8 + Opus, receives all others)")
    ax.set_ylabel("server CPU, % of one core")
    ax.set_xticks(list(SIZES))
    ratio = result.get("onedoor_over_janus_cpu_per_stream")
    title = "sfu-peer: server CPU vs participants"
    if ratio is not None:
        title += f"  (onedoor/Janus per stream at {result['ratio_room_size']}: {ratio:.2f}x)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, "2-core machine shared with other tests: noisy", fontsize=7, alpha=0.6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _read_inner(out: Path, rc: int) -> dict[str, Any]:
    try:
        if rc != 0 or not out.exists() or not out.stat().st_size:
            raise RuntimeError(f"inner measurement exited with {rc}")
        inner: dict[str, Any] = json.loads(out.read_text())
        return inner
    finally:
        out.unlink(missing_ok=True)


async def run(scale: float = 1.0) -> dict[str, Any]:
    """Create the namespace, measure inside it, delete it; report and plot on the host side."""
    if os.environ.get(INNER_ENV):  # already inside a namespace prepared by the caller
        inner = await measure(
            scale, os.environ[INNER_ENV], os.environ.get("ONEDOOR_SFU_PEER_IF", "d0")
        )
        result = summarize(inner, {"name": "(caller's)", "address": os.environ[INNER_ENV]})
        result["plot"] = str(plot(result, plot_path(PLOT)))
        return result
    ns = Namespace()
    ns.create()
    try:
        with tempfile.NamedTemporaryFile(prefix="sfu_peer-", suffix=".json", delete=False) as tmp:
            out = Path(tmp.name)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ONEDOOR_SFU_PEER_IF": ns.interface}
        env.pop(INNER_ENV, None)
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            ns.name,
            sys.executable,
            "-m",
            "bench.sfu_peer",
            "--inner",
            "--scale",
            str(scale),
            "--address",
            ns.address,
            "--interface",
            ns.interface,
            "--out",
            str(out),
            cwd=str(ROOT),
            env=env,
        )
        inner_limit_s = 300 + 160 * scale  # set-up is slow on a loaded machine
        try:
            async with asyncio.timeout(inner_limit_s):
                rc = await process.wait()
        except BaseException as exc:  # the deadline, or the benchmark's own bound cancelling
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(
                    f"measurement in the namespace ran over {inner_limit_s:.0f} s"
                ) from exc
            raise
        inner = _read_inner(out, rc)
    finally:
        ns.delete()
    result = summarize(
        inner,
        {"name": ns.name, "address": ns.address, "device": ns.device_kind, "route_out": False},
    )
    result["plot"] = str(plot(result, plot_path(PLOT)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", default=ADDRESS, help=argparse.SUPPRESS)
    parser.add_argument("--interface", default="d0", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.inner:
        log.setLevel(logging.INFO)
        inner = asyncio.run(measure(args.scale, args.address, args.interface))
        Path(args.out).write_text(json.dumps(inner))
        return
    print(json.dumps(asyncio.run(run(args.scale)), indent=2))


if __name__ == "__main__":
    main()
