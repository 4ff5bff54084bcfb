"""Soak test (issue #9 §1): one `onedoor serve` node under steady load for a long time.

    python -m bench.soak [--scale 1.0] [--duration 600]     # prints the JSON report
    onedoor bench soak [--scale 1.0]
    python -m bench soak

Load at scale 1: 20 rooms x 5 participants (aiortc clients from bench/sigclient.py: one staff
host who creates the session and admits, four guests with join tokens), every participant
sending the pre-encoded clip (bench/media_clip.py: VP8 + Opus, never encoded) and receiving the
other four without decoding; plus 500 idle signaling connections (connected, `hello` received,
answering WebSocket heartbeats); held for 10 minutes. `scale` shrinks rooms, participants,
idle connections and duration.

The server is measured from outside, from /proc/<pid> (the SFU runs inside the server process
with the default `ONEDOOR_MEDIA_WORKERS=0`): RSS (VmRSS), open file descriptors by kind
(UDP/TCP/Unix sockets, other), threads (aiortc runs one receive worker thread per remote
track, so leftover receivers show there), CPU; TCP sockets count the signaling connections.

Checks:
- zero server errors: lines with ERROR, CRITICAL, Traceback or "unhandled" in the server log;
- nobody dropped: every participant is still joined, its socket open and its peer connection
  `connected` at the end, and every one received new video and audio frames in the last
  sampling interval;
- RSS growth after warm-up < 10 % (median of the last three samples against the median of the
  first three after warm-up);
- no leaks once everyone left: open fds, UDP sockets and threads back to the baseline taken
  after sign-in and session creation (polled for up to 30 s);
- self-heal under overload (issue #18): right after warm-up a CPU hog (a busy loop in its own
  process, one core) runs for `hog_s` (60 s at scale 1); media may stall meanwhile (its
  intervals are counted apart, not as stalls), but within 10 s after the hog ends every
  participant receives video from every other again (`media_recovered_after_hog_s`, polled
  every 0.25 s). A participant whose media connection failed rebuilds it as the web client does
  (`MediaParticipant.rebuild`: on `error media_failed` or its own connection failing).

Media cost: at scale 1 the room load (100 publishers, 400 forwarded video streams) is far
beyond what a 2-core machine running both the server and its 100 clients forwards at the
clip's full 15 fps (bench/sfu_peer.py: about 0.45 % of a core per forwarded stream), so the
soak's clip plays at `video_fps` (default 5 at scale >= 0.5, 15 below) — same packets, fewer
per second; the measured frame rates are in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import check, percentile, process_cpu_seconds, smoke
from bench.sigclient import MediaParticipant, SigClient, Staff

log = logging.getLogger("bench.soak")

HOSTS = (
    [f"mediator{i:02d}" for i in range(1, 4)]
    + ["supervisor01", "supervisor02"]
    + [f"window{i:02d}" for i in range(1, 8)]
    + [f"handler{i:02d}" for i in range(1, 13)]
    + [f"leader{i:02d}" for i in range(1, 13)]
)
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|unhandled", re.IGNORECASE)
LEAK_WAIT_S = 30.0
FLOW_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 30.0
#: Media must be back for everyone this long after the CPU hog ends (issue #18).
RECOVERY_GOAL_S = 10.0
RECOVERY_WAIT_S = 60.0
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "server_errors",
    "participants_dropped",
    "participants_stalled_intervals",
    "idle_connections_dropped",
    "server_rss_growth_after_warmup",
    "server_fds_after_leave_over_baseline",
    "server_udp_sockets_after_leave",
    "server_threads_after_leave_over_baseline",
    "server_tcp_sockets_after_leave_over_baseline",
    "media_recovered_after_hog_s",
)
TIMEOUT = (600.0, 1200.0)  # overall bound in s: fixed + per unit of scale


@dataclass
class SoakConfig:
    rooms: int
    per_room: int
    idle: int
    duration_s: float
    warmup_s: float
    sample_s: float
    video_fps: int = 15
    audio_per_room: int = 5  # participants per room who publish audio (all of them publish video)
    setup_concurrency: int = 4
    hog_s: float = 0.0  # a CPU hog (one core) right after warm-up, for this long

    @classmethod
    def for_scale(cls, scale: float, duration_s: float | None = None) -> SoakConfig:
        if smoke(scale):  # the smallest soak that runs every step: 1 room of 2, a few seconds
            return cls(
                rooms=1,
                per_room=2,
                idle=4,
                duration_s=duration_s if duration_s is not None else 4.0,
                warmup_s=1.0,
                sample_s=1.0,
                video_fps=5,
                audio_per_room=2,
                hog_s=1.0,
            )
        duration = duration_s if duration_s is not None else max(30.0, 600.0 * scale)
        return cls(
            rooms=max(2, round(20 * scale)),
            per_room=5 if scale >= 0.5 else max(3, min(5, round(5 * scale * 2))),
            idle=max(20, round(500 * scale)),
            duration_s=duration,
            warmup_s=min(60.0, max(5.0, duration * 0.1)),
            sample_s=min(10.0, max(2.0, duration / 30)),
            video_fps=3 if scale >= 0.5 else 15,
            audio_per_room=1 if scale >= 0.5 else 5,
            hog_s=max(0.0, min(60.0, duration - min(60.0, max(5.0, duration * 0.1)) - 25.0)),
        )


# ------------------------------------------------------------------------------ /proc


def _socket_kinds(pid: int) -> dict[str, str]:
    """inode -> kind (udp, tcp, unix) for the sockets of the process's network namespace."""
    kinds: dict[str, str] = {}
    for name, kind in (("udp", "udp"), ("udp6", "udp"), ("tcp", "tcp"), ("tcp6", "tcp")):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{name}") as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                if len(parts) > 9:
                    kinds[parts[9]] = kind
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/unix") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if len(parts) > 6:
                kinds[parts[6]] = "unix"
    return kinds


