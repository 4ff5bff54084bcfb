"""Room leases: a late renewal of an unclaimed lease keeps the room; a lease another node
took is lost. (A starved event loop once dropped every room of a single node.)"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from signaling.bus import InProcessRoomDirectory, RedisRoomDirectory

LEASE_MS = 50


async def _late_renewal_keeps_unclaimed_lost_when_taken(
    a: InProcessRoomDirectory | RedisRoomDirectory,
    b: InProcessRoomDirectory | RedisRoomDirectory,
) -> None:
    assert await a.claim("r1", "node-a", LEASE_MS) == "node-a"
    assert await a.claim("r2", "node-a", LEASE_MS) == "node-a"
    await asyncio.sleep(LEASE_MS * 3 / 1000)  # both leases expire: the loop was starved
    assert await b.claim("r2", "node-b", 10_000) == "node-b"  # another node took r2 meanwhile
    assert await a.renew(["r1", "r2"], "node-a", LEASE_MS) == ["r2"]
    assert await a.owner("r1") == "node-a"
    assert await a.owner("r2") == "node-b"


async def test_in_process_directory() -> None:
    directory = InProcessRoomDirectory()
    await _late_renewal_keeps_unclaimed_lost_when_taken(directory, directory)


@pytest.mark.integration
async def test_redis_directory(redis_url: str, redis_prefix: str) -> None:
    r1, r2 = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        await _late_renewal_keeps_unclaimed_lost_when_taken(
            RedisRoomDirectory(r1, redis_prefix), RedisRoomDirectory(r2, redis_prefix)
        )
    finally:
        await r1.aclose()
        await r2.aclose()
