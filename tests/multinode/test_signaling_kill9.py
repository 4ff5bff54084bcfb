"""kill -9 of a signaling node, for real: two `onedoor serve` processes of one deployment (one
PostgreSQL database, one Redis, one secret), participants on both in one room, and a SIGKILL
to the node that owns the room. Its participants come back through the other node with their
resume tokens, as the web client does (a new WebSocket, `resume`), within the grace period, and
find the room as it was: locked, the guest still force-muted, the consents given, the resident
still waiting in the lobby.

The in-process variant (`test_signaling_multinode.py`) reaches inside the nodes; this one sees
only what a browser and an operator see: sockets, the HTTP API, and the survivor's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bench.server_process import ServerProcess, start_node
from bench.sigclient import SigClient, SignalingError, Staff
from server.kernel.crypto import PiiCipher
from signaling.bus import RedisRoomDirectory
from signaling.roomstate import RoomState
from tests.conftest import PrivateRedis

pytestmark = pytest.mark.multinode

GRACE_S = 30.0  # ONEDOOR_SIGNALING_GRACE_S, the default
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
PEER_EVENTS = ("participant_joined", "participant_update", "participant_left")


class Deployment:
    def __init__(self, a: ServerProcess, b: ServerProcess, redis_url: str, secret: str) -> None:
        self.a, self.b, self.redis_url, self.secret = a, b, redis_url, secret

    async def saved_state(self, room_id: str) -> RoomState | None:
        """The room's durable state as its owner saved it in Redis (decrypted with the
        deployment's secret, as the node that takes the room over does)."""
        redis = Redis.from_url(self.redis_url)
        try:
            blob = await RedisRoomDirectory(redis, "onedoor:").load_state(room_id)
        finally:
            await redis.aclose()
        if blob is None:
            return None
        return RoomState.model_validate_json(PiiCipher(self.secret.encode()).decrypt(blob))


@pytest.fixture
def deployment(tmp_path: Path, pg_url: str) -> Iterator[Deployment]:
    """Node A and node B: one PostgreSQL database (a migrated clone, the demo district loaded
    once through A's `onedoor demo load`), one Redis, one secret, distinct node ids.

    The Redis is a private redis-server: `onedoor serve` always uses the `onedoor:` prefix, and
    pub/sub channels ignore database numbers, so a shared one would mix concurrent runs."""
    redis = PrivateRedis(tmp_path)
    redis.start()
    secret = secrets.token_urlsafe(32)
    shared = {
        "ONEDOOR_DATABASE_URL": pg_url,
        "ONEDOOR_REDIS_URL": redis.url,
        "ONEDOOR_SECRET_KEY": secret,
        "ONEDOOR_SIGNALING_GRACE_S": str(GRACE_S),
    }
    started: list[ServerProcess] = []
    try:
        started.append(start_node(tmp_path / "node-a", {**shared, "ONEDOOR_NODE_ID": "node-a"}))
        started.append(start_node(tmp_path / "node-b", {**shared, "ONEDOOR_NODE_ID": "node-b"},
                                  prepare_db=False))  # fmt: skip
        yield Deployment(started[0], started[1], redis.url, secret)
    finally:
        for srv in started:
            srv.stop()
        redis.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def clients() -> AsyncIterator[list[SigClient]]:
    made: list[SigClient] = []
    yield made
    for c in made:
        await c.close()


async def _client(
    made: list[SigClient], http: aiohttp.ClientSession, srv: ServerProcess, name: str,
    cookie: str | None = None,
) -> SigClient:  # fmt: skip
    c = SigClient(http, srv.base_url, cookie=cookie, name=name)
    made.append(c)
    hello = await c.connect()
    assert hello["node_id"] == srv.env["ONEDOOR_NODE_ID"]
    return c


async def _admit(host: SigClient, guest: SigClient) -> str:
    """Admit a guest from the lobby; return its fresh resume token (from `admitted`)."""
    assert (await host.request("admit", peer_id=guest.peer_id))["type"] == "ack"
    admitted = await guest.expect("admitted")
    return str(admitted["resume_token"])


