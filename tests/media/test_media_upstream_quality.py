"""A sender's loss upstream of the server, and its stall, reach the room as that sender's
upstream grade (issue #18 item 8): real aiortc peers, the publisher's packets dropped on its
side before they leave."""

from __future__ import annotations

import itertools

import pytest

from media.interfaces import UpstreamQuality
from media.sfu import SfuMediaNode
from tests.media.links import LinkCut, LossyUplink
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media


def _grades(pump: EventPump, peer_id: str) -> list[str]:
    return [e.grade for e in pump.events if isinstance(e, UpstreamQuality) and e.peer_id == peer_id]


async def test_a_lossy_then_cut_uplink_grades_the_sender_poor_then_lost_then_good(
    node: SfuMediaNode, pump: EventPump
) -> None:
    a = pump.add(TestClient(node, "r", "a", video=False))  # Opus: no NACK, loss stays lost
    b = pump.add(TestClient(node, "r", "b", video=False, audio=False))
    try:
        await a.join()
        await b.join()
        await wait_until(lambda: b.frames_from("a", "audio") >= 20, 20, "b hearing a")
        await wait_until(lambda: _grades(pump, "a") == ["good"], 10, "a graded good")
        assert _grades(pump, "b") == []  # publishes nothing: no upstream grade

        lossy = LossyUplink(a.pc, nth=5)  # 20 % of a's packets never reach the server
        lossy.start()
        await wait_until(lambda: "poor" in _grades(pump, "a"), 10, "a graded poor")
        assert lossy.dropped > 0
        lossy.clear()

        cut = LinkCut(a.pc)
        cut.cut(up=True)  # nothing from a: a stall, not loss
        await wait_until(lambda: _grades(pump, "a")[-1:] == ["lost"], 10, "a graded lost")
        cut.restore()
        await wait_until(lambda: _grades(pump, "a")[-1:] == ["good"], 10, "a good again")

        grades = _grades(pump, "a")
        assert all(x != y for x, y in itertools.pairwise(grades))  # changes only
        assert not pump.errors
    finally:
        await a.close()
        await b.close()
