"""Audio first through signaling: the media node's VideoPaused reaches that participant only,
and the "audio only" switch (`receive_video`) reaches the media node, also for a media
connection made after it was chosen."""

from __future__ import annotations

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from media.interfaces import PeerQuality, PublishLimit, UpstreamQuality, VideoPaused
from media.quality import LinkQuality
from server.http import keys
from server.sessions.models import SessionParticipant
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import FakeMediaNode, host_and_admitted_guest
from tests.polling import eventually


async def test_video_paused_goes_to_the_weak_participant_and_audio_only_to_the_media_node(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host, guest, sess = await host_and_admitted_guest(people)
    room_id = sess["room_id"]
    await host.expect("participant_joined")

    # audio only, chosen before the media connection: applied once the offer is answered
    assert (await guest.request("receive_video", enabled=False))["type"] == "ack"
    assert (room_id, guest.peer_id) not in fake_media.receive_video
    offer_id = await guest.send("offer", sdp="v=0 guest offer")
    await guest.expect("answer", re=offer_id)
    assert fake_media.receive_video[(room_id, guest.peer_id)] is False
    # and switched back on a running connection
    assert (await guest.request("receive_video", enabled=True))["type"] == "ack"
    assert fake_media.receive_video[(room_id, guest.peer_id)] is True

    fake_media.push(VideoPaused(room_id, guest.peer_id, (host.peer_id,), True))
    paused = await guest.expect("video_paused")
    assert paused["peers"] == [host.peer_id]
    fake_media.push(VideoPaused(room_id, guest.peer_id, (host.peer_id,), False))
    resumed = await guest.expect("video_resumed")
    assert resumed["peers"] == [host.peer_id]
    # the host was told nothing: its next message is the answer to its own ping
    pong = await host.request("ping")
    assert pong["type"] in ("ack", "pong")
    assert not host.seen("video_paused") and not host.seen("video_resumed")

    # the guest's link is too weak for the host's camera: the host is asked to send less
    fake_media.push(PublishLimit(room_id, host.peer_id, 280_000))
    assert (await host.expect("publish_limit"))["max_kbps"] == 280
    fake_media.push(PublishLimit(room_id, host.peer_id, None))
    assert (await host.expect("publish_limit"))["max_kbps"] is None
    assert not guest.seen("publish_limit")


async def test_a_participants_link_quality_reaches_the_session_record(
    server: TestServer, people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host, guest, sess = await host_and_admitted_guest(people)
    room_id = sess["room_id"]

    quality = LinkQuality(
        seconds=60.0,
        median_kbps=180,
        min_kbps=40,
        loss_pct=7.5,
        max_loss_pct=25.0,
        video_paused_s=20.0,
        grade="poor",
    )
    fake_media.push(PeerQuality(room_id, guest.peer_id, quality))
    fake_media.push(PeerQuality(room_id, "p-unknown", quality))  # nobody's: ignored
    node = server.app[node_key]

    async def qualities() -> list[dict[str, object] | None]:
        await node.journal.flush()
        async with server.app[keys.db]() as session:
            rows = await session.scalars(
                select(SessionParticipant).where(SessionParticipant.session_id == sess["id"])
            )
            return [r.quality for r in rows if r.quality is not None]

    async def stored() -> bool:
        return bool(await qualities())

    await eventually(stored, what="the guest's link quality stored")
    assert await qualities() == [quality.as_json()]
    # it is for the record, not for the other participants
    pong = await host.request("ping")
    assert pong["type"] in ("ack", "pong")
    assert not host.seen("participant_quality")

    # the room ends and is let go; the media node's summary of the host comes after that
    assert (await host.request("end_session"))["type"] == "ack"
    await eventually(lambda: room_id not in node.rooms, what="the room let go")
    fake_media.push(PeerQuality(room_id, host.peer_id, quality))

    async def both() -> bool:
        return len(await qualities()) == 2

    await eventually(both, what="the host's link quality stored after the room ended")


async def test_a_senders_upstream_grade_reaches_the_others_as_its_participant_update(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    """Issue #18 item 8: loss upstream of the server shows in the others' view of the sender."""
    host, guest, sess = await host_and_admitted_guest(people)
    room_id = sess["room_id"]
    await host.expect("participant_joined")

    fake_media.push(UpstreamQuality(room_id, guest.peer_id, "poor"))
    update = await host.expect("participant_update")
    assert update["participant"]["peer_id"] == guest.peer_id
    assert update["participant"]["upstream"] == "poor"
    fake_media.push(UpstreamQuality(room_id, guest.peer_id, "lost"))
    update = await host.expect("participant_update")
    assert update["participant"]["upstream"] == "lost"


async def test_a_saturated_media_worker_refuses_the_rooms_first_offer_with_its_own_code(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    """Issue #18 item 7: the client is told `media_saturated` in Chinese and may retry."""
    _host, guest, _ = await host_and_admitted_guest(people)
    fake_media.saturated = True
    offer_id = await guest.send("offer", sdp="v=0 guest offer")
    error = await guest.expect("error", re=offer_id)
    assert error["code"] == "media_saturated"
    assert error["message_zh"] == "音视频服务繁忙，请稍后再试"
