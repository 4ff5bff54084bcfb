"""A pre-encoded VP8 + Opus clip, made once in memory, and tracks that serve it without encoding.

Video: `bench.sfu.encode_clip` (the media engineer's 640x480@15 VP8 ~500 kbps moving pattern,
60 frames, a keyframe at frame 0 only). Audio: a 1 s tone as 50 Opus packets of 20 ms.

`ClipTrack` paces packets in real time with ever-increasing pts (never restarting at 0, unlike
`MediaPlayer(decode=False, loop=True)`), so the RTP timestamps stay monotonic over loops. Its
`request_keyframe()` (hooked to the sender's PLI/FIR) jumps back to the clip's keyframe, at most
once a second, so a subscriber that joins late gets a decodable picture quickly; a decoder
accepts the jump because the stream restarts at a keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack

VIDEO_FPS = 15
VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
AUDIO_FPS = AUDIO_RATE // AUDIO_FRAME
KEYFRAME_MIN_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Clip:
    video: list[bytes]
    audio: list[bytes]

    @property
    def video_kbps(self) -> float:
        return sum(map(len, self.video)) * 8 * VIDEO_FPS / len(self.video) / 1000

    @property
    def audio_kbps(self) -> float:
        return sum(map(len, self.audio)) * 8 * AUDIO_FPS / len(self.audio) / 1000


def encode_opus(seconds: float = 1.0, bitrate: int = 32_000) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, AUDIO_RATE)
    frames = int(seconds * AUDIO_FPS)
    t = np.arange(frames * AUDIO_FRAME) / AUDIO_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) * 32767
    samples = tone.astype(np.int16)
    out: list[bytes] = []
    for i in range(frames):
        frame = av.AudioFrame.from_ndarray(
            samples[i * AUDIO_FRAME : (i + 1) * AUDIO_FRAME].reshape(1, -1),
            format="s16",
            layout="mono",
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * AUDIO_FRAME
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out[:frames]


def make_clip() -> Clip:
    from bench.sfu import encode_clip  # the media engineer's VP8 clip (reused, not copied)

    return Clip(video=encode_clip(), audio=encode_opus())


class ClipTrack(MediaStreamTrack):
    """Serves `packets` at `rate` per second as av.Packets (the sender packs, never encodes)."""

    def __init__(self, kind: str, packets: list[bytes], rate: int, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.rate = rate
        self.step = clock // rate
        self.time_base = fractions.Fraction(1, clock)
        self.n = 0  # packets sent: the pts counter, never reset
        self.index = 0  # position in the clip
        self.start: float | None = None
        self.keyframes_sent_on_request = 0
        self._last_keyframe_request = -1e9

    @classmethod
    def video(cls, clip: Clip) -> ClipTrack:
        return cls("video", clip.video, VIDEO_FPS, VIDEO_CLOCK)

    @classmethod
    def audio(cls, clip: Clip) -> ClipTrack:
        return cls("audio", clip.audio, AUDIO_FPS, AUDIO_RATE)

    def request_keyframe(self) -> None:
        now = time.monotonic()
        if self.kind == "video" and now - self._last_keyframe_request >= KEYFRAME_MIN_INTERVAL_S:
            self._last_keyframe_request = now
            self.index = 0
            self.keyframes_sent_on_request += 1

    async def recv(self) -> av.Packet[Any]:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / self.rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.packets[self.index % len(self.packets)])
        packet.pts = packet.dts = self.n * self.step
        packet.time_base = self.time_base
        self.n += 1
        self.index = (self.index + 1) % len(self.packets)
        return packet