async def _resume(
    made: list[SigClient], http: aiohttp.ClientSession, srv: ServerProcess, name: str,
    token: str, cookie: str | None = None,
) -> SigClient:  # fmt: skip
    """What the web client does when its socket drops: a new WebSocket, `resume`. The node
    may have to wait for the dead owner's lease to run out: allow the grace period."""
    c = await _client(made, http, srv, name, cookie)
    ack = await c.request("resume", timeout_s=GRACE_S, resume_token=token)
    assert ack["type"] == "ack", ack
    await c.expect("welcome", timeout_s=GRACE_S)
    return c


async def _sees_everyone(c: SigClient, peers: set[str]) -> dict[str, dict[str, Any]]:
    """Follow the roster from the client's latest welcome until `peers`, all connected."""
    roster = {p["peer_id"]: p for p in c.welcome["participants"]}
    while set(roster) != peers or not all(p["connected"] for p in roster.values()):
        msg = await c.expect(PEER_EVENTS, timeout_s=GRACE_S)
        if msg["type"] == "participant_left":
            roster.pop(msg["peer_id"], None)
        else:
            roster[msg["participant"]["peer_id"]] = msg["participant"]
    return roster


async def _chat(c: SigClient, text: str) -> dict[str, Any]:
    while True:
        msg = await c.expect("chat_message")
        if msg["text"] == text:
            return msg


async def _closed(c: SigClient) -> None:
    """Wait until the server side of the client's socket is gone."""
    with contextlib.suppress(ConnectionError):
        await c.expect("never-sent", timeout_s=10)  # raises ConnectionError once closed
    assert not c.open


