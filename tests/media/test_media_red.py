"""Redundant audio (RED, RFC 2198; issue #18 item 4): real aiortc peers negotiate `audio/red`
with the server. A frame whose packet is lost on the way to the server is forwarded from the
next packet's copy; a subscriber whose link loses audio gets packets that repeat earlier
frames, and one on a clean link gets none."""

from __future__ import annotations

import pytest

from media import adapter
from media.adapter.bitstream import red_blocks
from media.bandwidth import BandwidthSettings
from media.forwarding import ForwardedTrack
from media.sfu import SfuMediaNode
from tests.media.links import LossyDownlink, LossyUplink
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media


def _sends_red(client: TestClient) -> bool:
    audio = [
        t for t in client.pc.getTransceivers() if t.kind == "audio" and t.sender.track is not None
    ]
    return bool(audio) and audio[0]._codecs[0].mimeType.lower() == "audio/red"


async def test_a_frame_lost_upstream_reaches_the_others_from_the_next_packet(
    node: SfuMediaNode, pump: EventPump
) -> None:
    a = pump.add(TestClient(node, "r", "a", video=False))
    b = pump.add(TestClient(node, "r", "b", video=False, audio=False))
    try:
        await a.join()
        await b.join()
        await wait_until(lambda: b.frames_from("a", "audio") >= 20, 20, "b hearing a")
        assert _sends_red(a)  # the server's answer put RED first
        forwarder = next(iter(node._session("r", "a").published.values()))
        recovered = adapter.stats["red_recovered"]
        frames_in = forwarder.frames_in
        lossy = LossyUplink(a.pc, nth=5)  # 20 % of a's packets never reach the server
        lossy.start()
        await wait_until(lambda: lossy.dropped >= 20, 20, "a's packets dropped")
        lossy.clear()
        sent_while_lossy = forwarder.frames_in - frames_in
        # no two dropped packets are adjacent: each lost frame came with the next packet
        assert adapter.stats["red_recovered"] - recovered >= lossy.dropped - 1
        assert sent_while_lossy >= 5 * lossy.dropped - 5
        assert not pump.errors
    finally:
        await a.close()
        await b.close()


async def test_a_subscriber_losing_audio_gets_earlier_frames_repeated_and_a_clean_one_not() -> None:
    settings = BandwidthSettings(warmup_s=0.0, interval_s=0.2, red_hold_s=1.0)
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0, bandwidth=settings
    )
    pump = EventPump(node)
    a = pump.add(TestClient(node, "r", "a", video=False))
    b = pump.add(TestClient(node, "r", "b", video=False, audio=False))
    c = pump.add(TestClient(node, "r", "c", video=False, audio=False))
    try:
        for client in (a, b, c):
            await client.join()
        await wait_until(
            lambda: b.frames_from("a", "audio") >= 20 and c.frames_from("a", "audio") >= 20,
            20,
            "b and c hearing a",
        )
        lossy = LossyDownlink(b.pc, nth=5)  # b loses 20 % of what reaches it
        lossy.start()
        clean = LossyDownlink(c.pc, nth=1 << 17)  # c loses nothing; only watched
        clean.start()

        def track_of(peer: str) -> ForwardedTrack:
            return next(t for _, t in node._session("r", peer).subscriptions.values())

        await wait_until(lambda: track_of("b").redundancy == 2, 15, "b sent two earlier frames")
        assert track_of("c").redundancy == 0
        red_pt = adapter.RED_PAYLOAD_TYPE
        count = len(lossy.payloads.get(red_pt, []))
        await wait_until(
            lambda: len(lossy.payloads.get(red_pt, [])) >= count + 20, 10, "b's RED packets"
        )
        blocks = [red_blocks(p, 0) for p in lossy.payloads[red_pt][count:]]
        assert all(b is not None and len(b) == 3 for b in blocks[1:])  # 2 earlier + primary
        assert len(clean.payloads.get(red_pt, [])) >= 20  # c gets RED too, with no repeats
        assert all(len(red_blocks(p, 0) or []) == 1 for p in clean.payloads[red_pt][-20:])
        assert c.frames_from("a", "audio") > 0 and not pump.errors
    finally:
        for client in (a, b, c):
            await client.close()
        await pump.close()
        await node.close()
