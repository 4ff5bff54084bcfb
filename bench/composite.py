"""Composite benchmark: CPU to make the one playable MP4 of a 4-person session.

Input like media/recorder.py writes it: per participant one VP8 WebM (bench.sfu.encode_clip,
640x480@15 ~500 kbps, looped from its keyframe) and one Opus WebM (bench.media_clip, 20 ms
packets), starting 0, 1, 2 and 3 s apart. server.sessions.composite.compose makes the MP4
(2x2 grid with captions and clock, mixed audio, H.264 veryfast + AAC); its CPU seconds
(all threads) over the session's length is the ratio, goal <= 0.25 (a 4-minute composite per
minute of CPU on one core). The output is decoded: its duration within 0.5 s of the session
and its audio and video ending within 80 ms of each other.

    onedoor bench composite [--scale 0.5]     (scale 1: a 60 s session; 1280x720 measured too)
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av

from bench.common import check, smoke
from bench.media_clip import encode_opus
from bench.sfu import FPS, encode_clip
from server.sessions.composite import SIZE_LARGE, SIZE_SMALL, Person, Track, compose

PEOPLE = 4
STAGGER_S = 1.0
CHECKS = ("cpu_over_real_time", "duration_error_s", "av_drift_end_ms")
TIMEOUT = (240.0, 900.0)
T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
MS = Fraction(1, 1000)


def _write_video(path: Path, clip: list[bytes], seconds: float) -> None:
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_mux_stream("vp8", width=640, height=480)
        stream.time_base = MS
        for i in range(round(seconds * FPS)):
            packet = av.Packet(clip[i % len(clip)])
            packet.stream = stream
            packet.time_base = MS
            packet.pts = packet.dts = round(i * 1000 / FPS)
            packet.is_keyframe = i % len(clip) == 0
            out.mux(packet)


def _write_audio(path: Path, packets: list[bytes], seconds: float) -> None:
    from media.recorder import opus_head

    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000, layout="stereo")
        stream.codec_context.extradata = opus_head()
        stream.time_base = MS
        for i in range(round(seconds * 50)):
            packet = av.Packet(packets[i % len(packets)])
            packet.stream = stream
            packet.time_base = MS
            packet.pts = packet.dts = i * 20
            out.mux(packet)


def make_session(directory: Path, seconds: float) -> tuple[list[Track], list[Person], float]:
    """4 participants' tracks of `seconds` each, staggered; returns the session length too."""
    clip, opus = encode_clip(), encode_opus(1.0)
    tracks, people = [], []
    roles = ("mediator", "party", "party", "agent")
    for i in range(PEOPLE):
        start = T0 + timedelta(seconds=i * STAGGER_S)
        v, a = directory / f"p{i}-video.webm", directory / f"p{i}-audio.webm"
        _write_video(v, clip, seconds)
        _write_audio(a, opus, seconds)
        tracks += [
            Track(v, f"p{i}", "video", start, seconds),
            Track(a, f"p{i}", "audio", start, seconds),
        ]
        people.append(Person(f"p{i}", f"参与人{i + 1}", roles[i]))
    return tracks, people, seconds + (PEOPLE - 1) * STAGGER_S


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def probe(path: Path) -> tuple[float, float, float]:
    """(container duration, video end, audio end) in seconds, by decoding the MP4."""
    video_end = audio_end = 0.0
    with av.open(str(path)) as f:
        duration = (f.duration or 0) / 1e6
        vs, aus = f.streams.video[0], f.streams.audio[0]
        for frame in f.decode(vs, aus):
            if isinstance(frame, av.AudioFrame) and frame.time is not None:
                audio_end = max(audio_end, frame.time + frame.samples / frame.sample_rate)
            elif isinstance(frame, av.VideoFrame) and frame.time is not None:
                video_end = max(video_end, frame.time + 1 / FPS)
    return duration, video_end, audio_end


def measure(tracks: list[Track], people: list[Person], out: Path, size: tuple[int, int]) -> float:
    """CPU seconds (every thread of this process) to compose."""
    before = _cpu()
    compose(tracks, people, out, tz=ZoneInfo("Asia/Shanghai"), size=size)
    return _cpu() - before


def _run(scale: float) -> dict[str, Any]:
    seconds = 2.0 if smoke(scale) else max(10.0, 60.0 * scale)
    with tempfile.TemporaryDirectory(prefix="bench-composite-") as tmp:
        d = Path(tmp)
        tracks, people, session_s = make_session(d, seconds)
        out = d / "composite.mp4"
        cpu = measure(tracks, people, out, SIZE_SMALL)
        duration, video_end, audio_end = probe(out)
        large: dict[str, float] = {}
        if not smoke(scale):
            cpu_large = measure(tracks, people, d / "large.mp4", SIZE_LARGE)
            large = {"cpu_s": round(cpu_large, 2), "ratio": round(cpu_large / session_s, 3)}
    ratio = cpu / session_s
    drift_ms = abs(video_end - audio_end) * 1000
    print(
        f"composite: {cpu:.2f} CPU s for a {session_s:.0f} s session: ratio {ratio:.3f}",
        file=sys.stderr,
    )
    return {
        "bench": "composite",
        "input": f"{PEOPLE} x (VP8 640x480@15 + Opus) WebM, staggered {STAGGER_S:.0f} s",
        "session_s": session_s,
        "output": f"{SIZE_SMALL[0]}x{SIZE_SMALL[1]}@{FPS} H.264 veryfast + AAC",
        "cpu_s": round(cpu, 2),
        "cpu_s_per_media_minute": round(cpu / session_s * 60, 2),
        "large_1280x720": large,
        "decoded": {
            "duration_s": round(duration, 3),
            "video_end_s": round(video_end, 3),
            "audio_end_s": round(audio_end, 3),
        },
        "checks": [
            check("cpu_over_real_time", ratio, "<= 0.25", "x"),
            check("duration_error_s", abs(duration - session_s), "<= 0.5", "s"),
            check("av_drift_end_ms", drift_ms, "<= 80", "ms"),
        ],
    }


async def run(scale: float = 1.0) -> dict[str, Any]:
    return await asyncio.to_thread(_run, scale)
