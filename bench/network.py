"""Real Chromium on shaped links (issue #18): `onedoor bench network --json`.

A three-party mediation in headless Chromium: A (the mediator, host) and B on clean links, C on
the profile's link. The server and each browser run in a network namespace of their own
(tests/netshape.py: veth pairs to a bridge in the server's namespace, `tc tbf` for the rate, a
userspace relay for delay, jitter, loss and blackouts); no media leaves the namespaces. Two
cameras: Chromium's fake pattern (it encodes at about 350 kbit/s) and a generated noisy clip fed
with `--use-file-for-fake-video-capture`, which sits at the client's 600 kbit/s cap like a real
webcam.

Every 0.25 s each page's `getStats()` is read. Per direction (receiver ← sender) over the
measured window: fps, frozen seconds (Chromium's own freeze count and duration, or the time in
gaps of ≥ 1 s without a new frame when that is more: a paused video is frozen to its viewer),
audio concealment; per publisher the keyframe requests it received (PLI) and the keyframes it
encoded; after a drop of C's link, the time from the link's return to the first new frame in
each direction. Goals (#18): on "4G weak" C receives A and B at ≥ 10 fps with ≤ 2 s frozen per
minute and ≤ 2 % concealment, A and B receive C with ≤ 2 s frozen per minute, and A and B encode
at most one keyframe per 5 s more than on a clean link; on 8 % loss ≤ 2 s frozen per minute and
≤ 3 % concealment in every direction; after a 5 s drop media is back everywhere within 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import check, loadavg, plot_path, smoke
from bench.server_process import ServerProcess, start_server
from tests.conftest import DEMO_USERS
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.webclient import sign_in
from tests.netshape import SERVER_ADDRESS, Host, LinkShape, NamespaceLoop, ShapedNetwork

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.25
#: A run of samples without a new frame at least this long counts as frozen (see the docstring).
GAP_S = 1.0
WARMUP_TIMEOUT_S = 45.0
JOIN_TIMEOUT_MS = 30_000
TIMEOUT = (300.0, 1800.0)
NAMES = ("A", "B", "C")
NEVER = 1e6  # a figure that could not be measured (media never came back): fails every goal
WEAK = "C"


@dataclass(frozen=True)
class Profile:
    name: str
    shape: LinkShape
    drop_s: float = 0.0  # a blackout of C's link, both ways, a third into the measured window


PROFILES = (
    Profile("clean", LinkShape()),
    Profile(
        "4g_weak",
        LinkShape(
            up_kbit=300, down_kbit=800, delay_ms=60, jitter_ms=20, up_loss=0.02, down_loss=0.02
        ),
    ),
    Profile("loss8", LinkShape(up_kbit=2000, down_kbit=2000, up_loss=0.08, down_loss=0.08)),
    Profile("drop5", LinkShape(), drop_s=5.0),
)
CAMERAS = ("fake", "clip")
CHECKS = (
    "weak_receives_fps_min",
    "weak_receives_frozen_s_per_min_max",
    "weak_receives_concealment_pct_max",
    "others_receive_weak_frozen_s_per_min_max",
    "ab_extra_keyframes_per_5s_max",
    "loss8_frozen_s_per_min_max",
    "loss8_concealment_pct_max",
    "drop5_recovery_s_max",
)

STATS_JS = """async () => {
  const ui = window.onedoorRoom; const pc = ui && ui.media && ui.media.pc;
  if (!pc) return null;
  const m = await import('/static/room-model.js');
  const out = {inbound: [], outbound: [], state: pc.connectionState, avail: 0};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out.inbound.push({peer: m.peerOfTrackId(s.trackIdentifier || ''), kind: s.kind,
        frames: s.framesDecoded || 0, freezes: s.freezeCount || 0, frozen: s.totalFreezesDuration || 0,
        concealed: s.concealedSamples || 0, samples: s.totalSamplesReceived || 0,
        packets: s.packetsReceived || 0, lost: s.packetsLost || 0, nacks: s.nackCount || 0,
        plis: s.pliCount || 0, height: s.frameHeight || 0,
        fec: s.fecPacketsReceived || 0});
    } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.outbound.push({plis: (s.pliCount || 0) + (s.firCount || 0), keyframes: s.keyFramesEncoded || 0,
        frames: s.framesEncoded || 0, bytes: s.bytesSent || 0, height: s.frameHeight || 0,
        limit: s.qualityLimitationReason || ''});
    } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      out.avail = s.availableOutgoingBitrate || 0;
    }
  });
  return out;
}"""

# Counters summed per (receiver, sender, kind) or per publisher; a counter that goes back
# (a rebuilt peer connection starts from zero) adds its new value.
INBOUND_KEYS = (
    "frames",
    "freezes",
    "frozen",
    "concealed",
    "samples",
    "packets",
    "lost",
    "nacks",
    "fec",
)
OUTBOUND_KEYS = ("plis", "keyframes", "frames", "bytes")


# ------------------------------------------------------------------------------ the camera


def write_clip(path: Path, *, width: int, height: int, fps: int, seconds: float) -> Path:
    """A Y4M clip that encodes like a real webcam: a moving gradient with per-frame noise
    (Chromium's fake pattern is flat and cheap to encode)."""
    rng = np.random.default_rng(7)
    frames = max(2, int(seconds * fps))
    y, x = np.mgrid[0:height, 0:width]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            luma = 110 + 60 * np.sin((x + 6 * i) / 37.0) * np.cos((y - 3 * i) / 29.0)
            luma += rng.normal(0, 9, size=luma.shape)
            chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
            out.write(b"FRAME\n")
            out.write(np.clip(luma, 0, 255).astype(np.uint8).tobytes())
            out.write(chroma.tobytes())
            out.write(chroma.tobytes())
    return path


def browser_in(netns: str, workdir: Path) -> str:
    """An executable that starts Chromium inside `netns` (its children stay there)."""
    script = workdir / f"chromium-{netns}"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {netns} {CHROMIUM} "$@"\n')
    script.chmod(0o755)
    return str(script)


# ------------------------------------------------------------------------------ one call


@dataclass
class Series:
    """Each page's samples: (t, stats) with t in seconds from the start of measuring."""

    samples: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)


