"""Signaling with the real in-process SfuMediaNode: two aiortc browsers on loopback negotiate
through the WebSocket (offer/answer, server renegotiation offers) and receive each other's video."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.sfu import SfuMediaNode
from tests.component.signaling.harness import Participant, host_and_admitted_guest
from tests.media.rtc_clients import PatternVideoTrack
from tests.polling import eventually

pytestmark = pytest.mark.media


class Browser:
    """A Participant plus an RTCPeerConnection that answers server offers via signaling."""

    def __init__(self, p: Participant) -> None:
        self.p = p
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames: dict[str, int] = {}
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        publisher = track.id.split(".")[0]
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[publisher] = self.frames.get(publisher, 0) + 1
                self.changed.set()

    async def wait_frames(self, publisher: str, count: int) -> None:
        while self.frames.get(publisher, 0) < count:
            await self.changed.wait()
            self.changed.clear()

    async def publish(self) -> None:
        self.pc.addTransceiver(PatternVideoTrack(), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.p.request("offer", sdp=self.pc.localDescription.sdp)
        assert answer["type"] == "answer", answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self._tasks.append(asyncio.create_task(self._renegotiate()))

    async def _renegotiate(self) -> None:
        while True:
            offer = await self.p.expect("offer")
            await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            assert self.p.ws is not None
            await self.p.ws.send_str(
                json.dumps(
                    {"type": "answer", "id": f"a{id(offer)}", "sdp": self.pc.localDescription.sdp}
                )
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


@pytest.fixture
def fake_media(sfu: SfuMediaNode) -> Any:  # the server fixture takes this media node
    return sfu


async def test_two_browsers_see_each_other_through_the_real_sfu(
    people: Any, tmp_path: Path
) -> None:
    host, guest, _ = await host_and_admitted_guest(people)

    browsers = [Browser(host), Browser(guest)]
    try:
        await _see_each_other(browsers)
    finally:
        for b in browsers:
            await b.close()


async def _see_each_other(browsers: list[Browser]) -> None:
    """Both publish; each receives five frames of the other."""
    for b in browsers:
        await b.publish()
    async with asyncio.timeout(20):
        await browsers[0].wait_frames(browsers[1].p.peer_id, 5)
        await browsers[1].wait_frames(browsers[0].p.peer_id, 5)


async def test_media_failed_then_a_new_connection_heals_the_call(
    people: Any, sfu: SfuMediaNode
) -> None:
    """Issue #18 item 6: the server's side of a participant's media connection dies (ICE
    consent expired, as aioice closes it); the participant is told `media_failed` (no `re`)
    and does what the web client and the load client do: a new peer connection and offer.
    Media flows again both ways, without leaving the room, and the other side never left."""
    host, guest, sess = await host_and_admitted_guest(people)
    browsers = [Browser(host), Browser(guest)]
    healed: Browser | None = None
    try:
        await _see_each_other(browsers)
        server_pc = sfu._rooms[sess["room_id"]].peers[guest.peer_id].pc
        ice = server_pc.getTransceivers()[0].receiver.transport.transport
        await ice._connection.close()  # what aioice does when consent expires
        # the guest's offer reader keeps what it skips in the backlog
        await eventually(lambda: bool(guest.seen("error")), what="media_failed to the guest")
        await browsers[1].close()  # the web client drops the dead connection ...
        [failed] = guest.seen("error")
        assert failed["code"] == "media_failed" and failed.get("re") is None, failed
        assert failed["message_zh"] == "音视频连接中断，正在重连"
        healed = Browser(guest)  # ... and builds a new one with a new offer
        await healed.publish()
        seen_from_guest = browsers[0].frames.get(guest.peer_id, 0)
        async with asyncio.timeout(20):
            await healed.wait_frames(host.peer_id, 5)
            await browsers[0].wait_frames(guest.peer_id, seen_from_guest + 5)
        assert not host.seen("participant_left")  # the room never lost the guest
    finally:
        for b in [browsers[0], *([healed] if healed is not None else [])]:
            await b.close()
        with contextlib.suppress(Exception):
            await browsers[1].close()
