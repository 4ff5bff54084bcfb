"""Staff and residents through the real app (create_app + signaling.ws.setup) on SQLite, with a
fake media node: lobby, admission, the official rule, moderation, chat and the session record."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.http import keys
from server.sessions.models import ChatMessage, SessionEvent, SessionParticipant
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import FakeMediaNode, new_session, new_token
from tests.polling import eventually


async def _flush(server: TestServer) -> None:
    node = server.app[node_key]
    await node.journal.flush()


async def _rows(server: TestServer, model: Any, **where: Any) -> list[Any]:
    async with server.app[keys.db]() as session:
        stmt = select(model).filter_by(**where)
        return list((await session.scalars(stmt)).all())


async def test_resident_waits_is_admitted_chats_and_is_paused_without_official(
    server: TestServer, people: MakeParticipant
) -> None:
    host = await people("mediator", "mediator01")
    sess = await new_session(host, title="邻里纠纷调解")
    invite = await new_token(host, sess["id"], name="张三")
    events = server.app[node_key].bus.subscribe_events()

    await host.connect()
    w = await host.join(sess["room_id"])
    assert w["status"] == "joined" and w["role"] == "host"
    assert {s["urls"][0] for s in w["ice_servers"]} == {
        "stun:turn.example.test:3478", "turn:turn.example.test:3478"}  # fmt: skip

    guest = await people("resident")
    await guest.connect()
    gw = await guest.join(sess["room_id"], token=invite["token"])
    assert gw["status"] == "lobby" and gw["participants"] == []

    lobby = await host.expect("lobby_update")
    assert [e["display_name"] for e in lobby["waiting"]] == ["张三"]

    ack = await host.request("admit", peer_id=guest.peer_id)
    assert ack["type"] == "ack"
    admitted = await guest.expect("admitted")
    assert {p["peer_id"] for p in admitted["participants"]} == {host.peer_id, guest.peer_id}
    joined = await host.expect("participant_joined")
    assert joined["participant"]["peer_id"] == guest.peer_id

    assert (await guest.request("chat", text="您好"))["type"] == "ack"
    chat = await host.expect("chat_message")
    assert chat["text"] == "您好" and chat["from_peer"] == guest.peer_id

    # The last official leaves: the resident goes back to the lobby (paused) ...
    assert (await host.request("leave"))["type"] == "ack"
    assert (await guest.expect("paused"))["reason"] == "no_official"
    # ... and comes back when an official returns.
    host2 = await people("mediator again", "mediator01")
    await host2.connect()
    await host2.join(sess["room_id"])
    readmitted = await guest.expect("admitted")
    assert host2.peer_id in {p["peer_id"] for p in readmitted["participants"]}

    await _flush(server)
    chats = await _rows(server, ChatMessage, session_id=sess["id"])
    assert [c.text for c in chats] == ["您好"]
    parts = await _rows(server, SessionParticipant, session_id=sess["id"])
    assert {p.identity for p in parts} >= {
        "staff:" + str(parts[0].staff_id),
        f"guest:{invite['jti']}",
    }
    guest_rows = [p for p in parts if p.identity.startswith("guest:")]
    assert guest_rows[0].role.value == "party" and guest_rows[0].joined_at is not None
    types = [e.type for e in await _rows(server, SessionEvent, session_id=sess["id"])]
    for expected in ("session.started", "participant.waiting", "participant.admitted",
                     "participant.joined", "participant.left", "participant.paused"):  # fmt: skip
        assert expected in types
    audit_actions = {a.action for a in await _rows(server, AuditEntry)}
    assert "signaling.participant.admitted" in audit_actions
    seen: set[str] = set()
    while len(seen) < 3:
        seen.add((await events.get()).type)
    assert "session.started" in seen or "participant.joined" in seen


async def test_deny_remove_lock_and_force_mute(
    server: TestServer, people: MakeParticipant, fake_media: FakeMediaNode
) -> None:
    host = await people("host", "window01")
    sess = await new_session(host, kind="reception")
    await host.connect()
    await host.join(sess["room_id"])

    a = await people("a")
    b = await people("b")
    ta = await new_token(host, sess["id"], name="甲")
    tb = await new_token(host, sess["id"], name="乙")
    await a.connect()
    await a.join(sess["room_id"], token=ta["token"])
    await b.connect()
    await b.join(sess["room_id"], token=tb["token"])

    assert (await host.request("deny", peer_id=b.peer_id, reason="走错房间"))["type"] == "ack"
    assert (await b.expect("denied"))["reason"] == "走错房间"
    assert await b.expect_closed() == 4403
    # A denied grant cannot come back.
    await b.connect()
    err = await b.request("join", room_id=sess["room_id"], token=tb["token"])
    assert err["code"] == "forbidden"

    await host.request("admit", peer_id=a.peer_id)
    await a.expect("admitted")

    # A party may not moderate.
    err = await a.request("lock", locked=True)
    assert err["type"] == "error" and err["code"] == "forbidden"

    # Force mute: the party is told, everyone sees it, the media node stops forwarding.
    answer = await a.request("offer", sdp="v=0 a")
    assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
    assert (await host.request("force_mute", peer_id=a.peer_id, kind="audio"))["type"] == "ack"
    fm = await a.expect("forced_mute")
    assert fm["kind"] == "audio" and fm["muted"] is True
    upd = await host.expect_where(lambda m: m["type"] == "participant_update"
                                  and m["participant"]["forced_audio"])  # fmt: skip
    assert upd["participant"]["peer_id"] == a.peer_id
    assert fake_media.forwarding[(sess["room_id"], a.peer_id, "audio")] is False
    await host.request("ask_unmute", peer_id=a.peer_id, kind="video")
    assert (await a.expect("unmute_request"))["kind"] == "video"

    # Lock: new guests are refused.
    assert (await host.request("lock", locked=True))["type"] == "ack"
    c = await people("c")
    tc = await new_token(host, sess["id"], name="丙")
    await c.connect()
    err = await c.request("join", room_id=sess["room_id"], token=tc["token"])
    assert err["code"] == "room_locked" and err["message_zh"]

    assert (await host.request("remove", peer_id=a.peer_id))["type"] == "ack"
    await a.expect("removed")
    assert await a.expect_closed() == 4404
    left = await host.expect("participant_left")
    assert left["peer_id"] == a.peer_id and left["reason"] == "removed"

    assert (await host.request("end_session"))["type"] == "ack"
    await host.expect("session_ended")
    assert await host.expect_closed() == 4410
    await _flush(server)
    types = [e.type for e in await _rows(server, SessionEvent, session_id=sess["id"])]
    for expected in ("participant.denied", "participant.removed", "room.locked",
                     "participant.force_muted", "session.ended"):  # fmt: skip
        assert expected in types


async def test_full_room_and_second_connection_replaces_first(
    server: TestServer, people: MakeParticipant
) -> None:
    host = await people("host", "mediator01")
    sess = await new_session(host, capacity=2)
    await host.connect()
    await host.join(sess["room_id"])
    t1 = await new_token(host, sess["id"], name="一")
    t2 = await new_token(host, sess["id"], name="二")
    g1, g2 = await people("g1"), await people("g2")
    await g1.connect()
    await g1.join(sess["room_id"], token=t1["token"])
    await g2.connect()
    await g2.join(sess["room_id"], token=t2["token"])
    await host.request("admit", peer_id=g1.peer_id)
    err = await host.request("admit", peer_id=g2.peer_id)
    assert err["code"] == "room_full"
    # The same identity again (a reloaded page): the new connection takes the place.
    g1b = await people("g1 again")
    await g1b.connect()
    w = await g1b.join(sess["room_id"], token=t1["token"])
    assert w["resumed"] is True and w["status"] == "joined" and w["peer_id"] == g1.peer_id
    err = await g1.expect("error")
    assert err["code"] == "connection_replaced"
    assert await g1.expect_closed() == 4409
    # The session goes on.
    assert (await g1b.request("chat", text="还在"))["type"] == "ack"
    assert (await host.expect("chat_message"))["text"] == "还在"


async def test_an_emptied_room_keeps_its_lock_and_deny_list(
    server: TestServer, people: MakeParticipant
) -> None:
    """Everyone leaves (the room is retired), the host comes back: the room is re-created from
    its saved state, so a denied grant stays refused and the lock holds."""
    host = await people("host", "window01")
    sess = await new_session(host, kind="reception")
    await host.connect()
    await host.join(sess["room_id"])
    b = await people("b")
    tb = await new_token(host, sess["id"], name="乙")
    await b.connect()
    await b.join(sess["room_id"], token=tb["token"])
    assert (await host.request("deny", peer_id=b.peer_id))["type"] == "ack"
    assert await b.expect_closed() == 4403
    assert (await host.request("lock", locked=True))["type"] == "ack"
    assert (await host.request("leave"))["type"] == "ack"
    node = server.app[node_key]
    await eventually(lambda: sess["room_id"] not in node.rooms, what="the room to retire")

    await b.connect()
    err = await b.request("join", room_id=sess["room_id"], token=tb["token"])
    assert err["type"] == "error" and err["code"] == "forbidden", err
    c = await people("c")
    tc = await new_token(host, sess["id"], name="丙")
    await c.connect()
    err = await c.request("join", room_id=sess["room_id"], token=tc["token"])
    assert err["type"] == "error" and err["code"] == "room_locked", err
    host2 = await people("host again", "window01")
    await host2.connect()
    w = await host2.join(sess["room_id"])
    assert w["status"] == "joined" and w["room"]["locked"] is True