async def test_kill_9_of_the_owner_node(
    deployment: Deployment, http: aiohttp.ClientSession, clients: list[SigClient]
) -> None:
    a, b = deployment.a, deployment.b
    cookie_a, csrf_a = await asyncio.to_thread(a.sign_in, "mediator01")
    staff_a = Staff(http, a.base_url, cookie_a, csrf_a)
    sess = await staff_a.create_session("调解 kill -9")
    room_id = sess["room_id"]
    tokens = {name: await staff_a.issue_token(sess["id"], name)
              for name in ("王五", "李四", "赵六", "孙八")}  # fmt: skip

    # The host joins first, on A: A owns the room.
    host = await _client(clients, http, a, "host on A", cookie_a)
    assert (await host.join(room_id))["status"] == "joined"
    resume = {"host": host.welcome["resume_token"]}

    # Guests with join tokens on A and on B, admitted; a resident waits in the lobby (on A).
    guest_a = await _client(clients, http, a, "guest on A")
    assert (await guest_a.join(room_id, token=tokens["王五"]))["status"] == "lobby"
    resume["guest_a"] = await _admit(host, guest_a)
    guest_b = await _client(clients, http, b, "guest on B")
    assert (await guest_b.join(room_id, token=tokens["李四"]))["status"] == "lobby"
    await _admit(host, guest_b)
    resident = await _client(clients, http, a, "resident on A")
    assert (await resident.join(room_id, token=tokens["赵六"]))["status"] == "lobby"
    resume["resident"] = resident.welcome["resume_token"]
    in_room = {host.peer_id, guest_a.peer_id, guest_b.peer_id}

    # Everyone in the room consents; the guest on A is force-muted; the room is locked.
    assert (await host.request("request_consent"))["type"] == "ack"
    for c in (host, guest_a, guest_b):
        await c.expect("consent_request")
        assert (await c.request("recording_consent", consent=True))["type"] == "ack"
    ack = await host.request("force_mute", peer_id=guest_a.peer_id, kind="audio", muted=True)
    assert ack["type"] == "ack", ack
    await guest_a.expect("forced_mute")
    assert (await host.request("lock", locked=True))["type"] == "ack"
    await guest_b.expect("room_update")

    # A saves the room's state to Redis right after each change: wait until it has all of it.
    def complete(state: RoomState | None) -> bool:
        if state is None or not state.locked:
            return False
        members = {m.peer_id: m for m in state.members}
        return (
            members.keys() == in_room | {resident.peer_id}
            and members[guest_a.peer_id].forced_audio
            and all(members[p].consent is True for p in in_room)
            and members[resident.peer_id].status == "lobby"
        )

    async with asyncio.timeout(10):
        while True:
            if complete(await deployment.saved_state(room_id)):
                break
            await asyncio.sleep(0.1)
    for c in clients:
        c.backlog.clear()

    # kill -9 of A: no cleanup, no lease release, no goodbye on the bus.
    os.kill(a.process.pid, signal.SIGKILL)
    assert a.process.wait(10) == -signal.SIGKILL

    # As the web client does, each participant on A reconnects as soon as its socket drops
    # (to B, the node left) and resumes; B holds the resume until A's lease has run out and
    # it has taken the room over. Meanwhile the guest on B stays connected: B re-attaches it.
    async def reconnect(old: SigClient, name: str, token: str, cookie: str | None = None
                        ) -> SigClient:  # fmt: skip
        await _closed(old)
        return await _resume(clients, http, b, name, token, cookie)

    host2, guest_a2, resident2, w = await asyncio.gather(
        reconnect(host, "host on B", resume["host"], cookie_a),
        reconnect(guest_a, "guest again on B", resume["guest_a"]),
        reconnect(resident, "resident again on B", resume["resident"]),
        guest_b.expect("welcome", timeout_s=GRACE_S),
    )
    assert w["resumed"] is True and w["media_reset"] is True
    assert w["peer_id"] == guest_b.peer_id and w["status"] == "joined"
    assert w["room"]["locked"] is True

    hw = host2.welcome
    assert hw["peer_id"] == host.peer_id and hw["status"] == "joined" and hw["resumed"]
    assert hw["room"]["locked"] is True
    assert [(e["peer_id"], e["display_name"]) for e in hw["lobby"]] == [(resident.peer_id, "赵六")]
    consents = await host2.expect("consent_state")
    assert set(consents["consented"]) == in_room
    assert consents["pending"] == [resident.peer_id] and consents["refused"] == []

    gw = guest_a2.welcome
    assert gw["peer_id"] == guest_a.peer_id and gw["status"] == "joined" and gw["resumed"]
    rw = resident2.welcome
    assert rw["peer_id"] == resident.peer_id and rw["status"] == "lobby"

    # Everyone sees everyone again, the guest still force-muted.
    for c in (host2, guest_a2, guest_b):
        roster = await _sees_everyone(c, in_room)
        assert roster[guest_a.peer_id]["forced_audio"] is True
        assert roster[guest_b.peer_id]["forced_audio"] is False

    # Chat after the takeover reaches everyone in the room.
    assert (await guest_a2.request("chat", text="恢复了"))["type"] == "ack"
    for c in (host2, guest_b):
        assert (await _chat(c, "恢复了"))["from_peer"] == guest_a.peer_id
    assert (await host2.request("chat", text="继续调解"))["type"] == "ack"
    for c in (guest_a2, guest_b):
        assert (await _chat(c, "继续调解"))["from_peer"] == host.peer_id

    # The lock holds on B: a newcomer with a valid invitation is turned away.
    late = await _client(clients, http, b, "late guest on B")
    with pytest.raises(SignalingError) as refused:
        await late.join(room_id, token=tokens["孙八"])
    assert refused.value.code == "room_locked"

    # The lobby held too: the host admits the resident who waited through the crash.
    assert (await host2.request("admit", peer_id=resident.peer_id))["type"] == "ack"
    assert (await resident2.expect("admitted"))["participants"]

    log = b.log_path.read_text(errors="replace")
    assert [line for line in log.splitlines() if ERROR_LINE.search(line)] == []
