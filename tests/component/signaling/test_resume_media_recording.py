"""Grace period and resume, negotiation relay through a fake media node, recording consent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from media.interfaces import ActiveSpeaker, PeerDescription, SessionDescription
from server.http import keys
from server.sessions.models import Recording, SessionParticipant
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import (
    FakeMediaNode,
    Participant,
    host_and_admitted_guest,
    new_session,
    new_token,
)
from tests.polling import eventually


async def _room(
    people: MakeParticipant, **extra: Any
) -> tuple[Participant, Participant, dict[str, Any]]:
    host, guest, sess = await host_and_admitted_guest(people, **extra)
    await host.expect("participant_joined")
    return host, guest, sess


@pytest.fixture
def grace_s() -> float:
    return 3.0


async def test_drop_keeps_the_place_and_resume_takes_it_back(people: MakeParticipant) -> None:
    host, guest, _ = await _room(people)
    token, peer = guest.resume_token, guest.peer_id
    await guest.drop()
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and not m["participant"]["connected"])  # fmt: skip
    assert upd["participant"]["peer_id"] == peer

    await guest.connect()
    ack = await guest.request("resume", resume_token=token)
    assert ack["type"] == "ack"
    w = await guest.expect("welcome")
    assert w["resumed"] is True and w["peer_id"] == peer and w["status"] == "joined"
    assert w["media_reset"] is True  # no media peer was negotiated yet
    back = await host.expect_where(lambda m: m["type"] == "participant_update"
                                   and m["participant"]["connected"])  # fmt: skip
    assert back["participant"]["peer_id"] == peer
    assert (await guest.request("chat", text="回来了"))["type"] == "ack"
    assert host.seen("participant_left") == []


async def test_after_the_grace_period_the_participant_is_removed(people: MakeParticipant) -> None:
    host, guest, _ = await _room(people)
    token, peer = guest.resume_token, guest.peer_id
    await guest.drop()
    left = await host.expect("participant_left")
    assert left == {"type": "participant_left", "peer_id": peer, "reason": "timeout"}
    await guest.connect()
    err = await guest.request("resume", resume_token=token)
    assert err["code"] == "resume_failed"


async def test_negotiation_is_relayed_in_order(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host, guest, sess = await _room(people)
    room_id = sess["room_id"]
    # Trickle right behind the offer: the lane keeps the order.
    offer_id = await guest.send("offer", sdp="v=0 guest offer")
    cand_id = await guest.send("candidate", candidate="candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                               sdp_mid="0", sdp_mline_index=0)  # fmt: skip
    end_id = await guest.send("candidate", candidate=None)
    answer = await guest.expect("answer", re=offer_id)
    assert answer["sdp"] == f"v=0 answer-for-{guest.peer_id}"
    assert (await guest.expect("ack", re=cand_id)) and (await guest.expect("ack", re=end_id))
    assert [c for p, c in fake_media.candidates if p == guest.peer_id][-1] is None
    grant = fake_media.peers[(room_id, guest.peer_id)]
    assert (grant.audio, grant.video, grant.screen) == (True, True, False)

    # Server-initiated renegotiation: an offer arrives, the client answers.
    fake_media.server_offer(room_id, guest.peer_id)
    srv = await guest.expect("offer")
    assert srv["sdp"] == "v=0 srv"
    assert (await guest.request("answer", sdp="v=0 client answer"))["type"] == "ack"
    assert fake_media.answers == [(guest.peer_id, "v=0 client answer")]
    # A second answer has no offer to answer.
    assert (await guest.request("answer", sdp="v=0 again"))["code"] == "out_of_order"
    # A bad SDP is a typed media error; the session goes on.
    assert (await guest.request("offer", sdp="garbage"))["code"] == "media_invalid_sdp"

    # Active speaker from the media node shows up as presence.
    fake_media.push(ActiveSpeaker(room_id, guest.peer_id))
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and m["participant"]["speaking"])  # fmt: skip
    assert upd["participant"]["peer_id"] == guest.peer_id
    assert (await guest.request("presence", muted_video=True, quality="poor"))["type"] == "ack"
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and m["participant"]["quality"] == "poor")  # fmt: skip
    assert upd["participant"]["muted_video"] is True


async def test_lobby_participants_cannot_send_media(people: MakeParticipant) -> None:
    host = await people("host", "mediator01")
    sess = await new_session(host)
    await host.connect()
    await host.join(sess["room_id"])
    guest = await people("guest")
    tok = await new_token(host, sess["id"])
    await guest.connect()
    await guest.join(sess["room_id"], token=tok["token"])
    assert (await guest.request("offer", sdp="v=0 early"))["code"] == "not_joined"
    assert (await guest.request("chat", text="x"))["code"] == "not_joined"


async def test_recording_needs_everyones_consent(
    server: TestServer, people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host, guest, sess = await _room(people)
    await host.request("offer", sdp="v=0 h")
    await guest.request("offer", sdp="v=0 g")
    err = await host.request("recording_start")
    assert err["code"] == "consent_missing"
    assert (await host.request("request_consent"))["type"] == "ack"
    await guest.expect("consent_request")
    await host.expect("consent_request")
    await guest.request("recording_consent", consent=True)
    await host.request("recording_consent", consent=True)
    state = await host.expect_where(lambda m: m["type"] == "consent_state" and not m["pending"])
    assert set(state["consented"]) == {host.peer_id, guest.peer_id}
    assert (await host.request("recording_start"))["type"] == "ack"
    assert (await guest.expect("recording_state"))["active"] is True
    node = server.app[node_key]
    assert fake_media.recording[sess["room_id"]] == node.config.recordings_dir / sess["room_id"]
    assert (await host.request("recording_stop"))["type"] == "ack"
    assert (await guest.expect("recording_state"))["active"] is False

    # The files are stored from the media node's RecordingStopped event, exactly once.
    async def stored() -> bool:
        await node.journal.flush()
        async with server.app[keys.db]() as session:
            rows = (await session.scalars(select(Recording).where(
                Recording.session_id == sess["id"]))).all()  # fmt: skip
        return len(rows) >= 2

    await eventually(stored, what="both recording files stored")
    await asyncio.sleep(0.2)  # room for a duplicate to show up: nothing to poll for
    await node.journal.flush()
    async with server.app[keys.db]() as session:
        rows = list((await session.scalars(select(Recording).where(
            Recording.session_id == sess["id"]))).all())  # fmt: skip
        parts = (await session.scalars(select(SessionParticipant).where(
            SessionParticipant.session_id == sess["id"]))).all()  # fmt: skip
    assert len(rows) == 2 and all(len(r.sha256) == 64 and r.size_bytes > 0 for r in rows)
    assert all(p.recording_consent_at is not None for p in parts)


async def test_a_refusal_means_written_minutes(people: MakeParticipant) -> None:
    host, guest, _ = await _room(people)
    await host.request("request_consent")
    await guest.expect("consent_request")
    await guest.request("recording_consent", consent=False)
    state = await host.expect_where(lambda m: m["type"] == "consent_state" and m["refused"])
    assert state["minutes_required"] is True
    err = await host.request("recording_start")
    assert err["code"] == "consent_refused" and "笔录" in err["message_zh"]
    room = await host.expect("room_update")
    assert room["room"]["recording_allowed"] is False


async def _resume(p: Participant) -> dict[str, Any]:
    token = p.resume_token
    await p.connect()
    ack = await p.request("resume", resume_token=token)
    assert ack["type"] == "ack", ack
    return await p.expect("welcome")


def _server_offer(fake_media: FakeMediaNode, room_id: str, guest: Participant, sdp: str) -> None:
    fake_media.push(PeerDescription(room_id, guest.peer_id, SessionDescription("offer", sdp)))


async def _answer_s1(guest: Participant, fake_media: FakeMediaNode) -> None:
    """The guest answers the media node's offer s1, and the answer reaches the media node."""
    assert (await guest.request("answer", sdp="v=0 a1"))["type"] == "ack"
    assert fake_media.answers == [(guest.peer_id, "v=0 a1")]


