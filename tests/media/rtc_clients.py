"""Real aiortc client peers on loopback for media tests, and a codec-call counter.

A `TestClient` plays the browser: it offers its own synthetic tracks (sendonly), answers server
offers (the polite peer) under one lock, and counts what it receives per publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiortc.codecs.opus
import aiortc.codecs.vpx
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from media.interfaces import MediaEvent, PeerDescription, PublishGrant, SessionDescription
from media.sfu import SfuMediaNode

AUDIO_RATE = 48000
AUDIO_SAMPLES = 960


class FrameGate:
    """Lets a source track make frames only while allowed, so a test knows exactly which frames
    its peer sent. Open (unlimited) until `hold()`; then `allow(n)` lets n more frames through.
    `idle` means the track's sender is blocked asking for a frame: everything it was given
    before has been encoded and sent (aiortc's sender asks for the next frame only then)."""

    def __init__(self) -> None:
        self._allowed: int | None = None  # None: open
        self._changed = asyncio.Event()
        self.waiting = False
        self.passed = 0

    def hold(self) -> None:
        self._allowed = 0

    def allow(self, frames: int) -> None:
        self._allowed = (self._allowed or 0) + frames
        self._changed.set()

    @property
    def idle(self) -> bool:
        return self.waiting and self._allowed == 0

    async def wait(self) -> None:
        while self._allowed is not None and self._allowed <= 0:
            self.waiting = True
            self._changed.clear()
            await self._changed.wait()
        self.waiting = False
        if self._allowed is not None:
            self._allowed -= 1
        self.passed += 1


class PatternVideoTrack(VideoStreamTrack):
    """Moving gradient, 320x240 at 30 fps (aiortc's VideoStreamTrack pacing)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        x = np.linspace(0, 255, width, dtype=np.uint16)
        self._base = np.tile(x, (height, 1))
        self._n = 0
        self.frames = 0
        self.gate = FrameGate()

    async def recv(self) -> av.VideoFrame:
        await self.gate.wait()
        pts, time_base = await self.next_timestamp()
        self._n += 1
        plane = ((self._base + self._n * 4) % 256).astype(np.uint8)
        rgb = np.stack([plane, np.roll(plane, 40, axis=1), 255 - plane], axis=2)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        self.frames += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone (so the audio-level extension reports speech), 20 ms frames."""

    kind = "audio"

    def __init__(self, amplitude: float = 0.3) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None
        self.gate = FrameGate()

    async def recv(self) -> av.AudioFrame:
        await self.gate.wait()
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / AUDIO_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(AUDIO_SAMPLES) + self._pts) / AUDIO_RATE
        samples = (np.sin(2 * math.pi * 440 * t) * 32767 * self.amplitude).astype(np.int16)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._pts += AUDIO_SAMPLES
        return frame


@dataclass
class Received:
    kind: str
    publisher: str
    frames: int = 0
    first_frame_at: float | None = None
    keyframe_sizes: list[tuple[int, int]] = field(default_factory=list)


