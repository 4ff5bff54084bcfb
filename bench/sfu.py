"""SFU benchmark: server CPU per forwarded stream, passthrough vs aiortc MediaRelay
(decode once, re-encode per subscriber), in one run. Not in CI.

The server runs in one worker process (`WorkerPoolMediaNode(workers=1)`), so its CPU is read
from that process alone. Load clients live in this process and are cheap: each publishes a
pre-encoded 640x480@15 VP8 clip plus a 20 ms Opus clip (bench/media_clip.py's tone) from memory
with ever-increasing pts, and counts received frames through passthrough sinks, without
decoding. A "stream" is one forwarded (publisher, subscriber) pair: its video plus its audio.
Room 8 is also run video only (the figure before audio was added) as a raw field.

    python -m bench.sfu [--scale 0.5]      # prints the JSON report
    python -m bench.sfu --hold 60          # room 8 only, prints the worker pid, holds the load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import socket
import time
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay

from bench import media_clip
from bench.common import smoke
from media import adapter
from media.forwarding import ForwardedTrack, TrackForwarder
from media.interfaces import PeerDescription, PublishGrant, SessionDescription
from media.sfu import SfuMediaNode
from media.workers import WorkerPoolMediaNode

FPS = 15
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "reencode_over_passthrough_cpu_per_stream",
    "room8_server_cores",
    "room8_frames_delivered",
)
TIMEOUT = (600.0, 900.0)  # overall bound in s: fixed + per unit of scale
WIDTH, HEIGHT = 640, 480
BITRATE_BPS = 500_000
CLIP_FRAMES = 60  # one keyframe every 4 s when the clip loops


def encode_clip(frames: int = CLIP_FRAMES) -> list[bytes]:
    """A moving test pattern as VP8 frames; the first is a keyframe."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = BITRATE_BPS
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    codec.gop_size = frames
    x = np.linspace(0, 255, WIDTH, dtype=np.uint16)
    base = np.tile(x, (HEIGHT, 1))
    out: list[bytes] = []
    for i in range(frames):
        plane = ((base + i * 6) % 256).astype(np.uint8)
        rgb = np.stack([plane, np.roll(plane, 80, axis=1), 255 - plane], axis=2)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out[:frames]


