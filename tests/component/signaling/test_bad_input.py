"""Bad input gets a typed error and the session goes on; nothing in another room changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from server.sessions.tokens import JoinGrant, issue_join_token
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import (
    host_and_admitted_guest,
    new_session,
    new_token,
)


async def test_malformed_messages_get_typed_errors_and_the_room_goes_on(
    people: MakeParticipant,
) -> None:
    host, guest, _ = await host_and_admitted_guest(people)
    # Another room with its own participants, which must not notice anything.
    other_host = await people("other host", "window01")
    other = await new_session(other_host)
    await other_host.connect()
    await other_host.join(other["room_id"])

    cases = [
        ('{"type": "dance", "id": "x1"}', "unknown_type", "x1"),
        ('{"type": "chat", "id": "x2", "text": 5}', "bad_message", "x2"),
        ('{"type": "chat", "id": "x3", "text": "hi", "extra": 1}', "bad_message", "x3"),
        ("not json at all", "bad_message", None),
        ('{"type": "lock", "id": "x4", "locked": "perhaps"}', "bad_message", "x4"),
        ('{"type": "answer", "id": "x5", "sdp": "v=0 early"}', "out_of_order", "x5"),
        ('{"type": "candidate", "id": "x6", "candidate": "candidate:1"}', "out_of_order", "x6"),
        ('{"type": "admit", "id": "x7", "peer_id": "p-nobody"}', "peer_not_found", "x7"),
        ('{"type": "join", "id": "x8", "room_id": "r-1"}', "already_joined", "x8"),
        (json.dumps({"type": "chat", "id": "x9", "text": "a" * 70_000}), "message_too_large", "x9"),
    ]
    for text, code, re in cases:
        sender = host if code in ("peer_not_found",) else guest
        await sender.ws.send_str(text)  # type: ignore[union-attr]
        err = await sender.expect("error")
        assert (err["code"], err["re"]) == (code, re), text
        assert err["message"] and err["message_zh"]
    field_err = [c for c in cases if c[1] == "bad_message"]
    assert field_err
    # Still in session, both ways.
    assert (await guest.request("chat", text="ok"))["type"] == "ack"
    assert (await host.expect("chat_message"))["text"] == "ok"
    assert (await other_host.request("ping"))["type"] == "pong"
    assert other_host.seen("chat_message") == [] and other_host.seen("error") == []


async def test_field_is_named_in_the_error(people: MakeParticipant) -> None:
    _, guest, _ = await host_and_admitted_guest(people)
    await guest.ws.send_str('{"type": "presence", "id": "f1", "quality": "superb"}')  # type: ignore[union-attr]
    err = await guest.expect("error")
    assert err["code"] == "bad_message" and err["field"] == "quality"


async def test_expired_forged_revoked_and_foreign_tokens(
    server: TestServer, people: MakeParticipant
) -> None:
    host = await people("host", "mediator01")
    sess = await new_session(host)
    other = await new_session(host)
    secret = server.app[node_key].config.secret
    now = datetime.now(UTC)
    guest = await people("guest")
    await guest.connect()

    async def refused(token: str, room_id: str = sess["room_id"]) -> str:
        err = await guest.request("join", room_id=room_id, token=token)
        assert err["type"] == "error"
        return str(err["code"])

    expired = issue_join_token(secret, JoinGrant(
        jti="old", room_id=sess["room_id"], identity="guest:old", display_name="旧",
        role="party", permissions=frozenset({"audio"}), not_before=now - timedelta(days=2),
        expires_at=now - timedelta(days=1)))  # fmt: skip
    assert await refused(expired) == "token_expired"
    forged = issue_join_token(b"not-the-secret", JoinGrant(
        jti="f", room_id=sess["room_id"], identity="guest:f", display_name="假",
        role="party", permissions=frozenset({"audio"}), not_before=now,
        expires_at=now + timedelta(hours=1)))  # fmt: skip
    assert await refused(forged) == "token_invalid"
    unrecorded = issue_join_token(secret, JoinGrant(
        jti="never-issued", room_id=sess["room_id"], identity="guest:never-issued",
        display_name="无", role="party", permissions=frozenset({"audio"}), not_before=now,
        expires_at=now + timedelta(hours=1)))  # fmt: skip
    assert await refused(unrecorded) == "token_invalid"
    tok = await new_token(host, sess["id"])
    assert await refused(tok["token"], room_id=other["room_id"]) == "token_invalid"
    status, _ = await host.api("POST", f"/api/tokens/{tok['jti']}/revoke")
    assert status == 200
    assert await refused(tok["token"]) == "token_revoked"
    assert await refused("garbage") == "token_invalid"
    # Anonymous without token.
    err = await guest.request("join", room_id=sess["room_id"])
    assert err["code"] == "not_authenticated"
    err = await guest.request("join", room_id="r-doesnotexist")
    assert err["code"] == "room_not_found"
    # Still usable.
    good = await new_token(host, sess["id"])
    await host.connect()
    await host.join(sess["room_id"])
    w = await guest.join(sess["room_id"], token=good["token"])
    assert w["status"] == "lobby"


async def test_messages_before_join_and_wrong_subprotocol(people: MakeParticipant) -> None:
    p = await people("early")
    await p.connect()
    err = await p.request("chat", text="hello?")
    assert err["code"] == "not_joined"
    assert (await p.request("ping"))["type"] == "pong"
    q = await people("old client")
    q.ws = await q.session.ws_connect(q.base + "/ws")  # no subprotocol: error, close 4400
    assert (await q.expect("error"))["code"] == "bad_message"
    assert await q.expect_closed() == 4400


async def test_an_unsupported_subprotocol_is_told_the_supported_ones(
    people: MakeParticipant,
) -> None:
    q = await people("future client")
    ws = await q.session.ws_connect(q.base + "/ws", protocols=("onedoor.v2",))
    first = await ws.receive_json()
    assert first["code"] == "bad_message" and "onedoor.v1" in first["message"]
    closing = await ws.receive()
    assert closing.type is WSMsgType.CLOSE
    assert (
        closing.data == 4400 and closing.extra == "unsupported subprotocol; supported: onedoor.v1"
    )
    await ws.close()