def proc_sample(pid: int) -> dict[str, Any]:
    """RSS (KiB), threads, CPU seconds and open fds by kind of one process."""
    status: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    fds: dict[str, int] = {"total": 0, "udp": 0, "tcp": 0, "unix": 0, "other": 0}
    targets: list[str] = []
    kinds = _socket_kinds(pid)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        fds["total"] += 1
        targets.append(target)
        if target.startswith("socket:["):
            fds[kinds.get(target[8:-1], "other")] += 1
        else:
            fds["other"] += 1
    return {
        "t": time.monotonic(),
        "rss_kib": int(status["VmRSS"].split()[0]),
        "threads": int(status["Threads"]),
        "cpu_s": process_cpu_seconds(pid),
        "fds": fds,
        "fd_targets": targets,
    }


def server_errors(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if ERROR_LINE.search(line)]


# ------------------------------------------------------------------------------ load


@dataclass
class RoomLoad:
    index: int
    session: dict[str, Any]
    staff: Staff
    tokens: list[str]
    members: list[MediaParticipant] = field(default_factory=list)


async def _prepare_room(index: int, cfg: SoakConfig, staff: Staff) -> RoomLoad:
    """Session and join tokens (HTTP + database), before the baseline is taken."""
    session = await staff.create_session(title=f"soak {index}")
    tokens = await asyncio.gather(
        *(staff.issue_token(session["id"], f"访客{index}-{g}") for g in range(1, cfg.per_room))
    )
    return RoomLoad(index, session, staff, list(tokens))


async def _start_room(
    room: RoomLoad, cfg: SoakConfig, http: aiohttp.ClientSession, base_url: str, clip: Any
) -> None:
    """Host joins and publishes; each guest joins by token, is admitted and publishes. The
    first `cfg.audio_per_room` participants publish audio, everyone publishes video."""
    i = room.index
    host = MediaParticipant(SigClient(http, base_url, cookie=room.staff.cookie, name=f"r{i}-host"))
    room.members.append(host)
    await host.sig.connect()
    await host.sig.join(room.session["room_id"])
    await host.publish(clip, audio=cfg.audio_per_room > 0, video_fps=cfg.video_fps)
    for g, token in enumerate(room.tokens, 1):
        guest = MediaParticipant(SigClient(http, base_url, name=f"r{i}-g{g}"))
        room.members.append(guest)
        await guest.sig.connect()
        await guest.sig.join(room.session["room_id"], token=token)
        await host.sig.request("admit", peer_id=guest.sig.peer_id)
        await guest.sig.expect("admitted")
        await guest.publish(clip, audio=g < cfg.audio_per_room, video_fps=cfg.video_fps)
    for p in room.members:
        p.expect_video = cfg.per_room - 1
        p.expect_audio = cfg.audio_per_room - (1 if p.publishes_audio else 0)