class ClipTrack(MediaStreamTrack):
    """Pre-encoded VP8 packets from memory, paced at FPS, pts always increasing."""

    kind = "video"

    def __init__(self, clip: list[bytes]) -> None:
        super().__init__()
        self.clip = clip
        self.n = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.clip[self.n % len(self.clip)])
        packet.pts = self.n * (90000 // FPS)
        packet.time_base = fractions.Fraction(1, 90000)
        self.n += 1
        return packet


CLIENT_RCVBUF = 4 << 20


def grow_receive_buffers(pc: RTCPeerConnection) -> None:
    """Load clients only: a 4 MB UDP receive buffer (capped by net.core.rmem_max) on each
    client socket. The 8 clients of a room share this one process; with the default ~200 KB
    (≈90 loopback datagrams) a 100 ms stall of this process on a busy 2-core machine drops
    packets, the NACK/retransmit traffic grows and delivery collapses: a load client artifact,
    not server behaviour (real clients are separate machines). The server keeps the defaults."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        gatherer = transport.transport.iceGatherer if transport is not None else None
        for protocol in getattr(getattr(gatherer, "_connection", None), "_protocols", []):
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)


class LoadClient:
    def __init__(
        self, node: Any, room: str, peer: str, clip: list[bytes], audio: list[bytes] | None
    ) -> None:
        self.node, self.room, self.peer = node, room, peer
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = ClipTrack(clip)
        self.audio_track = (
            media_clip.ClipTrack("audio", audio, media_clip.AUDIO_FPS, media_clip.AUDIO_RATE)
            if audio
            else None
        )
        self.frames: dict[str, int] = {}  # video frames received per remote track
        self.audio_frames: dict[str, int] = {}
        self.lock = asyncio.Lock()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        counters = self.frames if track.kind == "video" else self.audio_frames
        counters[track.id] = 0

        track_id = track.id

        def count(packet: av.Packet[Any], arrival: float, layer: object = None) -> None:
            counters[track_id] += 1

        adapter.attach_sink(track, adapter.PassthroughSink(count, lambda: None))

    async def join(self) -> None:
        async with self.lock:
            self.pc.addTransceiver(self.track, direction="sendonly")
            if self.audio_track is not None:
                self.pc.addTransceiver(self.audio_track, direction="sendonly")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            answer = await self.node.accept_offer(
                room_id=self.room,
                peer_id=self.peer,
                offer=SessionDescription("offer", self.pc.localDescription.sdp),
                ice_servers=[],
                grant=PublishGrant(audio=self.audio_track is not None),
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
        grow_receive_buffers(self.pc)

    async def on_offer(self, description: SessionDescription) -> None:
        async with self.lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(description.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.node.accept_answer(
                room_id=self.room,
                peer_id=self.peer,
                answer=SessionDescription("answer", self.pc.localDescription.sdp),
            )


# ------------------------------------------------------------------ re-encoding baseline


class _RelayedTrack(ForwardedTrack):
    """A MediaRelay subscription: decoded frames, so the subscriber's sender re-encodes."""

    def __init__(self, forwarder: TrackForwarder, subscriber_id: str, source: Any) -> None:
        super().__init__(forwarder, subscriber_id)
        self.source = source

    async def recv(self) -> Any:
        return await self.source.recv()

    def stop(self) -> None:
        self.source.stop()
        super().stop()


class ReencodeMediaNode(SfuMediaNode):
    """aiortc's usual relay: receivers decode, MediaRelay fans out, each sender encodes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._relay = MediaRelay()
        self._sources: dict[str, MediaStreamTrack] = {}

    def _attach_publisher_track(self, track: MediaStreamTrack, forwarder: TrackForwarder) -> None:
        self._sources[forwarder.key] = track  # not passthrough: aiortc decodes it

    def _subscriber_track(self, forwarder: TrackForwarder, subscriber_id: str) -> ForwardedTrack:
        source = self._relay.subscribe(self._sources[forwarder.key])
        return _RelayedTrack(forwarder, subscriber_id, source)


# ------------------------------------------------------------------ runner


async def measure_room(
    mode: str,
    size: int,
    window_s: float,
    clip: list[bytes],
    audio: list[bytes] | None,
    hold_s: float = 0.0,
) -> dict[str, Any]:
    node_class = (
        "media.sfu:SfuMediaNode" if mode == "passthrough" else "bench.sfu:ReencodeMediaNode"
    )
    adapter.install_passthrough()
    adapter.restrict_host_addresses(["127.0.0.1"])
    async with WorkerPoolMediaNode(
        workers=1, host_addresses=["127.0.0.1"], node_class=node_class
    ) as pool:
        clients = {f"p{i}": LoadClient(pool, "bench", f"p{i}", clip, audio) for i in range(size)}

        offers: set[asyncio.Task[None]] = set()

        async def pump() -> None:
            async for event in pool.events():
                if isinstance(event, PeerDescription):
                    offers.add(
                        asyncio.create_task(clients[event.peer_id].on_offer(event.description))
                    )

        def all_flowing() -> bool:
            return all(
                len(c.frames) == size - 1
                and min(c.frames.values(), default=0) > 0
                and (
                    audio is None
                    or (len(c.audio_frames) == size - 1 and min(c.audio_frames.values()) > 0)
                )
                for c in clients.values()
            )

        pump_task = asyncio.create_task(pump())
        for client in clients.values():
            await client.join()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all_flowing():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # settle
        if hold_s:
            print(f"worker pid {pool.worker_pids()[0]}: holding the load {hold_s:g} s", flush=True)
            await asyncio.sleep(hold_s)
        before = {id(c): (dict(c.frames), dict(c.audio_frames)) for c in clients.values()}
        forwarded_before = sum(x.forwarded for x in await pool.subscription_stats("bench"))
        cpu_before = await pool.worker_cpu_s()
        start = time.monotonic()
        await asyncio.sleep(window_s)
        elapsed = time.monotonic() - start
        cpu_s = await pool.worker_cpu_s() - cpu_before
        subscriptions = await pool.subscription_stats("bench")
        server_dropped = sum(x.dropped for x in subscriptions)
        forwarded = sum(x.forwarded for x in subscriptions) - forwarded_before
        delivered = sum(
            n - before[id(c)][0].get(t, 0) for c in clients.values() for t, n in c.frames.items()
        )
        audio_delivered = sum(
            n - before[id(c)][1].get(t, 0)
            for c in clients.values()
            for t, n in c.audio_frames.items()
        )
        stalled = (
            sum(
                n == before[id(c)][0].get(t, 0)
                for c in clients.values()
                for t, n in c.frames.items()
            )
            + size * (size - 1)
            - sum(len(c.frames) for c in clients.values())
        )
        states = sorted({c.pc.connectionState for c in clients.values()})
        streams = size * (size - 1)
        expected = streams * FPS * elapsed
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump_task
        # renegotiations still in flight (a loaded worker answers late) end with the clients;
        # their outcomes are collected, so none is left as an unretrieved task exception
        for task in offers:
            task.cancel()
        outcomes = await asyncio.gather(*offers, return_exceptions=True)
        offer_errors = sum(isinstance(o, Exception) for o in outcomes)  # not CancelledError
        for client in clients.values():
            await client.pc.close()
    cores = cpu_s / elapsed
    row: dict[str, Any] = {
        "mode": mode,
        "room_size": size,
        "audio": audio is not None,
        "streams": streams,
        "server_cores": round(cores, 4),
        "cores_per_stream": round(cores / streams, 5),
        "frames_delivered_ratio": round(delivered / expected, 3),
        "video_streams_stalled": stalled,
        # server offers a client could not answer (its peer was gone, or closing)
        "offer_errors": offer_errors,
        "server_queue_drops": server_dropped,
        # frames (video + audio) the server queued for subscribers in the window, over the
        # nominal rate: below 1 when publishers (the starved bench process) sent late
        "server_forwarded_ratio": round(
            forwarded
            / (streams * (FPS + (media_clip.AUDIO_FPS if audio is not None else 0)) * elapsed),
            3,
        ),  # whole run: frames a full subscriber queue lost
        "client_states": states,
    }
    if audio is not None:
        row["audio_frames_delivered_ratio"] = round(
            audio_delivered / (streams * media_clip.AUDIO_FPS * elapsed), 3
        )
    return row


async def run(scale: float = 1.0) -> dict[str, Any]:
    window_s = 0.5 if smoke(scale) else max(2.0, 8.0 * scale)
    clip = await asyncio.to_thread(encode_clip)
    audio = await asyncio.to_thread(media_clip.encode_opus)
    results = []
    # a smoke run: the fewest rooms that still give every check (two sizes per fit, 4 and 8)
    for size in (4, 8) if smoke(scale) else (2, 4, 8):
        results.append(await measure_room("passthrough", size, window_s, clip, audio))
    for size in (2, 4):  # re-encoding 8 rooms saturates 2 cores: not measured
        results.append(await measure_room("reencode", size, window_s, clip, audio))
    video_only_room8 = (
        None if smoke(scale) else await measure_room("passthrough", 8, window_s, clip, None)
    )

    def pick(mode: str, size: int) -> dict[str, Any]:
        return next(r for r in results if r["mode"] == mode and r["room_size"] == size)

    # CPU = a·N (receiving N publishers) + b·N(N-1) (forwarding streams): b is the cost of one
    # more forwarded stream; the per-room "cores_per_stream" also carries the receive cost.
    fits = {}
    for mode in ("passthrough", "reencode"):
        rows = [r for r in results if r["mode"] == mode]
        a_matrix = np.array([[r["room_size"], r["streams"]] for r in rows], dtype=float)
        y = np.array([r["server_cores"] for r in rows])
        (per_publisher, per_stream), *_ = np.linalg.lstsq(a_matrix, y, rcond=None)
        fits[mode] = {
            "cores_per_publisher": round(float(per_publisher), 5),
            "cores_per_forwarded_stream": round(float(per_stream), 5),
        }
    ratio = fits["reencode"]["cores_per_forwarded_stream"] / max(
        fits["passthrough"]["cores_per_forwarded_stream"], 1e-9
    )
    room4_ratio = pick("reencode", 4)["cores_per_stream"] / max(
        pick("passthrough", 4)["cores_per_stream"], 1e-9
    )
    room8 = pick("passthrough", 8)
    delivered = min(room8["frames_delivered_ratio"], room8["audio_frames_delivered_ratio"])
    checks = [
        {
            "name": "reencode_over_passthrough_cpu_per_stream",
            "value": round(ratio, 1),
            "goal": ">= 15",
            "unit": "x",
            "pass": ratio >= 15,
        },
        {
            "name": "room8_server_cores",
            "value": room8["server_cores"],
            "goal": "<= 0.35",
            "unit": "cores",
            "pass": room8["server_cores"] <= 0.35,
        },
        {
            "name": "room8_frames_delivered",
            "value": delivered,
            "goal": ">= 0.95",
            "unit": "ratio",
            "pass": delivered >= 0.95,
        },
    ]
    return {
        "bench": "sfu",
        "media": f"VP8 {WIDTH}x{HEIGHT}@{FPS} ~{BITRATE_BPS // 1000} kbps"
        f" + Opus 20 ms ~{sum(map(len, audio)) * 8 // len(audio) * media_clip.AUDIO_FPS // 1000}"
        " kbps per publisher",
        "window_s": window_s,
        "results": results,
        "fit": fits,
        "room4_ratio_including_receive": round(room4_ratio, 1),
        "reencode_over_passthrough_cpu_per_room4": round(room4_ratio, 1),
        "room8_server_cores_video_only": video_only_room8 and video_only_room8["server_cores"],
        "room8_video_only": video_only_room8,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--hold", type=float, default=0.0, help="room 8 only, for profiling")
    args = parser.parse_args()
    if args.hold:
        print(json.dumps(asyncio.run(hold(args.hold, args.scale)), indent=2))
        return
    print(json.dumps(asyncio.run(run(args.scale)), indent=2))


async def hold(hold_s: float, scale: float) -> dict[str, Any]:
    clip = await asyncio.to_thread(encode_clip)
    audio = await asyncio.to_thread(media_clip.encode_opus)
    return await measure_room("passthrough", 8, max(2.0, 8.0 * scale), clip, audio, hold_s)


if __name__ == "__main__":
    main()
