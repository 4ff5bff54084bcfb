"""The end of a session is final on two nodes (issue #16): right after `session_ended`, a
resume or join arriving on the other node (which does not own the room) gets `session_closed`,
as does one on the owner node, while the owner lets the room go and after it has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from signaling.config import Limits
from signaling.ws import node_key
from tests.component.signaling.harness import Participant, new_session, new_token
from tests.multinode.nodes import two_nodes
from tests.polling import eventually

pytestmark = pytest.mark.multinode

ITERATIONS = 30


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with two_nodes(tmp_path, demo_sqlite_url, redis_url, prefix=redis_prefix,
                         limits=Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5),
                         signaling_grace_s=20, login_rate_per_min=10_000,
                         join_rate_per_min=10_000) as servers:  # fmt: skip
        yield servers


async def test_resume_and_join_on_either_node_right_after_the_end_are_refused(
    nodes: tuple[TestServer, TestServer],
) -> None:
    a, b = nodes
    node_a, node_b = a.app[node_key], b.app[node_key]
    host = await Participant.create(a, "host on A")
    await host.sign_in("mediator01")
    guest = await Participant.create(a, "guest on A")
    spare_b = await Participant.create(b, "resume on B")
    late_b = await Participant.create(b, "join on B")
    spare_a = await Participant.create(a, "resume on A")
    everyone = (host, guest, spare_b, late_b, spare_a)
    try:
        for i in range(ITERATIONS):
            sess = await new_session(host, title=f"调解 {i}")
            room_id = sess["room_id"]
            invite = await new_token(host, sess["id"], name="张三")
            other = await new_token(host, sess["id"], name="李四")
            await host.connect()
            await host.join(room_id)
            assert room_id in node_a.rooms
            await guest.connect()
            await guest.join(room_id, token=invite["token"])
            for p in (spare_b, late_b, spare_a):
                await p.connect()

            end_id = await host.send("end_session")
            await host.expect("ack", re=end_id)
            sent = [
                (spare_b, await spare_b.send("resume", resume_token=guest.resume_token)),
                (late_b, await late_b.send("join", room_id=room_id, token=other["token"])),
                (spare_a, await spare_a.send("resume", resume_token=guest.resume_token)),
            ]
            await guest.expect("session_ended")
            assert await guest.expect_closed() == 4410, i
            assert await host.expect_closed() == 4410, i
            for p, msg_id in sent:
                answer = await p.expect_where(lambda m, r=msg_id: m.get("re") == r)
                assert answer["type"] == "error", (i, p.name, answer)
                assert answer["code"] == "session_closed", (i, p.name, answer)
                assert p.seen("welcome") == [], (i, p.name)

            def let_go(r: str = room_id) -> bool:
                return r not in node_a.rooms and r not in node_b.rooms

            await eventually(let_go, what="the room let go on both nodes")
            # After the room is gone: the resident's resume on B is refused too.
            assert spare_b.ws is not None
            await spare_b.ws.close()
            await spare_b.connect()
            again = await spare_b.request("resume", resume_token=guest.resume_token)
            assert again["code"] == "session_closed", (i, again)
            assert room_id not in node_b.rooms, i
            for p in everyone:
                assert p.ws is not None
                await p.ws.close()
    finally:
        for p in everyone:
            await p.close()