def _flowing(p: MediaParticipant) -> bool:
    return p.peer.flowing("video") >= p.expect_video and p.peer.flowing("audio") >= p.expect_audio


def _frames(p: MediaParticipant) -> tuple[int, int]:
    return p.peer.frames("video"), p.peer.frames("audio")


def _video_counts(participants: list[MediaParticipant]) -> dict[tuple[str, int, str], int]:
    """Frames per received video track, keyed by participant, connection and track."""
    return {
        (p.sig.name, id(p.peer), key): c.frames
        for p in participants
        for key, c in p.peer.received.items()
        if c.kind == "video"
    }


async def _recovery(participants: list[MediaParticipant], since: float) -> float | None:
    """Seconds after `since` until every participant received a new frame, within the last
    second, on each of the video tracks it expects from its current connection (polled every
    0.25 s; at the soak's 3 fps a second holds three frames); None if not within
    RECOVERY_WAIT_S."""
    back: dict[str, float] = {}
    history = [(time.monotonic(), _video_counts(participants))]
    while time.monotonic() - since < RECOVERY_WAIT_S:
        await asyncio.sleep(0.25)
        t, now = time.monotonic(), _video_counts(participants)
        history.append((t, now))
        while len(history) > 2 and history[1][0] <= t - 1.0:
            history.pop(0)
        before = history[0][1]
        for p in participants:
            live = sum(
                1
                for key, frames in now.items()
                if key[0] == p.sig.name and key[1] == id(p.peer) and frames > before.get(key, 0)
            )
            if p.sig.name not in back and live >= p.expect_video:
                back[p.sig.name] = t - since
        if len(back) == len(participants):
            return max(back.values())
    return None


