"""Two app nodes of one deployment (one database, one Redis, one secret), each behind a real
HTTP server, with the fake media node of the signaling harness."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from server.http import keys
from server.kernel.ratelimit import RedisRateLimiter
from signaling.config import Limits
from tests.component.signaling.harness import build_app
from tests.conftest import make_settings

SHARED_SECRET = "shared-secret-for-both-nodes-0123456789"


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    prefix: str | None = None,
    limits: Limits | None = None,
    prepare: Callable[[web.Application], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    """Nodes `node-a` and `node-b` with `overrides` on top of the test settings; `prepare` may
    adjust each app before it starts. Afterwards the servers are closed and, with a `prefix`,
    the test's keys are deleted from the shared Redis."""
    servers: list[TestServer] = []
    try:
        for name in ("node-a", "node-b"):
            settings = make_settings(
                tmp_path / name,
                database_url,
                redis_url=redis_url,
                node_id=name,
                secret_key=SHARED_SECRET,
                **overrides,
            )
            app = build_app(settings, limits=limits, prefix=prefix)
            if prepare is not None:
                prepare(app)
            server = TestServer(app)
            await server.start_server()
            servers.append(server)
        yield servers[0], servers[1]
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                await server.close()
        if prefix is not None:
            redis = Redis.from_url(redis_url)
            leftover = [k async for k in redis.scan_iter(match=prefix + "*")]
            if leftover:
                await redis.delete(*leftover)
            await redis.aclose()


@contextlib.asynccontextmanager
async def nodes_with_one_limiter(
    tmp_path: Path, database_url: str, redis_url: str, *, prefix: str, **overrides: Any
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    """`two_nodes` whose rate limiters share Redis under one fixed window for the whole test
    (each node with its own Redis connection): what one node counts, the other sees."""
    clients: list[Redis] = []

    def own_limiter(app: web.Application) -> None:
        client = Redis.from_url(redis_url)
        clients.append(client)
        app[keys.ratelimiter] = RedisRateLimiter(
            client, prefix=prefix + "rl:", clock=lambda: 1_000_000.0
        )

    try:
        async with two_nodes(
            tmp_path, database_url, redis_url, prefix=prefix, prepare=own_limiter, **overrides
        ) as servers:
            yield servers
    finally:
        for client in clients:
            await client.aclose()
