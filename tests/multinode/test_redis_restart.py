"""Redis restarts under live signaling traffic (issue #9 §2): two app nodes on one private
redis-server, a host on node A and a resident on node B chatting in one room. Redis is killed and
started again (empty: no persistence, so every lease, heartbeat and subscription is gone). The
apps are not restarted: afterwards messages cross between the nodes again, the room still has
both participants with the same peer ids, and nothing was logged as an unhandled error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from signaling.config import Limits
from signaling.ws import node_key
from tests.component.signaling.harness import Participant, new_session, new_token
from tests.conftest import PrivateRedis
from tests.multinode.nodes import two_nodes

pytestmark = [pytest.mark.multinode, pytest.mark.integration]

GRACE_S = 20.0
LIMITS = Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis: PrivateRedis
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with two_nodes(tmp_path, demo_sqlite_url, redis.url, limits=LIMITS,
                         signaling_grace_s=GRACE_S) as servers:  # fmt: skip
        yield servers


async def _ready(server: TestServer) -> int:
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/readyz")) as resp:
        return resp.status


async def _until_ready(servers: tuple[TestServer, ...], status: int) -> None:
    """Poll /readyz on every node until each answers `status` (the nodes' own view of Redis)."""
    for _ in range(200):
        if [await _ready(s) for s in servers] == [status] * len(servers):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status} on every node")


async def _chat_gets_through(sender: Participant, receiver: Participant, label: str) -> None:
    """Send chat until one reaches the other node. Redis pub/sub is at-most-once: a message
    published while a node is re-subscribing may be lost (the client would send it again)."""
    for attempt in range(20):
        await sender.send("chat", text=f"{label}-{attempt}")
        try:
            async with asyncio.timeout(1.0):
                await receiver.expect_where(
                    lambda m: m["type"] == "chat_message" and m["text"].startswith(label)
                )
            return
        except TimeoutError:
            continue
    raise AssertionError(f"no chat from {sender.name} reached {receiver.name} after the restart")


async def test_live_room_survives_a_redis_restart(
    nodes: tuple[TestServer, TestServer],
    redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a, b = nodes
    made: list[Participant] = []

    async def person(server: TestServer, name: str, username: str | None = None) -> Participant:
        p = await Participant.create(server, name)
        made.append(p)
        if username:
            await p.sign_in(username)
        return p

    try:
        host = await person(a, "host on A", "mediator01")
        sess = await new_session(host)
        room_id = sess["room_id"]
        invite = await new_token(host, sess["id"], name="李四")
        await host.connect()
        await host.join(room_id)
        guest = await person(b, "guest on B")
        await guest.connect()
        await guest.join(room_id, token=invite["token"])
        await host.request("admit", peer_id=guest.peer_id)
        await guest.expect("admitted")
        assert (await guest.request("chat", text="重启前"))["type"] == "ack"
        assert (await host.expect("chat_message", text="重启前"))["from_peer"] == guest.peer_id
        host_peer, guest_peer = host.peer_id, guest.peer_id
        official = await person(b, "official on B", "expert01")
        await official.connect()

        redis.stop()
        await _until_ready((a, b), 503)
        # Down for longer than a lease: every renewal and heartbeat in between fails.
        await asyncio.sleep(LIMITS.lease_ms / 1000 * 1.5)
        # Traffic during the outage: the sockets stay up (the chat itself may be lost).
        await guest.send("chat", text="断线中")
        assert (await host.request("ping"))["type"] == "pong"
        assert (await guest.request("ping"))["type"] == "pong"
        # A join now cannot reach the room's owner: a typed, retryable error, the socket stays.
        refused = await official.request("join", room_id=room_id)
        assert refused["type"] == "error" and refused["code"] == "room_unavailable", refused
        assert refused["message_zh"] == "会话暂时不可用，正在恢复"
        redis.start()
        await _until_ready((a, b), 200)

        # Messages cross between the nodes again, both ways, without restarting either app.
        await _chat_gets_through(guest, host, "B到A")
        await _chat_gets_through(host, guest, "A到B")
        for i in range(3):
            assert (await guest.request("chat", text=f"恢复后B{i}"))["type"] == "ack"
            assert (await host.expect("chat_message", text=f"恢复后B{i}"))[
                "from_peer"
            ] == guest_peer
            assert (await host.request("chat", text=f"恢复后A{i}"))["type"] == "ack"
            assert (await guest.expect("chat_message", text=f"恢复后A{i}"))[
                "from_peer"
            ] == host_peer

        # The room did not move (that would have reset everyone's media): node A still owns
        # it, the directory says so, and nobody was told to resume or saw anyone drop out.
        assert room_id in a.app[node_key].rooms and room_id not in b.app[node_key].rooms
        assert await a.app[node_key].directory.owner(room_id) == "node-a"
        for p in (host, guest):
            assert not [
                m
                for m in p.backlog
                if m["type"] in ("welcome", "participant_left")
                or (m["type"] == "participant_update" and not m["participant"]["connected"])
            ], p.backlog
        # The room still holds both participants, with their peer ids.
        welcome = await official.join(room_id)  # the socket refused above
        assert {p["peer_id"] for p in welcome["participants"]} == {
            host_peer,
            guest_peer,
            official.peer_id,
        }
        for p in (host, guest):
            await p.expect_where(lambda m: m["type"] == "participant_joined"
                                 and m["participant"]["peer_id"] == official.peer_id)  # fmt: skip
    finally:
        for p in made:
            await p.close()

    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]
    assert not errors, errors
