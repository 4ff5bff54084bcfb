"""Why the prototype's server audio senders never started, pinned down on real aiortc peers.

aiortc's `addTrack` reuses any transceiver of the same kind whose sender has no track, here the
participant's own audio transceiver. The participant offered it `sendonly`, so the negotiated
server direction stays `recvonly` and the sender is never started. The SFU therefore forwards
every track on its own `addTransceiver(track, direction="sendonly")`.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from media import adapter
from tests.media.rtc_clients import ToneAudioTrack, wait_until

pytestmark = pytest.mark.media


async def _forward_one_audio(use_add_track: bool) -> tuple[int, list[str | None]]:
    adapter.restrict_host_addresses(["127.0.0.1"])
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received = [0]
    tasks: list[asyncio.Task[None]] = []

    @client.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def consume() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    received[0] += 1

        tasks.append(asyncio.create_task(consume()))

    try:
        client.addTransceiver(ToneAudioTrack(), direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        await server.setRemoteDescription(client.localDescription)
        await server.setLocalDescription(await server.createAnswer())
        await client.setRemoteDescription(server.localDescription)

        other_participant = ToneAudioTrack()
        if use_add_track:
            server.addTrack(other_participant)
        else:
            server.addTransceiver(other_participant, direction="sendonly")
        await server.setLocalDescription(await server.createOffer())
        await client.setRemoteDescription(server.localDescription)
        await client.setLocalDescription(await client.createAnswer())
        await server.setRemoteDescription(client.localDescription)
        if use_add_track:
            await asyncio.sleep(1.0)
        else:
            await wait_until(lambda: received[0] >= 10, 5, "forwarded audio")
        return received[0], [t.currentDirection for t in server.getTransceivers()]
    finally:
        await client.close()
        await server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_add_track_reuses_the_participants_sendonly_transceiver_and_never_sends() -> None:
    frames, directions = await _forward_one_audio(use_add_track=True)
    assert directions == ["recvonly"]
    assert frames == 0


async def test_own_sendonly_transceiver_starts_the_server_audio_sender() -> None:
    frames, directions = await _forward_one_audio(use_add_track=False)
    assert directions == ["recvonly", "sendonly"]
    assert frames >= 10
