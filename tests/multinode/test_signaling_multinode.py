"""Two app instances on one real Redis and one database: participants on different nodes share a
room; when the owner node dies, its room is re-homed and everybody resumes on the survivor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from signaling.node import Limits
from signaling.ws import node_key
from tests.component.signaling.harness import Participant, build_app, new_session, new_token
from tests.conftest import make_settings

pytestmark = pytest.mark.multinode


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    secret = "shared-secret-for-both-nodes-0123456789"
    limits = Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5)
    servers = []
    for name in ("node-a", "node-b"):
        settings = make_settings(tmp_path / name, demo_sqlite_url, redis_url=redis_url,
                                 node_id=name, secret_key=secret, signaling_grace_s=20,
                                 login_rate_per_min=10_000,
                                 join_rate_per_min=10_000)  # fmt: skip
        srv = TestServer(build_app(settings, limits=limits, prefix=redis_prefix))
        await srv.start_server()
        servers.append(srv)
    try:
        yield servers[0], servers[1]
    finally:
        for srv in servers:
            with contextlib.suppress(Exception):
                await srv.close()
        redis = Redis.from_url(redis_url)
        keys = [k async for k in redis.scan_iter(match=redis_prefix + "*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest.fixture
async def people() -> AsyncIterator[list[Participant]]:
    made: list[Participant] = []
    yield made
    for p in made:
        await p.close()


async def _person(made: list[Participant], server: TestServer, name: str,
                  username: str | None = None) -> Participant:  # fmt: skip
    p = await Participant.create(server, name)
    if username:
        await p.sign_in(username)
    made.append(p)
    return p


def crash(server: TestServer) -> None:
    """Stop a node the way a killed process stops: no cleanup, no lease release, no messages."""
    node = server.app[node_key]
    for task in [*node._tasks, *getattr(node.bus, "_tasks", [])]:
        task.cancel()
    for actor in node.rooms.values():
        actor.stopped = True
        actor.task.cancel()
    node.rooms.clear()
    node.attached.clear()


async def test_participants_on_two_nodes_share_a_room(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    host = await _person(people, a, "host on A", "mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name="李四")
    await host.connect()
    assert (await host.join(sess["room_id"]))["status"] == "joined"

    guest = await _person(people, b, "guest on B")
    hello = await guest.connect()
    assert hello["node_id"] == "node-b"
    assert (await guest.join(sess["room_id"], token=invite["token"]))["status"] == "lobby"
    waiting = await host.expect("lobby_update")
    assert waiting["waiting"][0]["display_name"] == "李四"
    await host.request("admit", peer_id=guest.peer_id)
    await guest.expect("admitted")
    assert (await guest.request("chat", text="从B节点"))["type"] == "ack"
    assert (await host.expect("chat_message"))["text"] == "从B节点"
    assert (await host.request("chat", text="从A节点"))["type"] == "ack"
    assert (await guest.expect("chat_message", text="从A节点"))["from_peer"] == host.peer_id
    assert sess["room_id"] in a.app[node_key].rooms
    assert sess["room_id"] not in b.app[node_key].rooms

    # A third participant, staff, on B: everyone sees everyone.
    official = await _person(people, b, "official on B", "expert01")
    await official.connect()
    w = await official.join(sess["room_id"])
    assert {p["peer_id"] for p in w["participants"]} == {
        host.peer_id,
        guest.peer_id,
        official.peer_id,
    }
    for other in (host, guest):
        await other.expect_where(lambda m: m["type"] == "participant_joined"
                                 and m["participant"]["peer_id"] == official.peer_id)  # fmt: skip


async def test_owner_node_dies_and_everyone_resumes_on_the_other(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    host = await _person(people, a, "host on A", "mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name="王五")
    await host.connect()
    await host.join(sess["room_id"])
    guest_a = await _person(people, a, "guest on A")
    await guest_a.connect()
    await guest_a.join(sess["room_id"], token=invite["token"])
    await host.request("admit", peer_id=guest_a.peer_id)
    await guest_a.expect("admitted")
    official_b = await _person(people, b, "official on B", "expert01")
    await official_b.connect()
    await official_b.join(sess["room_id"])
    assert sess["room_id"] in a.app[node_key].rooms

    crash(a)
    await host.drop()
    await guest_a.drop()

    # B notices the owner is gone (lease expiry), takes the room, re-attaches its participant.
    w = await official_b.expect("welcome")
    assert w["resumed"] is True and w["media_reset"] is True and w["peer_id"] == official_b.peer_id
    assert sess["room_id"] in b.app[node_key].rooms

    # The others come back through B with their resume tokens.
    host_b = await _person(people, b, "host again", "mediator01")
    await host_b.connect()
    ack = await host_b.request("resume", resume_token=host.resume_token)
    assert ack["type"] == "ack", ack
    hw = await host_b.expect("welcome")
    assert hw["peer_id"] == host.peer_id and hw["status"] == "joined"
    guest_b = await _person(people, b, "guest again")
    await guest_b.connect()
    assert (await guest_b.request("resume", resume_token=guest_a.resume_token))["type"] == "ack"
    gw = await guest_b.expect("welcome")
    assert gw["peer_id"] == guest_a.peer_id and gw["status"] == "joined"
    assert {p["peer_id"] for p in gw["participants"]} == {host.peer_id, guest_a.peer_id,
                                                          official_b.peer_id}  # fmt: skip

    assert (await guest_b.request("chat", text="恢复了"))["type"] == "ack"
    assert (await host_b.expect("chat_message", text="恢复了"))["from_peer"] == guest_a.peer_id
    assert (await official_b.expect("chat_message", text="恢复了"))["from_peer"] == guest_a.peer_id
    await asyncio.sleep(0)
