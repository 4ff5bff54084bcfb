"""VP8 temporal layers per subscriber (issue #18 item 3) on real aiortc peers: a subscriber whose
estimate fits only the base layer receives fewer frames per second but keeps its video (no
pause); a good subscriber of the same publisher receives every frame.

aiortc's VP8 encoder has no temporal layers, so the publisher's RTP payload descriptors are
labelled L1T3 by `tests.media.temporal.label_l1t3` (see there: the stream is not really
temporally scalable; what is checked is which frames the SFU forwards to whom).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from media.bandwidth import BandwidthSettings
from media.congestion import needed_bps
from media.interfaces import VideoPaused
from media.load import LoadShedder
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump, TestClient, wait_until
from tests.media.temporal import label_l1t3
from tests.media.test_media_audio_first import RembReporter

pytestmark = pytest.mark.media

#: The REMB these tests inject stands for a link with a queue: on loopback the round trip is
#: ~1 ms, below which an estimate is not believed (`credible_rtt_s`).
SETTINGS = BandwidthSettings(warmup_s=0.0, pause_after_s=0.5, interval_s=0.2, credible_rtt_s=0.0)


@pytest.fixture
def l1t3_publishers() -> Iterator[None]:
    """Every aiortc VP8 encoder of this test labels its frames with L1T3 temporal layer ids."""
    with label_l1t3():
        yield


@pytest.fixture
async def tl_node() -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0, bandwidth=SETTINGS
    )
    yield node
    await node.close()


@pytest.fixture
async def tl_pump(tl_node: SfuMediaNode) -> AsyncIterator[EventPump]:
    pump = EventPump(tl_node)
    yield pump
    await pump.close()


async def test_a_weak_subscriber_gets_the_base_layer_and_keeps_video_a_good_one_gets_all(
    l1t3_publishers: None, tl_node: SfuMediaNode, tl_pump: EventPump
) -> None:
    a = tl_pump.add(TestClient(tl_node, "r", "a"))
    weak = tl_pump.add(TestClient(tl_node, "r", "weak", video=False, audio=False))
    good = tl_pump.add(TestClient(tl_node, "r", "good", video=False, audio=False))
    remb: RembReporter | None = None
    try:
        for client in (a, weak, good):
            await client.join()
        for client in (weak, good):
            await wait_until(
                lambda c=client: c.frames_from("a", "video") >= 20, 20, f"{client.peer_id} video"
            )
        forwarder = next(
            f for f in tl_node._rooms["r"].peers["a"].published.values() if f.kind == "video"
        )
        await wait_until(
            lambda: (
                all(n > 0 for n in forwarder.layer_frames[:3])
                and forwarder.rate_up_to(0) is not None
            ),
            10,
            "frames in all three layers, measured",
        )
        # an estimate that carries the base layer and audio, but not layer 1
        session = tl_node._rooms["r"].peers["weak"]
        base = needed_bps(session, SETTINGS, 0)
        with_tl1 = needed_bps(session, SETTINGS, 1)
        bps = int(1.1 * base)
        assert bps < SETTINGS.pause_below_ratio * with_tl1, (base, with_tl1)
        remb = RembReporter(weak, bps)
        await wait_until(lambda: session.layers.layer == 0, 10, "weak capped at the base layer")
        track = next(t for _, t in session.subscriptions.values() if t.kind == "video")
        await wait_until(lambda: track.layer == 0, 5, "weak's subscription at the base layer")
        weak_before = weak.frames_from("a", "video")
        good_before = good.frames_from("a", "video")
        dropped_before = track.layer_dropped
        await wait_until(
            lambda: good.frames_from("a", "video") >= good_before + 60, 20, "60 frames to good"
        )
        weak_got = weak.frames_from("a", "video") - weak_before
        good_got = good.frames_from("a", "video") - good_before
        # L1T3's base layer is a quarter of the frames (keyframes are TL0 too)
        assert 0 < weak_got <= good_got // 2, (weak_got, good_got)
        assert track.layer_dropped - dropped_before >= good_got // 2
        assert not session.policy.paused
        assert not any(isinstance(e, VideoPaused) for e in tl_pump.events)
        good_track = next(
            t
            for _, t in tl_node._rooms["r"].peers["good"].subscriptions.values()
            if t.kind == "video"
        )
        assert good_track.layer == 2 and good_track.layer_dropped == 0

        remb.bps = 50_000_000  # the link recovered: the weak subscriber climbs back
        await wait_until(lambda: track.layer == 2, 30, "weak back at every layer")
        assert not tl_pump.errors
    finally:
        if remb is not None:
            await remb.stop()
        for client in (a, weak, good):
            await client.close()


async def test_a_saturated_worker_sends_everyone_the_base_layer_until_it_recovers(
    l1t3_publishers: None,
) -> None:
    """Issue #18 item 7, degrade before failing: while the worker's loop lags past the
    threshold every subscriber gets only the base temporal layer (its own policy untouched);
    once the lag stayed low, every layer again."""
    lag = {"s": 0.0}
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"],
        ice_connect_timeout_s=10.0,
        bandwidth=SETTINGS,
        load_probe=lambda: lag["s"],
    )
    node.shedder = LoadShedder(node.saturated_lag_s, recover_s=0.5)
    pump = EventPump(node)
    a = pump.add(TestClient(node, "r", "a"))
    sub = pump.add(TestClient(node, "r", "sub", video=False, audio=False))
    try:
        for client in (a, sub):
            await client.join()
        await wait_until(lambda: sub.frames_from("a", "video") >= 20, 20, "video to sub")
        session = node._rooms["r"].peers["sub"]
        track = next(t for _, t in session.subscriptions.values() if t.kind == "video")
        await wait_until(lambda: track.layer == 2, 10, "every layer at first")

        lag["s"] = 1.0  # saturated
        await wait_until(lambda: track.max_layer == 0 and track.layer == 0, 5, "base layer")
        assert session.layers.layer == 2, "the subscriber's own policy is not moved"
        before, dropped = sub.frames_from("a", "video"), track.layer_dropped
        await wait_until(lambda: track.layer_dropped >= dropped + 30, 20, "upper layers dropped")
        assert sub.frames_from("a", "video") > before, "the base layer still flows"

        lag["s"] = 0.0  # recovered
        await wait_until(lambda: track.max_layer == 2, 5, "cap lifted after the calm")
        # up from the next layer-sync frame, or a keyframe asked for after LAYER_SYNC_WAIT_S
        # (throttled per publisher): slow on a loaded machine, as for the weak subscriber above
        await wait_until(lambda: track.layer == 2, 60, "every layer again")
        assert not pump.errors
    finally:
        for client in (a, sub):
            await client.close()
        await pump.close()
        await node.close()
