"""Audio first (issue #18): a subscriber whose congestion feedback says its link cannot carry the
video stops receiving video but keeps its audio; the others are unaffected; after the pause
its video comes back (from a keyframe) as a probe, and stays when its estimate recovered.

The weak subscriber's estimate is real RTCP: REMB packets its aiortc receiver sends over its
own connection (its own estimator is switched off so only the test's figure is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from media.bandwidth import BandwidthSettings
from media.interfaces import PeerQuality, PublishLimit, VideoPaused
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import EventPump, TestClient, receive_event, wait_until

pytestmark = pytest.mark.media

#: The REMB these tests inject stands for a link with a queue: on loopback the round trip is
#: ~1 ms, below which an estimate is not believed (`credible_rtt_s`).
SETTINGS = BandwidthSettings(
    warmup_s=0.0,
    pause_after_s=0.5,
    resume_after_s=0.5,
    min_pause_s=4.0,
    interval_s=0.2,
    credible_rtt_s=0.0,
)


@pytest.fixture
async def af_node() -> AsyncIterator[SfuMediaNode]:
    node = SfuMediaNode(
        host_addresses=["127.0.0.1"], ice_connect_timeout_s=10.0, bandwidth=SETTINGS
    )
    yield node
    await node.close()


@pytest.fixture
async def af_pump(af_node: SfuMediaNode) -> AsyncIterator[EventPump]:
    pump = EventPump(af_node)
    yield pump
    await pump.close()


class RembReporter:
    """Sends REMB from `client`'s video receivers every 0.2 s with the figure in `bps`."""

    def __init__(self, client: TestClient, bps: int) -> None:
        self.bps = bps
        self.receivers: list[Any] = [
            t.receiver for t in client.pc.getTransceivers() if t.kind == "video"
        ]
        for receiver in self.receivers:  # the client's own estimate would contradict ours
            receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for receiver in self.receivers:
                ssrcs = [s.source for s in receiver.getSynchronizationSources()]
                rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc
                if ssrcs and rtcp_ssrc is not None:
                    packet = RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=rtcp_ssrc,
                        media_ssrc=0,
                        fci=pack_remb_fci(self.bps, ssrcs),
                    )
                    await receiver._send_rtcp(packet)
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_weak_subscriber_keeps_audio_loses_video_alone_and_gets_it_back(
    af_node: SfuMediaNode, af_pump: EventPump
) -> None:
    a = af_pump.add(TestClient(af_node, "r", "a"))
    weak = af_pump.add(TestClient(af_node, "r", "weak", video=False, audio=False))
    good = af_pump.add(TestClient(af_node, "r", "good", video=False, audio=False))
    remb: RembReporter | None = None
    try:
        for client in (a, weak, good):
            await client.join()
        for client in (weak, good):
            await wait_until(
                lambda c=client: (
                    c.frames_from("a", "video") >= 10 and c.frames_from("a", "audio") >= 20
                ),
                20,
                f"{client.peer_id} receiving a",
            )
        remb = RembReporter(weak, 20_000)  # far below a's video plus audio
        await receive_event(af_pump, VideoPaused, 15, peer_id="weak", paused=True)
        assert VideoPaused("r", "weak", ("a",), True) in af_pump.events
        # whatever was already on its way arrives; then nothing more while audio goes on
        audio = weak.frames_from("a", "audio")
        await wait_until(lambda: weak.frames_from("a", "audio") >= audio + 10, 10, "weak's audio")
        video = weak.frames_from("a", "video")
        audio = weak.frames_from("a", "audio")
        good_video = good.frames_from("a", "video")
        await wait_until(
            lambda: (
                weak.frames_from("a", "audio") >= audio + 50
                and good.frames_from("a", "video") >= good_video + 15
            ),
            15,
            "weak's audio and good's video going on",
        )
        assert weak.frames_from("a", "video") == video
        assert not any(isinstance(e, VideoPaused) and e.peer_id != "weak" for e in af_pump.events)
        session = af_node._rooms["r"].peers["weak"]
        assert all(t.paused == (t.kind == "video") for _, t in session.subscriptions.values())

        remb.bps = 50_000_000  # the link recovered
        await receive_event(af_pump, VideoPaused, 15, peer_id="weak", paused=False)
        await wait_until(
            lambda: weak.frames_from("a", "video") >= video + 10, 15, "weak's video back"
        )
        assert not af_pump.errors

        # its media ends: the session record learns how its link was (issue #16 item 1)
        await af_node.close_peer(room_id="r", peer_id="weak")
        event = await receive_event(af_pump, PeerQuality, 10, peer_id="weak")
        quality = event.quality
        assert quality.min_kbps == 20 and quality.median_kbps is not None
        assert quality.video_paused_s > 0 and quality.grade != "good"
        assert quality.seconds >= quality.video_paused_s
    finally:
        if remb is not None:
            await remb.stop()
        for client in (a, weak, good):
            await client.close()


async def test_audio_only_stops_video_to_that_participant_and_switching_back_resumes_it(
    af_node: SfuMediaNode, af_pump: EventPump
) -> None:
    a = af_pump.add(TestClient(af_node, "r", "a"))
    b = af_pump.add(TestClient(af_node, "r", "b", video=False, audio=False))
    try:
        await a.join()
        await b.join()
        await wait_until(lambda: b.frames_from("a", "video") >= 10, 20, "b receiving a's video")
        # the server asks for Opus in-band FEC and DTX, in its answers and its own offers
        for client in (a, b):
            opus = [
                line
                for line in client.pc.remoteDescription.sdp.splitlines()
                if line.startswith("a=fmtp:") and "useinbandfec" in line
            ]
            assert opus and all("useinbandfec=1" in x and "usedtx=1" in x for x in opus)
        await af_node.set_receive_video(room_id="r", peer_id="b", enabled=False)
        audio = b.frames_from("a", "audio")
        await wait_until(lambda: b.frames_from("a", "audio") >= audio + 10, 10, "b's audio")
        video = b.frames_from("a", "video")
        audio = b.frames_from("a", "audio")
        await wait_until(lambda: b.frames_from("a", "audio") >= audio + 50, 10, "b's audio")
        assert b.frames_from("a", "video") == video
        assert not any(isinstance(e, VideoPaused) for e in af_pump.events)  # its own choice

        await af_node.set_receive_video(room_id="r", peer_id="b", enabled=True)
        await wait_until(lambda: b.frames_from("a", "video") >= video + 10, 15, "b's video back")
    finally:
        await a.close()
        await b.close()


async def test_a_subscriber_that_takes_less_than_a_camera_sends_caps_that_camera(
    af_node: SfuMediaNode, af_pump: EventPump
) -> None:
    a = af_pump.add(TestClient(af_node, "r", "a"))
    weak = af_pump.add(TestClient(af_node, "r", "weak", video=False, audio=False))
    remb: RembReporter | None = None
    try:
        await a.join()
        await weak.join()
        await wait_until(lambda: weak.frames_from("a", "video") >= 10, 20, "weak receiving a")
        remb = RembReporter(weak, 500_000)  # room for a's camera at 0.8 × 500k, less its audio
        capped = await receive_event(af_pump, PublishLimit, 15, peer_id="a")
        assert capped.max_bps is not None and 250_000 <= capped.max_bps <= 400_000
        assert not any(isinstance(e, VideoPaused) for e in af_pump.events)
        remb.bps = 50_000_000  # its link recovered: the cap is lifted
        await receive_event(af_pump, PublishLimit, 15, peer_id="a", max_bps=None)
    finally:
        if remb is not None:
            await remb.stop()
        await a.close()
        await weak.close()
