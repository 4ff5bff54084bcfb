"""A saturated media worker admits no new room (issue #18 item 7): the probe of its
event-loop lag is injected; the room it carries still takes participants."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media.errors import MediaSaturated
from media.load import LoopLag
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media


class Lag:
    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


@pytest.fixture
def lag() -> Lag:
    return Lag()


@pytest.fixture
async def busy_node(lag: Lag) -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0, load_probe=lag)
    yield node
    await node.close()


async def test_a_saturated_worker_refuses_a_new_room_and_keeps_the_ones_it_has(
    busy_node: SfuMediaNode, lag: Lag
) -> None:
    pump = EventPump(busy_node)
    a = pump.add(TestClient(busy_node, "r1", "a", audio=False))
    b = pump.add(TestClient(busy_node, "r1", "b", video=False, audio=False))
    c = pump.add(TestClient(busy_node, "r2", "c", video=False))
    try:
        await a.join()
        lag.s = 0.5  # the loop is half a second late
        with pytest.raises(MediaSaturated) as refused:
            await c.join()
        assert refused.value.code == "media_saturated"
        assert "r2" not in busy_node._rooms
        await b.join()  # a room it already carries still takes a participant
        await wait_until(lambda: b.frames_from("a", "video") >= 5, 20, "b receiving a")
        lag.s = 0.0
        c2 = pump.add(TestClient(busy_node, "r2", "c2", video=False))
        await c2.join()  # no longer saturated: the new room opens
        assert "r2" in busy_node._rooms
        await c2.close()
    finally:
        for client in (a, b, c):
            await client.close()
        await pump.close()


def test_loop_lag_is_smoothed_and_never_negative() -> None:
    probe = LoopLag()
    probe.add(-0.01)
    assert probe() == 0.0
    for _ in range(20):
        probe.add(0.2)
    assert 0.19 < probe() <= 0.2
    probe.add(0.0)
    assert probe() < 0.19
