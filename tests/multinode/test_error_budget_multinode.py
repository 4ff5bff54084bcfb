"""The error budget (issue #21) is kept in Redis and shared by the nodes: a prober cannot spread
its failing requests over two nodes behind a load balancer to get twice the budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.multinode.nodes import nodes_with_one_limiter

pytestmark = pytest.mark.multinode

BUDGET = 4
MISSING = f"/api/public/reports/{2**31 - 1}"


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with nodes_with_one_limiter(
        tmp_path,
        demo_sqlite_url,
        redis_url,
        prefix=redis_prefix,
        error_budget_per_10s=BUDGET,
        error_tarpit_s=0,
    ) as servers:
        yield servers


async def _status(http: aiohttp.ClientSession, server: TestServer, path: str) -> tuple[int, str]:
    async with http.get(server.make_url(path), headers={"Accept": "application/json"}) as resp:
        body = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, str(body.get("error", ""))


async def test_the_error_budget_is_shared_by_both_nodes(
    nodes: tuple[TestServer, TestServer],
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        assert (await _status(http, b, "/api/openapi.json"))[0] == 200  # successes do not count
        for i in range(BUDGET):  # half the failures on each node
            assert (await _status(http, a if i % 2 else b, MISSING))[0] == 404
        # spent across the two: both nodes refuse this client, a valid request too
        assert await _status(http, a, MISSING) == (429, "too_many_errors")
        assert await _status(http, b, "/api/openapi.json") == (429, "too_many_errors")
        assert (await _status(http, b, MISSING)) == (429, "too_many_errors")
        assert (await _status(http, a, "/healthz"))[0] == 200  # liveness is exempt
