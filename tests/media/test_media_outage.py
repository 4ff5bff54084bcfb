"""A participant's link drops out for seconds: video comes back at once from a keyframe.

The SFU's keyframe throttle is set to 30 s here, so only a request made at once (not waiting
out the throttle) can bring a keyframe within these tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media.forwarding import TrackForwarder
from media.sfu import SfuMediaNode
from tests.media.links import LinkCut, ignore_remb
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media

THROTTLE_S = 30.0


@pytest.fixture
async def slow_pli_node() -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0, keyframe_min_interval_s=THROTTLE_S
    )
    yield node
    await node.close()


@pytest.fixture
async def slow_pump(slow_pli_node: SfuMediaNode) -> AsyncIterator[EventPump]:
    pump = EventPump(slow_pli_node)
    yield pump
    await pump.close()


async def _pair(node: SfuMediaNode, pump: EventPump) -> tuple[TestClient, TestClient]:
    a = pump.add(TestClient(node, "r", "a", audio=False))
    b = pump.add(TestClient(node, "r", "b", video=False, audio=False))
    await a.join()
    ignore_remb(a.pc)
    await b.join()
    await wait_until(lambda: b.frames_from("a", "video") >= 10, 20, "b receiving a's video")
    return a, b


def _video_forwarder(node: SfuMediaNode, peer_id: str) -> TrackForwarder:
    session = node._rooms["r"].peers[peer_id]
    return next(f for f in session.published.values() if f.kind == "video")


async def test_publisher_back_after_an_outage_is_forwarded_again_from_a_keyframe_at_once(
    slow_pli_node: SfuMediaNode, slow_pump: EventPump
) -> None:
    a, b = await _pair(slow_pli_node, slow_pump)
    try:
        forwarder = _video_forwarder(slow_pli_node, "a")
        forwarder.request_keyframe()  # from now on the throttle holds requests back for 30 s
        link = LinkCut(a.pc)
        link.cut(up=True)
        await asyncio.sleep(2.0)  # the outage itself, not a synchronisation
        keyframes = forwarder.keyframes_in  # nothing from a arrives while its link is cut
        link.restore()
        frames = b.frames_from("a", "video")
        # generous for a loaded machine: a keyframe round trip on loopback takes milliseconds,
        # aiortc's old in-order buffer stalled until 512 newer packets (~10 s here)
        await wait_until(
            lambda: b.frames_from("a", "video") >= frames + 15, 8, "a's video back at b"
        )
        assert forwarder.keyframes_in > keyframes
        assert forwarder.reassembly is not None and forwarder.reassembly.resumes >= 1
        assert not slow_pump.errors
    finally:
        await a.close()
        await b.close()


async def test_subscriber_whose_link_returns_gets_a_keyframe_at_once(
    slow_pli_node: SfuMediaNode, slow_pump: EventPump
) -> None:
    a, b = await _pair(slow_pli_node, slow_pump)
    try:
        forwarder = _video_forwarder(slow_pli_node, "a")
        forwarder.request_keyframe()  # from now on the throttle holds requests back for 30 s
        # 2 s of video: b's receiver has sent receiver reports (every 0.5-1.5 s) before the cut
        await wait_until(lambda: b.frames_from("a", "video") >= 60, 20, "2 s of a's video at b")
        link = LinkCut(b.pc)
        link.cut(up=True, down=True)
        await asyncio.sleep(3.5)  # longer than adapter.LINK_SILENT_S without b's RTCP
        # any keyframe asked for before the cut has arrived by now (loopback); aiortc's encoder
        # makes one only when asked, and b's own PLI would wait out the 30 s throttle
        keyframes = forwarder.keyframes_in
        link.restore()
        await wait_until(
            lambda: forwarder.keyframes_in > keyframes, 8, "a keyframe for b's returning link"
        )
        assert not slow_pump.errors
    finally:
        await a.close()
        await b.close()