async def api(page: Any, base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    resp = await page.request.post(base + path, data=body, headers={"X-CSRF-Token": csrf})
    if not resp.ok:
        raise RuntimeError(f"{path}: {resp.status} {await resp.text()}")
    answer: dict[str, Any] = await resp.json()
    return answer


async def join_room(host: Any, guests: list[tuple[str, Any]], base: str) -> None:
    """`host` (a mediator's page) opens a mediation room; each guest joins by its own link and
    is admitted from the lobby."""
    await sign_in(host, base, DEMO_USERS["mediator"])
    created = await api(host, base, "/api/sessions", {"kind": "mediation", "title": "bench"})
    await host.goto(f"{base}/rooms/{created['room_id']}")
    await host.wait_for_selector("#room[data-status=joined]", timeout=JOIN_TIMEOUT_MS)
    for name, page in guests:
        issued = await api(host, base, f"/api/sessions/{created['id']}/tokens",
                           {"display_name": name})  # fmt: skip
        await page.goto(base + issued["url"])
        await page.wait_for_selector("#prejoin[data-ready=true]", timeout=JOIN_TIMEOUT_MS)
        await page.click("#join-btn")
        await page.wait_for_selector("#room[data-status=lobby]", timeout=JOIN_TIMEOUT_MS)
        admit = host.locator(".lobby-list button[data-act=admit]").first
        await admit.wait_for(timeout=JOIN_TIMEOUT_MS)
        await admit.click()
        await page.wait_for_selector("#room[data-status=joined]", timeout=JOIN_TIMEOUT_MS)


async def _decoding(pages: dict[str, Any], ids: dict[str, str]) -> bool:
    """Every page has decoded video from both others."""
    for name, page in pages.items():
        stats = await page.evaluate(STATS_JS)
        if not stats:
            return False
        seen = {s["peer"] for s in stats["inbound"] if s["kind"] == "video" and s["frames"] > 0}
        if not {ids[o] for o in pages if o != name} <= seen:
            return False
    return True


async def _sample(pages: dict[str, Any], series: Series, t: float) -> None:
    got = await asyncio.gather(*(p.evaluate(STATS_JS) for p in pages.values()))
    for name, stats in zip(pages, got, strict=True):
        if stats:
            series.samples.setdefault(name, []).append((t, stats))


async def call(
    net: ShapedNetwork,
    hosts: dict[str, Host],
    profile: Profile,
    camera: list[str],
    measure_s: float,
    warmup_s: float,
    workdir: Path,
) -> dict[str, Any]:
    """Run on a loop inside the server's namespace (NamespaceLoop)."""
    from playwright.async_api import async_playwright

    server: ServerProcess = start_server(
        workdir / "server", host=SERVER_ADDRESS, ONEDOOR_MEDIA_HOST_ADDRESSES=SERVER_ADDRESS
    )
    args = [a for a in CHROMIUM_ARGS if a != "--allow-loopback-in-peer-connection"]
    args += [f"--unsafely-treat-insecure-origin-as-secure={server.base_url}", *camera]
    series = Series()
    try:
        async with async_playwright() as pw:
            browsers = [
                await pw.chromium.launch(
                    executable_path=browser_in(hosts[n].netns, workdir), args=args, headless=True
                )
                for n in NAMES
            ]
            pages = {}
            for name, browser in zip(NAMES, browsers, strict=True):
                context = await browser.new_context(viewport={"width": 1000, "height": 700})
                pages[name] = await context.new_page()
            await join_room(pages["A"], [(n, pages[n]) for n in NAMES[1:]], server.base_url)
            ids = {n: await p.evaluate("window.onedoorRoom.model.me") for n, p in pages.items()}
            warmed = False
            for _ in range(int(warmup_s / 0.5)):  # polled: getStats() has no event to await
                if warmed := await _decoding(pages, ids):
                    break
                await asyncio.sleep(0.5)
            t0 = time.monotonic()
            drop_at = measure_s / 3 if profile.drop_s else None
            dropped = False
            while (t := time.monotonic() - t0) < measure_s:
                if drop_at is not None and not dropped and t >= drop_at:
                    net.blackout(WEAK, profile.drop_s)
                    drop_at, dropped = t, True
                await _sample(pages, series, t)
                await asyncio.sleep(max(0.0, SAMPLE_S - (time.monotonic() - t0 - t)))
            shots = {}
            for name, page in pages.items():
                shot = workdir / f"{profile.name}-{name}.png"
                await page.screenshot(path=str(shot))
                shots[name] = str(shot)
            for browser in browsers:
                await browser.close()
    finally:
        server.stop()
    result = summarize(series, ids, measure_s, drop_at, profile.drop_s)
    result.update(warmed_up=warmed, screenshots=shots)
    return result


# ------------------------------------------------------------------------------ figures


def _totals(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: float(sum(r.get(k, 0) for r in rows)) for k in keys}


def _increase(series: list[dict[str, float]], key: str) -> float:
    """How much a counter grew over the samples; a drop (a new peer connection) restarts it."""
    total = 0.0
    for before, after in itertools.pairwise(series):
        a, b = before[key], after[key]
        total += b - a if b >= a else b
    return total


def _gaps(times: list[float], frames: list[float]) -> tuple[float, float]:
    """(total, longest) time in runs of ≥ GAP_S without a new frame."""
    total = longest = 0.0
    last_new = times[0] if times else 0.0
    for i in range(1, len(times)):
        if frames[i] != frames[i - 1] or i == len(times) - 1:
            gap = times[i] - last_new
            if gap >= GAP_S:
                total += gap
                longest = max(longest, gap)
            last_new = times[i]
    return total, longest


def _recovery(times: list[float], counts: list[float], back_at: float) -> float | None:
    """Seconds from `back_at` to the first sample after it that shows new media."""
    for i in range(1, len(times)):
        if times[i] > back_at and counts[i] != counts[i - 1]:
            return round(times[i] - back_at, 2)
    return None


def summarize(
    series: Series, ids: dict[str, str], measure_s: float, drop_at: float | None, drop_s: float
) -> dict[str, Any]:
    directions: dict[str, Any] = {}
    publishers: dict[str, Any] = {}
    timelines: dict[str, list[tuple[float, float]]] = {}
    for receiver, samples in series.samples.items():
        times = [t for t, _ in samples]
        span = max(times[-1] - times[0], SAMPLE_S) if times else measure_s
        outbound = [_totals(s["outbound"], OUTBOUND_KEYS) for _, s in samples]
        if outbound:
            publishers[receiver] = {
                "plis_received": _increase(outbound, "plis"),
                "keyframes_encoded": _increase(outbound, "keyframes"),
                "kbit_s": round(_increase(outbound, "bytes") * 8 / span / 1000, 1),
                # what the encoder said limited it at the end: bandwidth, cpu or none
                "limit_end": last_out[0]["limit"]
                if (last_out := samples[-1][1]["outbound"])
                else "",
                "height_end": last_out[0]["height"] if last_out else 0,
                # the browser's own send-side estimate at the end (REMB from the server)
                "available_kbit_s_end": round(samples[-1][1].get("avail", 0) / 1000),
                # what it sent over the last quarter of the window
                "kbit_s_end": round(
                    _increase(outbound[len(outbound) * 3 // 4 :], "bytes") * 8 / (span / 4) / 1000,
                    1,
                ),
            }
        for sender, peer in ids.items():
            if sender == receiver:
                continue
            video = _stream(samples, peer, "video")
            audio = _stream(samples, peer, "audio")
            frames = [v["frames"] for v in video]
            gaps_total, gaps_longest = _gaps(times, frames)
            chrome_frozen = _increase(video, "frozen")
            frozen = max(chrome_frozen, gaps_total)
            samples_heard = _increase(audio, "samples")
            entry: dict[str, Any] = {
                "fps": round(_increase(video, "frames") / span, 1),
                "frozen_s": round(frozen, 2),
                "frozen_s_per_min": round(frozen * 60 / span, 2),
                "chrome_freezes": int(_increase(video, "freezes")),
                "chrome_frozen_s": round(chrome_frozen, 2),
                "longest_gap_s": round(gaps_longest, 2),
                "concealment_pct": round(100 * _increase(audio, "concealed") / samples_heard, 2)
                if samples_heard
                else 100.0,
                "video_packets_lost": int(_increase(video, "lost")),
                "nacks_sent": int(_increase(video, "nacks")),
                # Opus in-band FEC packets the browser received, and the audio packets it lost
                "audio_fec_packets": int(_increase(audio, "fec")),
                "audio_packets_lost": int(_increase(audio, "lost")),
            }
            if drop_at is not None:
                back = drop_at + drop_s
                entry["video_back_s"] = _recovery(times, frames, back)
                entry["audio_back_s"] = _recovery(times, [a["packets"] for a in audio], back)
            directions[f"{receiver}<-{sender}"] = entry
            timelines[f"{receiver}<-{sender}"] = _timeline(times, frames)
    return {"directions": directions, "publishers": publishers, "measured_s": round(measure_s, 1),
            "fps_timeline": timelines}  # fmt: skip


def _stream(
    samples: list[tuple[float, dict[str, Any]]], peer: str, kind: str
) -> list[dict[str, float]]:
    """The inbound counters of `peer`'s `kind` stream in each sample."""
    return [
        _totals([r for r in s["inbound"] if r["peer"] == peer and r["kind"] == kind], INBOUND_KEYS)
        for _, s in samples
    ]


def _timeline(times: list[float], frames: list[float]) -> list[tuple[float, float]]:
    """fps in 1 s bins (every 4th sample), for the plot."""
    points = list(zip(times, frames, strict=True))
    return [
        (round(t2, 2), round(max(0.0, f2 - f1) / (t2 - t1), 1))
        for (t1, f1), (t2, f2) in zip(points[::4], points[4::4], strict=False)
    ]


# ------------------------------------------------------------------------------ the benchmark


def run_profile(
    profile: Profile, camera: list[str], measure_s: float, warmup_s: float, workdir: Path
) -> dict[str, Any]:
    """One call on `profile`'s link (blocking: run it in a thread)."""
    workdir.mkdir(parents=True, exist_ok=True)
    bound_s = measure_s + warmup_s + 240
    with ShapedNetwork(max_s=bound_s) as net:
        # the server's own loopback: its media workers and the bench's port probe use it
        subprocess.run(["ip", "-n", net.server.netns, "link", "set", "lo", "up"], check=True)
        hosts = {
            "A": net.add_participant("A"),
            "B": net.add_participant("B"),
            "C": net.add_participant("C", profile.shape),
        }
        loop = NamespaceLoop(net.server)
        try:
            result = loop.run(
                call(net, hosts, profile, camera, measure_s, warmup_s, workdir), bound_s
            )
        finally:
            loop.stop()
    result["relay"] = net.relay_counters().get(WEAK, "")
    return result


def _worst(values: list[float | None], *, highest: bool = True) -> float:
    """The worst of the measured values; a missing one (never back) is NEVER, the worst."""
    measured = [v for v in values if v is not None]
    if not measured or len(measured) < len(values):
        return NEVER if highest else 0.0
    return max(measured) if highest else min(measured)


def goals(runs: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The #18 goals, each the worst over the cameras measured."""
    fps_in: list[float | None] = []
    weak_in: list[float | None] = []
    weak_conc: list[float | None] = []
    weak_out: list[float | None] = []
    ab_extra: list[float | None] = []
    loss_frozen: list[float | None] = []
    loss_conc: list[float | None] = []
    back: list[float | None] = []
    for by_profile in runs.values():
        if "4g_weak" in by_profile:
            weak = by_profile["4g_weak"]
            d = weak["directions"]
            fps_in += [d["C<-A"]["fps"], d["C<-B"]["fps"]]
            weak_in += [d[k]["frozen_s_per_min"] for k in ("C<-A", "C<-B")]
            weak_conc += [d[k]["concealment_pct"] for k in ("C<-A", "C<-B")]
            weak_out += [d[k]["frozen_s_per_min"] for k in ("A<-C", "B<-C")]
            if "clean" in by_profile:
                clean = by_profile["clean"]["publishers"]
                fifths = weak["measured_s"] / 5
                ab_extra += [
                    (weak["publishers"][p]["keyframes_encoded"] - clean[p]["keyframes_encoded"])
                    / fifths
                    for p in ("A", "B")
                ]
        if "loss8" in by_profile:
            d = by_profile["loss8"]["directions"]
            loss_frozen += [v["frozen_s_per_min"] for v in d.values()]
            loss_conc += [v["concealment_pct"] for v in d.values()]
        if "drop5" in by_profile:
            d = by_profile["drop5"]["directions"]
            back += [v["video_back_s"] for k, v in d.items() if WEAK in k]
    return [
        check("weak_receives_fps_min", _worst(fps_in, highest=False), ">= 10", "fps"),
        check("weak_receives_frozen_s_per_min_max", _worst(weak_in), "<= 2", "s/min"),
        check("weak_receives_concealment_pct_max", _worst(weak_conc), "<= 2", "%"),
        check("others_receive_weak_frozen_s_per_min_max", _worst(weak_out), "<= 2", "s/min"),
        check("ab_extra_keyframes_per_5s_max", _worst(ab_extra), "<= 1", "keyframes"),
        check("loss8_frozen_s_per_min_max", _worst(loss_frozen), "<= 2", "s/min"),
        check("loss8_concealment_pct_max", _worst(loss_conc), "<= 3", "%"),
        check("drop5_recovery_s_max", _worst(back), "<= 2", "s"),
    ]


def plot(runs: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """fps per direction over time, a panel per profile, for the webcam-like camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    camera = "clip" if "clip" in runs else next(iter(runs))
    profiles = list(runs[camera])
    fig, axes = plt.subplots(1, len(profiles), figsize=(4 * len(profiles), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), profiles, strict=True):
        for direction, line in sorted(runs[camera][name]["fps_timeline"].items()):
            if line:
                style = "-" if WEAK in direction else ":"
                ax.plot(*zip(*line, strict=True), style, label=direction.replace("<-", " ← "))
        ax.set_title(f"{name} ({camera} camera)")
        ax.set_xlabel("s")
    np.atleast_1d(axes)[0].set_ylabel("frames decoded per s")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


async def run(scale: float = 1.0) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="onedoor-bench-network-"))
    tiny = smoke(scale)
    measure_s = 4.0 if tiny else max(12.0, 60.0 * scale)
    cameras = ("clip",) if tiny else CAMERAS
    clip = write_clip(
        workdir / "camera.y4m",
        width=320 if tiny else 640,
        height=240 if tiny else 480,
        fps=15,
        seconds=1 if tiny else 4,
    )
    camera_args = {"fake": [], "clip": [f"--use-file-for-fake-video-capture={clip}"]}
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    load = [loadavg()]
    for camera in cameras:
        for profile in PROFILES:
            if tiny and profile.drop_s:
                profile = Profile(profile.name, profile.shape, drop_s=1.0)
            print(f"bench network: {profile.name}, {camera} camera", file=sys.stderr, flush=True)
            one = await asyncio.to_thread(
                run_profile,
                profile,
                camera_args[camera],
                measure_s,
                10.0 if tiny else WARMUP_TIMEOUT_S,
                workdir / f"{camera}-{profile.name}",
            )
            runs.setdefault(camera, {})[profile.name] = one
            summary = {k: v for k, v in one.items() if k not in ("fps_timeline", "screenshots")}
            print(f"bench network: {json.dumps(summary)}", file=sys.stderr, flush=True)
            load.append(loadavg())
    figure = plot_path(ROOT / "docs" / "img" / "network_fps.png")
    with contextlib.suppress(ImportError):
        plot(runs, figure)
    return {
        "bench": "network",
        "measured_s_per_profile": measure_s,
        "runs": runs,
        "loadavg_per_run": load,
        "plot": str(figure),
        "checks": goals(runs),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)),
                     ensure_ascii=False, indent=2))  # fmt: skip
