"""A three-party call with one publisher on a shaped link (tests/netshape.py), measured.

The SFU and each aiortc client run in their own network namespace (one thread and event loop
each, in this process). Publisher C sends video (320x240, 30 fps) and audio through a link with
delay, jitter and loss, and at one point a blackout; subscribers A and B are on clean links and
record when each of C's video frames is decoded.

`python -m tests.media.shaped_call [--old]` prints the figures as JSON (`--old`: the previous
in-order reassembly, for before/after comparisons in docs/performance.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media import adapter
from media.forwarding import TrackForwarder
from media.interfaces import PeerDescription
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import Received, TestClient
from tests.netshape import (
    LinkShape,
    NamespaceLoop,
    NetshapeUnavailable,
    ShapedNetwork,
    namespace_host_addresses,
    unavailable_reason,
)

#: A lossy mobile link, but with room for aiortc's 500 kbit/s default video bitrate (aiortc's
#: encoder ignores nothing but is not capped by the test; the rate limit is not what is tested).
LOSSY_UPLINK = LinkShape(
    up_kbit=1500, down_kbit=2000, delay_ms=60, jitter_ms=20, up_loss=0.03, down_loss=0.0
)
SETUP_TIMEOUT_S = 40.0


class _OldReassemblyNode(SfuMediaNode):
    """The SFU with the previous reassembly (aiortc's in-order wait), for comparisons."""

    def _attach_publisher_track(self, track: MediaStreamTrack, forwarder: TrackForwarder) -> None:
        adapter.attach_sink(track, adapter.PassthroughSink(forwarder.on_frame, forwarder.on_end))
        adapter.complete_frames_early(forwarder.receiver, forwarder.kind)


class TimedClient(TestClient):
    """A TestClient that keeps the time each frame from each publisher was decoded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_times: dict[tuple[str, str], list[float]] = {}

    async def _consume(self, track: MediaStreamTrack, record: Received) -> None:
        times = self.frame_times.setdefault((record.publisher, record.kind), [])
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                times.append(time.monotonic())
                record.frames += 1
                if isinstance(frame, av.VideoFrame) and record.frames == 1:
                    record.keyframe_sizes.append((frame.width, frame.height))


class _NodeProxy:
    """The node's signaling methods, called from a client's loop, run on the server's loop."""

    def __init__(self, server: NamespaceLoop, node: SfuMediaNode) -> None:
        self.server = server
        self.node = node

    async def accept_offer(self, **kwargs: Any) -> Any:
        return await self.server.call(self.node.accept_offer(**kwargs))

    async def accept_answer(self, **kwargs: Any) -> Any:
        return await self.server.call(self.node.accept_answer(**kwargs))


@dataclass
class Phase:
    start: float
    end: float


@dataclass
class CallResult:
    """Decode times of C's video at each subscriber, the phases, and the server's counters."""

    video_times: dict[str, list[float]]
    audio_frames: dict[str, int]
    lossy: Phase
    blackout: Phase
    after: Phase
    server: dict[str, Any] = field(default_factory=dict)
    relay: dict[str, str] = field(default_factory=dict)

    def max_gap_s(self, subscriber: str, phase: Phase) -> float:
        """Longest time without a decoded frame within `phase` (its edges count)."""
        times = [t for t in self.video_times[subscriber] if phase.start <= t <= phase.end]
        points = [phase.start, *times, phase.end]
        return max(b - a for a, b in itertools.pairwise(points))

    def recovery_s(self, subscriber: str) -> float | None:
        """From the blackout's end to the first frame decoded after it."""
        later = [t for t in self.video_times[subscriber] if t > self.blackout.end]
        return later[0] - self.blackout.end if later else None

    def fps(self, subscriber: str, phase: Phase) -> float:
        n = sum(1 for t in self.video_times[subscriber] if phase.start <= t <= phase.end)
        return n / (phase.end - phase.start)

    def summary(self) -> dict[str, Any]:
        after_recovery = {
            s: Phase(self.blackout.end + (self.recovery_s(s) or 0.0), self.after.end)
            for s in self.video_times
        }
        return {
            s: {
                "fps_lossy": round(self.fps(s, self.lossy), 1),
                "max_gap_lossy_s": round(self.max_gap_s(s, self.lossy), 2),
                "recovery_s": None if self.recovery_s(s) is None else round(self.recovery_s(s), 2),  # type: ignore[arg-type]
                "max_gap_after_s": round(self.max_gap_s(s, after_recovery[s]), 2),
                "fps_after": round(self.fps(s, self.after), 1),
                "audio_frames": self.audio_frames[s],
            }
            for s in sorted(self.video_times)
        } | {"server": self.server, "relay": self.relay}


async def _pump_offers(
    node: SfuMediaNode,
    clients: dict[str, tuple[TimedClient, NamespaceLoop]],
    errors: list[BaseException],
) -> None:
    def done(future: concurrent.futures.Future[None]) -> None:
        if future.exception() is not None:
            errors.append(future.exception())  # type: ignore[arg-type]

    async for event in node.events():
        if isinstance(event, PeerDescription) and event.peer_id in clients:
            client, loop = clients[event.peer_id]
            loop.submit(client.on_server_offer(event.description)).add_done_callback(done)


def _server_counters(node: SfuMediaNode) -> dict[str, Any]:
    session = node._rooms["call"].peers["c"]
    video = next(f for f in session.published.values() if f.kind == "video")
    counters: dict[str, Any] = {
        "video_frames_in": video.frames_in,
        "keyframes_in": video.keyframes_in,
        "plis_sent": video.plis_sent,
    }
    if video.reassembly is not None:
        r = video.reassembly
        counters |= {"stalls": r.stalls, "frames_dropped": r.frames_dropped, "resumes": r.resumes}
        counters["late_packets"] = r.late_packets
    return counters


def run_call(
    *,
    shape: LinkShape = LOSSY_UPLINK,
    lossy_s: float = 15.0,
    blackout_s: float = 5.0,
    after_s: float = 10.0,
    old_reassembly: bool = False,
) -> CallResult:
    """Run the call (about lossy_s + blackout_s + after_s + setup seconds). Raises
    NetshapeUnavailable when this machine cannot build the namespaces."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetshapeUnavailable(reason)
    loops: list[NamespaceLoop] = []
    budget_s = SETUP_TIMEOUT_S + lossy_s + blackout_s + after_s + 30
    with ShapedNetwork(max_s=budget_s) as net, namespace_host_addresses():
        try:
            server = NamespaceLoop(net.server)
            loops.append(server)
            hosts = {
                "a": net.add_participant("a"),
                "b": net.add_participant("b"),
                "c": net.add_participant("c", shape),
            }

            async def make_node() -> SfuMediaNode:
                cls = _OldReassemblyNode if old_reassembly else SfuMediaNode
                return cls(host_addresses=None, ice_connect_timeout_s=SETUP_TIMEOUT_S)

            node = server.run(make_node(), SETUP_TIMEOUT_S)
            proxy = _NodeProxy(server, node)
            clients: dict[str, tuple[TimedClient, NamespaceLoop]] = {}
            errors: list[BaseException] = []
            pump = server.submit(_pump_offers(node, clients, errors))
            for peer_id, host in hosts.items():
                loop = NamespaceLoop(host)
                loops.append(loop)
                publisher = peer_id == "c"

                async def make(peer_id: str = peer_id, publisher: bool = publisher) -> TimedClient:
                    return TimedClient(proxy, "call", peer_id, video=publisher, audio=publisher)

                client = loop.run(make(), SETUP_TIMEOUT_S)
                clients[peer_id] = (client, loop)
                loop.run(client.join(), SETUP_TIMEOUT_S)

            def c_frames(peer_id: str) -> int:
                return clients[peer_id][0].frames_from("c", "video")

            deadline = time.monotonic() + SETUP_TIMEOUT_S
            while min(c_frames("a"), c_frames("b")) < 10:
                if errors:
                    raise errors[0]
                if time.monotonic() > deadline:
                    raise AssertionError("C's video never reached A and B through the namespaces")
                time.sleep(0.1)
            lossy = Phase(time.monotonic(), time.monotonic() + lossy_s)
            time.sleep(lossy_s)
            net.blackout("c", blackout_s)
            blackout = Phase(time.monotonic(), time.monotonic() + blackout_s)
            time.sleep(blackout_s + after_s)
            after = Phase(blackout.end, time.monotonic())
            server_counters = server.run(_async(_server_counters, node), 10)
            result = CallResult(
                video_times={
                    p: list(clients[p][0].frame_times.get(("c", "video"), [])) for p in ("a", "b")
                },
                audio_frames={p: clients[p][0].frames_from("c", "audio") for p in ("a", "b")},
                lossy=lossy,
                blackout=blackout,
                after=after,
                server=server_counters,
            )
            if errors:
                raise errors[0]
            for client, loop in clients.values():
                with contextlib.suppress(Exception):
                    loop.run(client.close(), 10)
            pump.cancel()
            with contextlib.suppress(Exception):
                server.run(node.close(), 10)
        finally:
            for loop in loops:
                loop.stop()
    result.relay = net.relay_counters()
    return result


async def _async(func: Any, *args: Any) -> Any:
    return func(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", action="store_true", help="the previous in-order reassembly")
    parser.add_argument("--loss", type=float, default=LOSSY_UPLINK.up_loss)
    parser.add_argument("--up-kbit", type=int, default=LOSSY_UPLINK.up_kbit)
    parser.add_argument("--down-kbit", type=int, default=LOSSY_UPLINK.down_kbit)
    args = parser.parse_args()
    shape = LinkShape(
        **{
            **_shape_dict(LOSSY_UPLINK),
            "up_loss": args.loss,
            "up_kbit": args.up_kbit,
            "down_kbit": args.down_kbit,
        }
    )
    result = run_call(shape=shape, old_reassembly=args.old)
    print(json.dumps({"old_reassembly": args.old, "shape": _shape_dict(shape)} | result.summary()))


def _shape_dict(shape: LinkShape) -> dict[str, Any]:
    return {name: getattr(shape, name) for name in LinkShape.__slots__}


if __name__ == "__main__":
    main()
