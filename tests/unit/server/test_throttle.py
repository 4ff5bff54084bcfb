"""The sign-in throttle: per (name, address) pair, growing delays, cleared by success or unlock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.kernel.throttle import (
    InProcessSignInThrottle,
    RedisSignInThrottle,
    SignInThrottle,
    ThrottlePolicy,
)

POLICY = ThrottlePolicy(free_failures=3, first_delay_s=10, max_delay_s=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_and_stop_at_the_maximum() -> None:
    assert [POLICY.delay_s(n) for n in range(8)] == [0, 0, 0, 10, 20, 40, 60, 60]


async def _scenario(throttle: SignInThrottle, clock: Clock) -> None:
    for _ in range(2):
        await throttle.failed("window01", "10.0.0.9")
    assert await throttle.wait_s("window01", "10.0.0.9") == 0  # under the free failures
    await throttle.failed("window01", "10.0.0.9")
    assert await throttle.wait_s("window01", "10.0.0.9") == pytest.approx(10)
    # The officer at another address, and another name at the attacker's, are untouched.
    assert await throttle.wait_s("window01", "10.0.0.1") == 0
    assert await throttle.wait_s("coord01", "10.0.0.9") == 0
    clock.now += 10
    assert await throttle.wait_s("window01", "10.0.0.9") == 0
    await throttle.failed("window01", "10.0.0.9")
    assert await throttle.wait_s("window01", "10.0.0.9") == pytest.approx(20)  # doubled
    # A name that does not exist is throttled exactly the same way.
    for _ in range(3):
        await throttle.failed("no-such-user", "10.0.0.9")
    assert await throttle.wait_s("no-such-user", "10.0.0.9") == pytest.approx(10)
    # The security administrator's list: every pair that waits now, the longest wait first.
    waiting = await throttle.waiting()
    assert [(w.username, w.ip, w.failures) for w in waiting] == [
        ("window01", "10.0.0.9", 4),
        ("no-such-user", "10.0.0.9", 3),
    ]
    assert waiting[0].wait_s == pytest.approx(20)
    # Success clears the pair; unlock clears every address of a name.
    await throttle.succeeded("no-such-user", "10.0.0.9")
    assert await throttle.wait_s("no-such-user", "10.0.0.9") == 0
    for _ in range(3):
        await throttle.failed("window01", "10.0.0.7")
    assert await throttle.unlock("window01") == 2
    assert await throttle.wait_s("window01", "10.0.0.9") == 0
    assert await throttle.wait_s("window01", "10.0.0.7") == 0
    assert await throttle.unlock("window01") == 0


async def test_in_process_throttle() -> None:
    clock = Clock()
    await _scenario(InProcessSignInThrottle(policy=POLICY, clock=clock), clock)


async def test_in_process_throttle_memory_is_bounded() -> None:
    throttle = InProcessSignInThrottle(policy=POLICY, clock=Clock(), max_pairs=10)
    for i in range(25):
        await throttle.failed(f"name{i}", "10.0.0.9")
    assert sum(len(v) for v in throttle._pairs.values()) <= 10


@pytest.fixture
async def redis_throttle(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[RedisSignInThrottle, Clock]]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    clock = Clock()
    throttle = RedisSignInThrottle(client, policy=POLICY, prefix=redis_prefix, clock=clock)
    try:
        yield throttle, clock
    finally:
        keys = [k async for k in client.scan_iter(f"{redis_prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.integration
async def test_redis_throttle(redis_throttle: tuple[RedisSignInThrottle, Clock]) -> None:
    await _scenario(*redis_throttle)