class TestClient:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        node: Any,
        room_id: str,
        peer_id: str,
        *,
        video: bool = True,
        audio: bool = True,
        grant: PublishGrant | None = None,
    ) -> None:
        self.node = node
        self.room_id = room_id
        self.peer_id = peer_id
        self.grant = grant or PublishGrant()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.lock = asyncio.Lock()
        self.video = PatternVideoTrack() if video else None
        self.audio = ToneAudioTrack() if audio else None
        self.received: dict[str, Received] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        publisher = track.id.split(".")[0]
        record = self.received[track.id] = Received(track.kind, publisher)
        self._tasks.append(asyncio.create_task(self._consume(track, record)))

    async def _consume(self, track: MediaStreamTrack, record: Received) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if record.first_frame_at is None:
                    record.first_frame_at = time.monotonic()
                record.frames += 1
                if isinstance(frame, av.VideoFrame) and record.frames == 1:
                    record.keyframe_sizes.append((frame.width, frame.height))

    async def join(self) -> None:
        async with self.lock:
            for track in (self.video, self.audio):
                if track is not None:
                    self.pc.addTransceiver(track, direction="sendonly")
            if self.video is None and self.audio is None:
                self.pc.addTransceiver("audio", direction="recvonly")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            answer = await self.node.accept_offer(
                room_id=self.room_id,
                peer_id=self.peer_id,
                offer=SessionDescription("offer", self.pc.localDescription.sdp),
                ice_servers=[],
                grant=self.grant,
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))

    async def on_server_offer(self, description: SessionDescription) -> None:
        async with self.lock:
            if self.pc.signalingState == "closed":
                return  # gone: like a browser whose tab closed, it answers nothing
            await self.pc.setRemoteDescription(RTCSessionDescription(description.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.node.accept_answer(
                room_id=self.room_id,
                peer_id=self.peer_id,
                answer=SessionDescription("answer", self.pc.localDescription.sdp),
            )

    def frames_from(self, publisher: str, kind: str) -> int:
        return sum(
            r.frames for r in self.received.values() if r.publisher == publisher and r.kind == kind
        )

    def publishers(self, kind: str, min_frames: int = 1) -> set[str]:
        totals: dict[str, int] = defaultdict(int)
        for r in self.received.values():
            if r.kind == kind:
                totals[r.publisher] += r.frames
        return {p for p, n in totals.items() if n >= min_frames}

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class EventPump:
    """Reads node.events(): delivers server offers to clients, keeps everything else."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.clients: dict[tuple[str, str], TestClient] = {}
        self.events: list[MediaEvent] = []
        self.errors: list[BaseException] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run())

    def add(self, client: TestClient) -> TestClient:
        self.clients[(client.room_id, client.peer_id)] = client
        return client

    async def _run(self) -> None:
        async for event in self.node.events():
            self.events.append(event)
            if isinstance(event, PeerDescription):
                client = self.clients.get((event.room_id, event.peer_id))
                if client is not None:
                    self._deliveries.add(
                        asyncio.create_task(self._deliver(client, event.description))
                    )

    async def _deliver(self, client: TestClient, description: SessionDescription) -> None:
        try:
            await client.on_server_offer(description)
        except Exception as exc:  # surfaced by tests through .errors
            self.errors.append(exc)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


class CodecCalls:
    """Counts VP8/Opus encode and decode calls, attributing each to the relay or to a client.

    A decode belongs to the relay if it runs in a receiver thread whose output queue is a
    server-side remote track's queue; an encode belongs to the relay if the encoder instance
    is one of the server senders' encoders.
    """

    def __init__(self) -> None:
        self.encoders: list[tuple[Any, str]] = []
        self.decode_queues: list[tuple[Any, str]] = []
        self._saved: list[tuple[type, str, Any]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[CodecCalls]:
        codecs: tuple[tuple[type[Any], str], ...] = (
            (aiortc.codecs.vpx.Vp8Encoder, "video"),
            (aiortc.codecs.opus.OpusEncoder, "audio"),
        )
        for cls, kind in codecs:
            self._wrap(cls, "encode", kind, encode=True)
        decoders: tuple[tuple[type[Any], str], ...] = (
            (aiortc.codecs.vpx.Vp8Decoder, "video"),
            (aiortc.codecs.opus.OpusDecoder, "audio"),
        )
        for cls, kind in decoders:
            self._wrap(cls, "decode", kind, encode=False)
        try:
            yield self
        finally:
            for cls, name, original in self._saved:
                setattr(cls, name, original)

    def _wrap(self, cls: type, name: str, kind: str, *, encode: bool) -> None:
        original = getattr(cls, name)
        calls = self

        def wrapper(this: Any, *args: Any, **kwargs: Any) -> Any:
            if encode:
                calls.encoders.append((this, kind))
            else:
                thread_args: tuple[Any, ...] = getattr(threading.current_thread(), "_args", ())
                queue = thread_args[2] if len(thread_args) > 2 else None
                calls.decode_queues.append((queue, kind))
            return original(this, *args, **kwargs)

        self._saved.append((cls, name, original))
        setattr(cls, name, wrapper)

    def relay_calls(self, node: SfuMediaNode) -> dict[str, int]:
        relay_encoders = set()
        relay_queues = set()
        for room in node._rooms.values():
            for session in room.peers.values():
                for transceiver in session.pc.getTransceivers():
                    encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
                    if encoder is not None:
                        relay_encoders.add(id(encoder))
                    track = transceiver.receiver.track
                    if track is not None:
                        relay_queues.add(id(getattr(track, "_queue")))  # noqa: B009
        result = {"video_encode": 0, "audio_encode": 0, "video_decode": 0, "audio_decode": 0}
        for encoder, kind in self.encoders:
            if id(encoder) in relay_encoders:
                result[f"{kind}_encode"] += 1
        for queue, kind in self.decode_queues:
            if id(queue) in relay_queues:
                result[f"{kind}_decode"] += 1
        result["relay_encoders_seen"] = len(relay_encoders)
        result["client_video_decodes"] = sum(1 for q, k in self.decode_queues if k == "video")
        return result


async def receive_event(pump: EventPump, kind: type, timeout_s: float, **match: Any) -> Any:
    def find() -> Any:
        for event in pump.events:
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                return event
        return None

    await wait_until(lambda: find() is not None, timeout_s, f"{kind.__name__} {match}")
    return find()
