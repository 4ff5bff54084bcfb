"""Room leases: a late renewal of an unclaimed lease keeps the room; a lease another node
took is lost. (A starved event loop once dropped every room of a single node.) A room's saved
state is written and dropped only by the holder of its lease, and read by anyone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from signaling.bus import InProcessRoomDirectory, RedisRoomDirectory

LEASE_MS = 50
#: Lets time pass: the in-process directory's clock is moved; Redis expires keys on its own
#: clock, so the Redis run waits for real.
PassTime = Callable[[float], Awaitable[None]]


async def _late_renewal_keeps_unclaimed_lost_when_taken(
    a: InProcessRoomDirectory | RedisRoomDirectory,
    b: InProcessRoomDirectory | RedisRoomDirectory,
    pass_time: PassTime,
) -> None:
    assert await a.claim("r1", "node-a", LEASE_MS) == "node-a"
    assert await a.claim("r2", "node-a", LEASE_MS) == "node-a"
    await pass_time(LEASE_MS * 3 / 1000)  # both leases expire: the loop was starved
    assert await b.claim("r2", "node-b", 10_000) == "node-b"  # another node took r2 meanwhile
    assert await a.renew(["r1", "r2"], "node-a", LEASE_MS) == ["r2"]
    assert await a.owner("r1") == "node-a"
    assert await a.owner("r2") == "node-b"


async def _state_only_by_the_lease_holder(
    a: InProcessRoomDirectory | RedisRoomDirectory,
    b: InProcessRoomDirectory | RedisRoomDirectory,
    pass_time: PassTime,
) -> None:
    assert await a.load_state("r3") is None
    assert not await a.save_state("r3", "node-a", "v0", 60_000)  # nobody holds the lease
    assert await a.claim("r3", "node-a", LEASE_MS) == "node-a"
    assert await a.save_state("r3", "node-a", "v1", 60_000)
    assert not await b.save_state("r3", "node-b", "forged", 60_000)
    await b.drop_state("r3", "node-b")
    assert await b.load_state("r3") == "v1"
    await pass_time(LEASE_MS * 3 / 1000)  # node-a died; node-b re-homes the room
    assert await b.claim("r3", "node-b", 10_000) == "node-b"
    assert await b.load_state("r3") == "v1"
    assert not await a.save_state("r3", "node-a", "stale", 60_000)  # too late for node-a
    assert await b.save_state("r3", "node-b", "v2", 60_000)
    assert await a.load_state("r3") == "v2"
    await b.drop_state("r3", "node-b")
    assert await a.load_state("r3") is None
    assert await b.save_state("r3", "node-b", "short-lived", LEASE_MS)
    await pass_time(LEASE_MS * 3 / 1000)
    assert await b.load_state("r3") is None  # expired


async def test_in_process_directory() -> None:
    now = [1000.0]
    directory = InProcessRoomDirectory(clock=lambda: now[0])

    async def pass_time(seconds: float) -> None:
        now[0] += seconds

    await _late_renewal_keeps_unclaimed_lost_when_taken(directory, directory, pass_time)
    await _state_only_by_the_lease_holder(directory, directory, pass_time)


@pytest.mark.integration
async def test_redis_directory(redis_url: str, redis_prefix: str) -> None:
    r1, r2 = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        a, b = RedisRoomDirectory(r1, redis_prefix), RedisRoomDirectory(r2, redis_prefix)
        await _late_renewal_keeps_unclaimed_lost_when_taken(a, b, asyncio.sleep)
        await _state_only_by_the_lease_holder(a, b, asyncio.sleep)
    finally:
        keys = [k async for k in r1.scan_iter(match=redis_prefix + "*")]
        if keys:
            await r1.delete(*keys)
        await r1.aclose()
        await r2.aclose()
