"""Against a real Redis: a task cancelled during a redis-py command sometimes goes on as if
nothing happened (Python 3.11's `asyncio.wait_for`, which redis-py uses for socket writes when
a socket timeout is set, returns the result when the write completed in the same loop
iteration as the cancel). This is what hung the shutdown of a signaling node whose room-state
writer was cancelled mid-write; `cancel_and_wait` stops such a loop all the same."""

from __future__ import annotations

import asyncio
import sys

import pytest
from redis.asyncio import Redis

from server.kernel.tasks import cancel_and_wait

pytestmark = pytest.mark.integration

ROUNDS = 300


async def _cancel_during_commands(redis: Redis, stop: bool) -> tuple[int, int]:
    """Cancel a loop of Redis commands at varying points, ROUNDS times; returns how many
    cancellations were lost (the loop kept going) and how many loops `cancel_and_wait` ended."""
    await redis.set("odtest:cancel", "1")
    lost = ended = 0
    for i in range(ROUNDS):
        cancelled_rounds = 0

        async def loop() -> None:
            nonlocal cancelled_rounds
            while True:
                await redis.eval("return redis.call('get', KEYS[1])", 1, "odtest:cancel")
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    cancelled_rounds += 1  # the cancel was swallowed: still looping
                await asyncio.sleep(0)

        task = asyncio.create_task(loop())
        for _ in range(i % 7):
            await asyncio.sleep(0)
        if stop:
            async with asyncio.timeout(5):
                await cancel_and_wait([task], recancel_s=0.01)
            ended += task.done()
        else:
            task.cancel()
            await asyncio.sleep(0.01)
            lost += not task.done()
            task.cancel()
            while not task.done():
                await asyncio.sleep(0.001)
                task.cancel()
    return lost, ended


async def test_cancel_and_wait_ends_loops_of_redis_commands(redis_url: str) -> None:
    redis = Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        _, ended = await _cancel_during_commands(redis, stop=True)
        assert ended == ROUNDS
        lost, _ = await _cancel_during_commands(redis, stop=False)
        print(f"lost cancellations without the helper: {lost} of {ROUNDS}")
    finally:
        await redis.aclose()
    if sys.version_info < (3, 12):
        # Why the helper exists; if this ever fails, redis-py or asyncio fixed it upstream.
        assert lost > 0, "no cancellation was lost: has redis-py stopped using wait_for?"
