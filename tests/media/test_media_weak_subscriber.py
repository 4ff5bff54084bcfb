"""A weak subscriber does not cost the others (issue #18 item 5): one that sends PLIs all the
time raises its publisher's keyframe requests to one per `subscriber_keyframe_interval_s`,
not one per request (real aiortc peers; the publisher counts the PLIs it receives)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from media import adapter
from media.forwarding import TrackForwarder
from media.sfu import SfuMediaNode
from tests.media.links import ignore_remb
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media

INTERVAL_S = 3.0


@pytest.fixture
async def node3() -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"],
        ice_connect_timeout_s=10.0,
        subscriber_keyframe_interval_s=INTERVAL_S,
    )
    yield node
    await node.close()


@pytest.fixture
async def pump3(node3: SfuMediaNode) -> AsyncIterator[EventPump]:
    pump = EventPump(node3)
    yield pump
    await pump.close()


def _count_plis(client: TestClient) -> list[int]:
    """The PLIs/FIRs `client`'s video sender receives, counted as they arrive."""
    count = [0]
    sender = next(
        s for s in client.pc.getSenders() if s.track is not None and s.track.kind == "video"
    )
    original = sender._send_keyframe

    def counted() -> None:
        count[0] += 1
        original()

    sender._send_keyframe = counted  # type: ignore[method-assign]
    return count


async def test_a_subscriber_asking_for_keyframes_all_the_time_costs_one_per_interval(
    node3: SfuMediaNode, pump3: EventPump
) -> None:
    a = pump3.add(TestClient(node3, "r", "a", audio=False))
    b = pump3.add(TestClient(node3, "r", "b", video=False, audio=False))  # the weak one
    c = pump3.add(TestClient(node3, "r", "c", video=False, audio=False))  # a good one
    try:
        await a.join()
        ignore_remb(a.pc)  # a makes keyframes only when asked
        plis = _count_plis(a)
        await b.join()
        await c.join()
        for who in (b, c):
            await wait_until(lambda w=who: w.frames_from("a", "video") >= 10, 20, "a's video")
        forwarder: TrackForwarder = next(
            f for f in node3._rooms["r"].peers["a"].published.values() if f.kind == "video"
        )
        receiver: Any = next(
            t.receiver
            for t in b.pc.getTransceivers()
            if t.receiver.track is not None and t.receiver.track.kind == "video"
        )
        before, frames_c = plis[0], c.frames_from("a", "video")

        started = time.monotonic()
        sent = 0
        while sent < 150:  # a PLI every 40 ms, 6 s
            assert await adapter.send_pli(receiver)
            sent += 1
            await asyncio.sleep(0.04)  # the pace of the flood, not a synchronisation
        elapsed = time.monotonic() - started
        await wait_until(
            lambda: forwarder.subscriber_requests >= sent * 0.9, 10, "b's PLIs at the server"
        )

        asked = plis[0] - before
        # one at once, then at most one per interval (and a last coalesced one at its end)
        assert 1 <= asked <= 1 + math.ceil(elapsed / INTERVAL_S)
        assert forwarder.subscriber_requests_coalesced >= forwarder.subscriber_requests - asked
        assert c.frames_from("a", "video") > frames_c  # the good subscriber's video went on
        assert not pump3.errors
    finally:
        for client in (a, b, c):
            await client.close()