async def _offered_s1(guest: Participant, fake_media: FakeMediaNode, room_id: str) -> None:
    """The guest's own offer is answered, then the media node's offer s1 reaches it."""
    assert (await guest.request("offer", sdp="v=0 guest offer"))["type"] == "answer"
    _server_offer(fake_media, room_id, guest, "v=0 s1")
    assert (await guest.expect("offer"))["sdp"] == "v=0 s1"


async def test_a_server_offer_sent_while_away_is_offered_again_on_resume(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host, guest, sess = await _room(people)
    room_id = sess["room_id"]
    assert (await guest.request("offer", sdp="v=0 guest offer"))["type"] == "answer"
    await guest.drop()
    await host.expect_where(lambda m: m["type"] == "participant_update"
                            and not m["participant"]["connected"])  # fmt: skip
    # Someone's tracks come while the guest's socket is gone: the offer reaches nobody.
    _server_offer(fake_media, room_id, guest, "v=0 s1")
    await host.request("chat", text="等一下")  # the room has handled the media event by now
    w = await _resume(guest)
    assert w["media_reset"] is False  # the guest keeps its peer connection...
    offer = await guest.expect("offer")  # ...and gets the offer it missed
    assert offer["sdp"] == "v=0 s1"
    await _answer_s1(guest, fake_media)


async def test_an_offer_whose_answer_was_lost_with_the_socket_comes_again(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    _, guest, sess = await _room(people)
    room_id = sess["room_id"]
    await _offered_s1(guest, fake_media, room_id)
    await guest.drop()  # before the answer left the browser
    w = await _resume(guest)
    assert w["media_reset"] is False
    assert (await guest.expect("offer"))["sdp"] == "v=0 s1"
    await _answer_s1(guest, fake_media)


async def test_an_answered_offer_is_not_offered_again_on_resume(
    people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    _, guest, sess = await _room(people)
    room_id = sess["room_id"]
    await _offered_s1(guest, fake_media, room_id)
    await _answer_s1(guest, fake_media)
    await guest.drop()
    await _resume(guest)
    # The lane is in order: had s1 been offered again, it would come before s2.
    _server_offer(fake_media, room_id, guest, "v=0 s2")
    assert (await guest.expect("offer"))["sdp"] == "v=0 s2"
