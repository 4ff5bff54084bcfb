"""How a new subscription's video starts: from a fresh keyframe at once, else after one PLI."""

from __future__ import annotations

import asyncio
import struct
import time
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import av

from media import forwarding, sfu
from media.interfaces import TrackKind

KEY = bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", 64, 48)
DELTA = bytes([0x51, 0x01, 0x00]) + b"\x00" * 8


class PublisherReceiver:
    """aiortc's RTCRtpReceiver as far as the forwarder uses it: SSRCs and PLI."""

    def __init__(self) -> None:
        self.plis = 0

    def getSynchronizationSources(self) -> list[Any]:
        return [SimpleNamespace(source=1234)]

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis += 1


def frame(data: bytes, pts: int) -> av.Packet[Any]:
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = Fraction(1, 90000)
    return packet


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def make_forwarder(kind: TrackKind = "video") -> tuple[forwarding.TrackForwarder, Any]:
    node = sfu.SfuMediaNode()
    receiver = PublisherReceiver()
    forwarder = forwarding.TrackForwarder(
        node,
        forwarding.Room("r"),
        "pub",
        kind,
        "t1",
        receiver,
        "vp8" if kind == "video" else "opus",
        True,
    )
    return forwarder, receiver


async def test_a_fresh_keyframe_starts_a_new_subscriber_without_a_pli() -> None:
    forwarder, receiver = await make_forwarder()
    now = time.monotonic()
    forwarder.on_frame(frame(KEY, 0), now)
    forwarder.on_frame(frame(DELTA, 6000), now)
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    assert track.queued == 2 and not track.waiting_keyframe
    track.activate()
    await settle()
    assert receiver.plis == 0
    assert bytes(await track.recv()) == KEY


async def test_a_stale_keyframe_is_not_used_and_one_pli_is_sent() -> None:
    forwarder, receiver = await make_forwarder()
    old = time.monotonic() - 10 * forwarding.FRESH_KEYFRAME_S
    forwarder.on_frame(frame(KEY, 0), old)
    forwarder.on_frame(frame(DELTA, 6000), old)
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    assert track.queued == 0 and track.waiting_keyframe
    forwarder.on_frame(frame(DELTA, 12000), time.monotonic())  # no keyframe: skipped
    assert track.queued == 0
    track.activate()
    await settle()
    assert receiver.plis == 1


async def test_an_inactive_subscription_keeps_video_from_the_next_keyframe() -> None:
    forwarder, receiver = await make_forwarder()
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    forwarder.on_frame(frame(DELTA, 0), time.monotonic())
    forwarder.on_frame(frame(KEY, 6000), time.monotonic())
    forwarder.on_frame(frame(DELTA, 12000), time.monotonic())
    assert track.queued == 2
    track.activate()  # within FRESH_KEYFRAME_S of that keyframe
    await settle()
    assert receiver.plis == 0 and track.queued == 2


async def test_a_start_that_went_stale_before_activation_is_dropped_for_a_new_keyframe() -> None:
    forwarder, receiver = await make_forwarder()
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    forwarder.on_frame(frame(KEY, 0), time.monotonic())
    track.started_at -= 10 * forwarding.FRESH_KEYFRAME_S  # the answer came late
    track.activate()
    await settle()
    assert track.queued == 0 and track.waiting_keyframe and receiver.plis == 1


async def test_an_inactive_queue_that_fills_up_restarts_without_asking_the_publisher() -> None:
    forwarder, receiver = await make_forwarder()
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    forwarder.on_frame(frame(KEY, 0), time.monotonic())
    for i in range(forwarding.MAX_QUEUED_VIDEO_FRAMES):
        forwarder.on_frame(frame(DELTA, 6000 * (i + 1)), time.monotonic())
    await settle()
    assert track.queued == 0 and track.waiting_keyframe and receiver.plis == 0


async def test_inactive_audio_is_not_kept() -> None:
    forwarder, _ = await make_forwarder("audio")
    track = forwarding.ForwardedTrack(forwarder, "sub")
    forwarder.subscribers["sub"] = track
    forwarder.on_frame(frame(b"\xfc\xff\xfe", 0), time.monotonic())
    assert track.queued == 0
    track.activate()
    forwarder.on_frame(frame(b"\xfc\xff\xfe", 960), time.monotonic())
    assert track.queued == 1


async def test_a_recording_start_asks_for_a_keyframe_at_once_and_the_throttle_holds_otherwise() -> (
    None
):
    """Subscribers' PLIs are throttled to one per interval (later ones coalesce into one sent
    when it ends); a recording start does not wait: until the next keyframe it records
    nothing. Its PLI also answers the coalesced one."""
    forwarder, receiver = await make_forwarder()
    forwarder.request_keyframe()
    await settle()
    assert receiver.plis == 1
    forwarder.request_keyframe()  # within the interval: deferred
    await settle()
    assert receiver.plis == 1 and forwarder._pli_scheduled is not None
    forwarder.request_keyframe(at_once=True)
    await settle()
    assert receiver.plis == 2 and forwarder._pli_scheduled is None
