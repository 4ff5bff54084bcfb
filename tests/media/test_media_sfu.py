"""Passthrough SFU with real aiortc peers on loopback."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from media.errors import InvalidDescription, PeerNotFound
from media.interfaces import (
    ActiveSpeaker,
    PeerFailed,
    PublishGrant,
    SessionDescription,
    SubscriberTracks,
)
from media.sfu import SfuMediaNode
from tests.media.rtc_clients import (
    CodecCalls,
    EventPump,
    PatternVideoTrack,
    TestClient,
    receive_event,
    wait_until,
)

pytestmark = pytest.mark.media


async def test_four_participants_each_receive_three_videos_and_audios_without_relay_codecs(
    node: SfuMediaNode, pump: EventPump
) -> None:
    calls = CodecCalls()
    with calls.installed():
        clients = [pump.add(TestClient(node, "r1", f"p{i}")) for i in range(4)]
        for client in clients:
            await client.join()
        for client in clients:
            others = {c.peer_id for c in clients} - {client.peer_id}
            await wait_until(
                lambda c=client, o=others: (
                    c.publishers("video", 5) == o and c.publishers("audio", 10) == o
                ),
                20,
                f"{client.peer_id} receiving video and audio from {others}",
            )
        relay = calls.relay_calls(node)
        for client in clients:
            await client.close()
    assert not pump.errors
    assert relay["relay_encoders_seen"] == 24  # 4 subscribers × 3 publishers × (video, audio)
    assert relay["video_encode"] == relay["video_decode"] == 0
    assert relay["audio_encode"] == relay["audio_decode"] == 0
    assert relay["client_video_decodes"] > 0


async def _room(pump: EventPump, node: SfuMediaNode, n: int, room: str = "r") -> list[TestClient]:
    clients = [pump.add(TestClient(node, room, f"p{i}")) for i in range(n)]
    for client in clients:
        await client.join()
    for client in clients:
        others = {c.peer_id for c in clients} - {client.peer_id}
        await wait_until(
            lambda c=client, o=others: c.publishers("video", 3) == o, 15, "video flowing"
        )
    return clients


async def test_late_joiner_decodes_video_within_one_second(
    node: SfuMediaNode, pump: EventPump
) -> None:
    clients = await _room(pump, node, 2)
    await asyncio.sleep(1.5)  # aiortc's encoder makes no keyframe unless asked
    late = pump.add(TestClient(node, "r", "late"))
    await late.join()
    joined_at = asyncio.get_running_loop().time()
    await wait_until(lambda: late.publishers("video") == {"p0", "p1"}, 1.0, "late joiner video")
    assert asyncio.get_running_loop().time() - joined_at <= 1.0
    assert all(
        r.keyframe_sizes == [(320, 240)] for r in late.received.values() if r.kind == "video"
    )
    for client in [*clients, late]:
        await client.close()


async def test_stalled_subscriber_stays_bounded_and_does_not_delay_others(
    node: SfuMediaNode, pump: EventPump
) -> None:
    clients = await _room(pump, node, 3)
    # Stall the server's sender towards p2 for p0's video: nothing reads that queue any more.
    session = node._rooms["r"].peers["p2"]
    stalled = next(
        (transceiver, track)
        for transceiver, track in session.subscriptions.values()
        if track.forwarder.publisher_id == "p0" and track.kind == "video"
    )
    stalled[0].sender.replaceTrack(None)
    before = clients[1].frames_from("p0", "video")
    await asyncio.sleep(3.0)
    stats = {(s.subscriber_id, s.publisher_id, s.kind): s for s in node.subscription_stats("r")}
    blocked = stats[("p2", "p0", "video")]
    assert blocked.queued <= blocked.max_queued
    assert blocked.dropped > 0
    # p1 still gets p0's video at its normal rate (30 fps: ≥ 45 frames in 3 s is generous)
    assert clients[1].frames_from("p0", "video") - before >= 45
    assert stats[("p1", "p0", "video")].dropped == 0
    for client in clients:
        await client.close()


async def test_forced_mute_stops_forwarding_and_unmute_resumes(
    node: SfuMediaNode, pump: EventPump
) -> None:
    clients = await _room(pump, node, 2)
    await node.set_forwarding(room_id="r", peer_id="p0", kind="video", enabled=False)
    await asyncio.sleep(0.3)  # frames already in flight
    video_before = clients[1].frames_from("p0", "video")
    audio_before = clients[1].frames_from("p0", "audio")
    await asyncio.sleep(1.0)
    assert clients[1].frames_from("p0", "video") == video_before
    assert clients[1].frames_from("p0", "audio") > audio_before + 20
    await node.set_forwarding(room_id="r", peer_id="p0", kind="video", enabled=True)
    await wait_until(
        lambda: clients[1].frames_from("p0", "video") > video_before + 5, 3, "video resumed"
    )
    for client in clients:
        await client.close()


async def test_malformed_sdp_is_rejected_and_other_peers_go_on(
    node: SfuMediaNode, pump: EventPump
) -> None:
    clients = await _room(pump, node, 2)
    for sdp in ("not an sdp", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n"):
        with pytest.raises(InvalidDescription):
            await node.accept_offer(
                room_id="r",
                peer_id="bad",
                offer=SessionDescription("offer", sdp),
                ice_servers=[],
                grant=PublishGrant(),
            )
    with pytest.raises(PeerNotFound):
        await node.accept_answer(
            room_id="r", peer_id="bad", answer=SessionDescription("answer", "x")
        )
    before = clients[1].frames_from("p0", "video")
    await wait_until(
        lambda: clients[1].frames_from("p0", "video") > before + 10, 3, "video goes on"
    )
    assert "bad" not in node._rooms["r"].peers
    for client in clients:
        await client.close()


async def test_offer_without_supported_codec_is_rejected(node: SfuMediaNode) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="sendonly")
    transceiver.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    )
    await pc.setLocalDescription(await pc.createOffer())
    with pytest.raises(InvalidDescription, match="codec"):
        await node.accept_offer(
            room_id="r",
            peer_id="h264-only",
            offer=SessionDescription("offer", pc.localDescription.sdp),
            ice_servers=[],
            grant=PublishGrant(),
        )
    await pc.close()


async def test_ice_that_never_connects_fails_the_peer_only() -> None:
    node = SfuMediaNode(host_addresses=["127.0.0.1"])
    pump = EventPump(node)
    try:
        clients = await _room(pump, node, 2)
        # Only the silent peer gets the short timeout (read when its watchdog starts): the
        # others' ICE may take over a second on a busy machine, and they must connect.
        node.ice_connect_timeout_s = 1.0
        silent = TestClient(node, "r", "silent")  # offers, but never applies the answer
        assert silent.video is not None
        silent.pc.addTransceiver(silent.video, direction="sendonly")
        await silent.pc.setLocalDescription(await silent.pc.createOffer())
        await node.accept_offer(
            room_id="r",
            peer_id="silent",
            offer=SessionDescription("offer", silent.pc.localDescription.sdp),
            ice_servers=[],
            grant=PublishGrant(),
        )
        failed = await receive_event(pump, PeerFailed, 5, peer_id="silent")
        assert "not connected" in failed.reason
        await wait_until(lambda: "silent" not in node._rooms["r"].peers, 2, "silent closed")
        before = clients[0].frames_from("p1", "video")
        await wait_until(
            lambda: clients[0].frames_from("p1", "video") > before + 10, 3, "others go on"
        )
        assert not [e for e in pump.events if isinstance(e, PeerFailed) and e.peer_id != "silent"]
        await silent.close()
        for client in clients:
            await client.close()
    finally:
        await pump.close()
        await node.close()


async def test_active_speaker_is_the_loud_participant(node: SfuMediaNode, pump: EventPump) -> None:
    loud = pump.add(TestClient(node, "r", "loud"))
    quiet = pump.add(TestClient(node, "r", "quiet"))
    assert quiet.audio is not None
    quiet.audio.amplitude = 0.0
    for client in (loud, quiet):
        await client.join()
    event = await receive_event(pump, ActiveSpeaker, 5, room_id="r")
    assert event.peer_id == "loud"
    assert event.levels["loud"] > event.levels["quiet"]
    for client in (loud, quiet):
        await client.close()


async def test_close_peer_stops_its_tracks_for_others(node: SfuMediaNode, pump: EventPump) -> None:
    clients = await _room(pump, node, 3)
    await node.close_peer(room_id="r", peer_id="p0")
    await asyncio.sleep(0.5)
    before = clients[1].frames_from("p0", "video")
    others_before = clients[1].frames_from("p2", "video")
    await asyncio.sleep(1.0)
    assert clients[1].frames_from("p0", "video") == before
    assert clients[1].frames_from("p2", "video") > others_before + 10
    assert not pump.errors
    for client in clients:
        await client.close()


async def test_ice_consent_expiry_fails_the_peer_and_signaling_is_told(
    node: SfuMediaNode, pump: EventPump
) -> None:
    """aioice closes a connection whose consent checks went unanswered for 30 s; aiortc then
    reports the peer connection `closed`, not `failed`. The SFU must treat that as a failure
    (PeerFailed, peer closed) rather than keep a dead peer in the room."""
    clients = await _room(pump, node, 3)
    server_pc = node._rooms["r"].peers["p0"].pc
    ice = server_pc.getTransceivers()[0].receiver.transport.transport
    await ice._connection.close()  # what aioice does when consent expires
    failed = await receive_event(pump, PeerFailed, 5, peer_id="p0")
    assert "closed" in failed.reason
    await wait_until(lambda: "p0" not in node._rooms["r"].peers, 3, "p0 closed")
    before = clients[1].frames_from("p2", "video")
    await wait_until(lambda: clients[1].frames_from("p2", "video") > before + 10, 3, "others go on")
    assert not [e for e in pump.events if isinstance(e, PeerFailed) and e.peer_id != "p0"]
    for client in clients:
        await client.close()


async def test_a_cancelled_close_peer_does_not_break_aiortcs_own_close(
    node: SfuMediaNode, pump: EventPump
) -> None:
    """aiortc closes a failed peer connection itself (a task of its own); when our close of the
    same peer is cancelled meanwhile (a shutdown, a timeout), awaiting aiortc's close future
    from a cancelled task cancelled that future, and aiortc's own close then died with
    InvalidStateError ("Task exception was never retrieved") halfway through. Ours is shielded:
    the close runs to its end whoever started it."""
    clients = await _room(pump, node, 2)
    server_pc = node._rooms["r"].peers["p0"].pc
    own = asyncio.ensure_future(server_pc.close())  # what aiortc does on a failed connection
    ours = asyncio.create_task(node.close_peer(room_id="r", peer_id="p0"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not own.done() and not ours.done()
    ours.cancel()
    await own  # raised InvalidStateError before
    assert server_pc.connectionState == "closed"
    for client in clients:
        await client.close()


async def test_each_subscriber_is_told_which_track_is_whose_and_what_it_carries(
    node: SfuMediaNode, pump: EventPump
) -> None:
    """`SubscriberTracks` (signaling's track_published/track_unpublished, issue #19): the ids
    the subscriber really gets, the sender, and microphone / camera / shared screen."""
    a = pump.add(TestClient(node, "r-src", "a", grant=PublishGrant(screen=True)))
    a.pc.addTransceiver(PatternVideoTrack(), direction="sendonly")  # its shared screen
    b = pump.add(TestClient(node, "r-src", "b", video=False, audio=False))
    try:
        await a.join()
        await b.join()

        def told_b(count: int) -> SubscriberTracks | None:
            for event in reversed(pump.events):
                if isinstance(event, SubscriberTracks) and event.peer_id == "b":
                    return event if len(event.tracks) == count else None
            return None

        await wait_until(lambda: told_b(3) is not None, 20, "b told of a's three tracks")
        await wait_until(lambda: len(b.received) == 3, 20, "b receiving a's three tracks")
        told = told_b(3)
        assert told is not None
        assert {t.track_id for t in told.tracks} == set(b.received)
        assert {t.publisher_id for t in told.tracks} == {"a"}
        assert sorted((t.kind, t.source) for t in told.tracks) == [
            ("audio", "microphone"),
            ("video", "camera"),
            ("video", "screen"),
        ]
        await node.close_peer(room_id="r-src", peer_id="a")
        await wait_until(lambda: told_b(0) is not None, 20, "b told a's tracks ended")
    finally:
        await a.close()
        await b.close()
