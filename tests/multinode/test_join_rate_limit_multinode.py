"""The per-address join budget is kept in Redis and shared by the nodes: a client cannot spread
join attempts (join pages and signaling joins with a token) across two nodes to get more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from tests.component.signaling.harness import Participant, new_session, new_token
from tests.multinode.nodes import nodes_with_one_limiter

pytestmark = pytest.mark.multinode


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with nodes_with_one_limiter(
        tmp_path, demo_sqlite_url, redis_url, prefix=redis_prefix, join_rate_per_min=4
    ) as servers:
        yield servers


async def test_join_budget_is_shared_by_both_nodes(
    nodes: tuple[TestServer, TestServer],
) -> None:
    a, b = nodes
    made: list[Participant] = []
    try:
        host = await Participant.create(a, "host on A")
        made.append(host)
        await host.sign_in("mediator01")
        sess = await new_session(host)
        invite = await new_token(host, sess["id"], name="王五")
        path = f"/join/{invite['token']}"

        on_a = await Participant.create(a, "guest on A")
        on_b = await Participant.create(b, "guest on B")
        made += [on_a, on_b]
        for guest in (on_a, on_b):  # a page on each node: 2 of 4
            async with guest.session.get(guest.base + path) as resp:
                assert resp.status == 200
        await on_b.connect()  # a signaling join on B: 3 of 4
        assert (await on_b.join(sess["room_id"], token=invite["token"]))["status"] == "lobby"
        async with on_a.session.get(on_a.base + path) as resp:  # 4 of 4, on A
            assert resp.status == 200

        # Spent across the two nodes: both refuse, page and socket alike.
        async with on_b.session.get(on_b.base + path) as resp:
            assert resp.status == 429
            assert "进入次数过多" in await resp.text()
        await on_a.connect()
        err = await on_a.request("join", room_id=sess["room_id"], token=invite["token"])
        assert err["type"] == "error" and err["code"] == "join_rate_limited"
    finally:
        for p in made:
            await p.close()