def _start_hog(seconds: float) -> subprocess.Popen[bytes]:
    """A busy loop in its own process: one core taken for `seconds`."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def _participant_state(p: MediaParticipant) -> dict[str, Any]:
    return {
        "name": p.sig.name,
        "status": p.sig.status,
        "socket_open": p.sig.open,
        "close_code": p.sig.close_code,
        "pc": p.connection_state,
        "video_frames": p.peer.frames("video"),
        "audio_frames": p.peer.frames("audio"),
        "negotiation_errors": p.negotiation_errors[:3],
        "media_rebuilds": p.rebuilds,
        "rebuild_errors": p.rebuild_errors[:3],
        "server_errors": [e.get("code") for e in p.sig.errors[:3]],
    }


async def soak(cfg: SoakConfig, workdir: Path) -> dict[str, Any]:
    from bench import loadclient
    from bench.media_clip import make_clip
    from bench.server_process import start_server

    loadclient.prepare_process(["127.0.0.1"])
    clip = make_clip()
    server = start_server(workdir, ONEDOOR_LOG_LEVEL="INFO")
    pid = server.process.pid
    participants: list[MediaParticipant] = []
    idle: list[SigClient] = []
    rooms: list[RoomLoad] = []
    samples: list[dict[str, Any]] = []
    timeline: dict[str, float] = {}
    ping_rtts: list[float] = []
    stalls: list[str] = []
    hog_stalls: list[str] = []
    recovered_s: float | None = None
    started = time.monotonic()
    result: dict[str, Any] = {"config": asdict(cfg), "server_log": str(server.log_path)}
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            # -- sign in and create the sessions first: the baseline includes the DB pool
            usernames = [HOSTS[i % len(HOSTS)] for i in range(cfg.rooms)]
            staffs: list[Staff] = []
            for name in usernames:
                cookie, csrf = await asyncio.to_thread(server.sign_in, name)
                staffs.append(Staff(http, server.base_url, cookie, csrf))
            # all sessions and tokens now, concurrently: the database pool reaches its
            # steady size before the baseline
            rooms = list(
                await asyncio.gather(*(_prepare_room(i, cfg, staffs[i]) for i in range(cfg.rooms)))
            )
            probe = SigClient(http, server.base_url, name="probe")
            await probe.connect()
            await probe.ping()
            await probe.close()
            await asyncio.sleep(1.0)
            baseline = proc_sample(pid)
            timeline["signed_in_s"] = time.monotonic() - started

            # -- idle signaling connections
            sem = asyncio.Semaphore(50)

            async def idle_one(i: int) -> SigClient:
                async with sem:
                    client = SigClient(http, server.base_url, name=f"idle{i}", backlog=16)
                    await client.connect()
                    return client

            idle = list(await asyncio.gather(*(idle_one(i) for i in range(cfg.idle))))
            timeline["idle_connected_s"] = time.monotonic() - started

            # -- rooms (a few at a time)
            room_sem = asyncio.Semaphore(cfg.setup_concurrency)

            async def room_one(room: RoomLoad) -> None:
                async with room_sem:
                    await _start_room(room, cfg, http, server.base_url, clip)

            # A room that fails to start (a join timing out on a loaded machine) stops the
            # others: the benchmark ends with that error instead of going on half set up.
            starting = [asyncio.create_task(room_one(r)) for r in rooms]
            try:
                await asyncio.gather(*starting)
            except BaseException:
                for task in starting:
                    task.cancel()
                await asyncio.gather(*starting, return_exceptions=True)
                raise
            participants = [p for r in rooms for p in r.members]
            timeline["rooms_joined_s"] = time.monotonic() - started
            deadline = time.monotonic() + FLOW_TIMEOUT_S
            while not all(_flowing(p) for p in participants):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        "media not flowing to everyone: "
                        + json.dumps(
                            [_participant_state(p) for p in participants if not _flowing(p)][:5]
                        )
                    )
                await asyncio.sleep(0.5)
            timeline["media_flowing_s"] = time.monotonic() - started
            loaded = proc_sample(pid)
            log.info(
                "all %d participants receive everyone; soaking %.0f s",
                len(participants),
                cfg.duration_s,
            )

            # -- hold: sample the server, check every participant still receives
            hold_start = time.monotonic()
            warmup_end = hold_start + cfg.warmup_s
            end = hold_start + cfg.duration_s
            last_frames = {p.sig.name: _frames(p) for p in participants}
            frames_at_warmup: dict[str, tuple[int, int]] = {}
            ping_i = 0
            hog: subprocess.Popen[bytes] | None = None
            hog_window = (float("inf"), float("inf"))  # stalls in it are the hog's
            recovery: asyncio.Task[float | None] | None = None
            while time.monotonic() < end:
                step = min(cfg.sample_s, max(0.0, end - time.monotonic()))
                if hog is not None and recovery is None:
                    step = min(step, max(0.0, hog_window[0] + cfg.hog_s - time.monotonic()))
                await asyncio.sleep(step)
                if cfg.hog_s > 0 and hog is None and time.monotonic() >= warmup_end:
                    hog = _start_hog(cfg.hog_s)
                    hog_window = (time.monotonic(), time.monotonic() + cfg.hog_s + RECOVERY_GOAL_S)
                    timeline["hog_start_s"] = time.monotonic() - started
                    log.info("CPU hog for %.0f s", cfg.hog_s)
                if hog is not None and recovery is None and hog.poll() is not None:
                    timeline["hog_end_s"] = time.monotonic() - started
                    recovery = asyncio.create_task(_recovery(participants, time.monotonic()))
                sample = proc_sample(pid)
                sample["warm"] = sample["t"] >= warmup_end
                if sample["warm"] and not frames_at_warmup:
                    frames_at_warmup = {p.sig.name: _frames(p) for p in participants}
                    timeline["warmup_end_s"] = time.monotonic() - started
                samples.append(sample)
                in_hog = hog_window[0] <= time.monotonic() <= hog_window[1]
                for p in participants:
                    now = _frames(p)
                    before = last_frames[p.sig.name]
                    if now[0] <= before[0] or (p.expect_audio and now[1] <= before[1]):
                        where = f"{p.sig.name}@{sample['t'] - hold_start:.0f}s"
                        (hog_stalls if in_hog else stalls).append(where)
                    last_frames[p.sig.name] = now
                for client in idle[ping_i : ping_i + 5]:  # app-level ping through idle sockets
                    with contextlib.suppress(Exception):
                        ping_rtts.append(await client.ping(10.0))
                ping_i = (ping_i + 5) % max(1, len(idle))
            if hog is not None:
                hog.wait()
                if recovery is None:
                    timeline["hog_end_s"] = time.monotonic() - started
                    recovery = asyncio.create_task(_recovery(participants, time.monotonic()))
                recovered_s = await recovery
            hold_s = time.monotonic() - hold_start

            # -- end state: everybody still there?
            states = [_participant_state(p) for p in participants]
            dropped = [
                s
                for s in states
                if s["status"] != "joined" or not s["socket_open"] or s["pc"] != "connected"
            ]
            idle_closed = sum(1 for c in idle if not c.open)
            warm = [s for s in samples if s["warm"]] or samples
            received_fps = _received_fps(participants, frames_at_warmup, warm, cfg)
            at_end = proc_sample(pid)

            # -- everyone leaves; resources must come back to the baseline
            leave_start = time.monotonic()
            await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)
            await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)
            timeline["left_s"] = time.monotonic() - started
            after = proc_sample(pid)
            while time.monotonic() - leave_start < LEAK_WAIT_S:
                after = proc_sample(pid)
                if (
                    after["fds"]["total"] <= baseline["fds"]["total"]
                    and after["threads"] <= baseline["threads"]
                ):
                    break
                await asyncio.sleep(1.0)
            timeline["released_s"] = time.monotonic() - started
    finally:
        # Everyone who got a peer connection, also in rooms that never finished starting: an
        # unclosed aiortc connection keeps non-daemon threads that stop the process exiting.
        everyone = [p for r in rooms for p in r.members] or participants
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(
                    *(p.close(leave=False) for p in everyone), return_exceptions=True
                )
                await asyncio.gather(*(c.close() for c in idle), return_exceptions=True)
        server.stop()
    errors = server_errors(server.log_path)

    first3 = [s["rss_kib"] for s in warm[:3]]
    last3 = [s["rss_kib"] for s in warm[-3:]]
    rss_growth_pct = 100.0 * (statistics.median(last3) / statistics.median(first3) - 1.0)
    cpu_s = at_end["cpu_s"] - loaded["cpu_s"]
    result.update(
        {
            "participants": len(participants),
            "idle_connections": len(idle),
            "hold_s": round(hold_s, 1),
            "timeline_s": {k: round(v, 1) for k, v in timeline.items()},
            "server_errors": len(errors),
            "server_error_lines": errors[:20],
            "dropped": dropped,
            "stalled_intervals": len(stalls),
            "stalls": stalls[:20],
            "hog": {
                "seconds": cfg.hog_s,
                "stalled_intervals_during": len(hog_stalls),
                "media_recovered_after_s": round(recovered_s, 2)
                if recovered_s is not None
                else None,
                "media_rebuilds": sum(p.rebuilds for p in participants),
            },
            "idle_closed_by_server": idle_closed,
            "received_fps": received_fps,
            "ping_ms": {
                "n": len(ping_rtts),
                "p50": round(1000 * percentile(ping_rtts, 50), 1) if ping_rtts else None,
                "p99": round(1000 * percentile(ping_rtts, 99), 1) if ping_rtts else None,
            },
            "server": {
                "cpu_pct_of_core_during_hold": round(100.0 * cpu_s / max(hold_s, 1e-9), 1),
                "rss_mib": {
                    "baseline": round(baseline["rss_kib"] / 1024, 1),
                    "loaded": round(loaded["rss_kib"] / 1024, 1),
                    "after_warmup": round(statistics.median(first3) / 1024, 1),
                    "end": round(statistics.median(last3) / 1024, 1),
                    "after_leave": round(after["rss_kib"] / 1024, 1),
                },
                "rss_growth_pct": round(rss_growth_pct, 2),
                "fds": {
                    "baseline": baseline["fds"],
                    "loaded": at_end["fds"],
                    "after_leave": after["fds"],
                },
                "threads": {
                    "baseline": baseline["threads"],
                    "loaded": at_end["threads"],
                    "after_leave": after["threads"],
                },
                "rss_samples_mib": [round(s["rss_kib"] / 1024, 1) for s in samples],
            },
            "load": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        }
    )
    fd_growth = after["fds"]["total"] - baseline["fds"]["total"]
    if fd_growth > 0:  # what is left over (sockets show as socket:[inode])
        extra = list(after["fd_targets"])
        for target in baseline["fd_targets"]:
            with contextlib.suppress(ValueError):
                extra.remove(target)
        result["server"]["fds_left_over"] = extra[:50]
    result["checks"] = [
        check("server_errors", len(errors), "<= 0", "lines"),
        check("participants_dropped", len(dropped), "<= 0", "participants"),
        check("participants_stalled_intervals", len(stalls), "<= 0", "intervals"),
        check("idle_connections_dropped", idle_closed, "<= 0", "connections"),
        check(
            "media_recovered_after_hog_s",
            recovered_s if recovered_s is not None else RECOVERY_WAIT_S,
            f"<= {RECOVERY_GOAL_S:g}",
            "s",
        ),
        check("server_rss_growth_after_warmup", rss_growth_pct, "<= 10", "%"),
        check("server_fds_after_leave_over_baseline", fd_growth, "<= 0", "fds"),
        check(
            "server_udp_sockets_after_leave",
            after["fds"]["udp"] - baseline["fds"]["udp"],
            "<= 0",
            "sockets",
        ),
        check(
            "server_threads_after_leave_over_baseline",
            after["threads"] - baseline["threads"],
            "<= 0",
            "threads",
        ),
        check(
            "server_tcp_sockets_after_leave_over_baseline",
            after["fds"]["tcp"] - baseline["fds"]["tcp"],
            "<= 0",
            "sockets",
        ),
    ]
    return result


def _received_fps(
    participants: list[MediaParticipant],
    at_warmup: dict[str, tuple[int, int]],
    warm: list[dict[str, Any]],
    cfg: SoakConfig,
) -> dict[str, float | None]:
    """Frames per second per forwarded track, averaged from the end of warm-up to now."""
    if not at_warmup or len(warm) < 2:
        return {"video": None, "audio": None}
    seconds = warm[-1]["t"] - warm[0]["t"]
    video_tracks = max(1, sum(p.expect_video for p in participants))
    audio_tracks = sum(p.expect_audio for p in participants)
    video = sum(_frames(p)[0] - at_warmup[p.sig.name][0] for p in participants)
    audio = sum(_frames(p)[1] - at_warmup[p.sig.name][1] for p in participants)
    return {
        "video": round(video / video_tracks / max(seconds, 1e-9), 2),
        "audio": round(audio / audio_tracks / max(seconds, 1e-9), 2) if audio_tracks else None,
        "video_sent_fps": cfg.video_fps,
    }


async def run(
    scale: float = 1.0, duration_s: float | None = None, **overrides: Any
) -> dict[str, Any]:
    """`overrides`: any SoakConfig field (rooms, per_room, idle, video_fps, audio, ...)."""
    cfg = SoakConfig.for_scale(scale, duration_s)
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    workdir = Path(tempfile.mkdtemp(prefix="onedoor-soak-"))
    result = await soak(cfg, workdir)
    result["scale"] = scale
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="onedoor soak benchmark")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=None, help="hold seconds")
    parser.add_argument("--rooms", type=int)
    parser.add_argument("--per-room", type=int)
    parser.add_argument("--idle", type=int)
    parser.add_argument("--video-fps", type=int)
    parser.add_argument("--audio-per-room", type=int)
    parser.add_argument("--hog", type=float, dest="hog_s", help="CPU hog seconds (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    overrides = {
        k: getattr(args, k)
        for k in ("rooms", "per_room", "idle", "video_fps", "audio_per_room", "hog_s")
    }
    result = asyncio.run(run(args.scale, args.duration, **overrides))
    print(json.dumps(result, ensure_ascii=False, indent=2))
    sys.exit(0 if all(c["pass"] for c in result["checks"]) else 1)


if __name__ == "__main__":
    main()
