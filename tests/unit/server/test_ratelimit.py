import pytest

from server.kernel.ratelimit import InProcessRateLimiter, RedisRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_in_process_window() -> None:
    clock = Clock()
    rl = InProcessRateLimiter(clock=clock)
    assert [await rl.hit("ip", limit=3, window_s=60) for _ in range(4)] == [True] * 3 + [False]
    assert await rl.hit("other", limit=3, window_s=60)
    clock.now += 60
    assert await rl.hit("ip", limit=3, window_s=60)


@pytest.mark.integration
async def test_redis_limiter_is_shared(redis_url: str, redis_prefix: str) -> None:
    from redis.asyncio import Redis

    a, b = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        node_a, node_b = (
            RedisRateLimiter(a, prefix=redis_prefix),
            RedisRateLimiter(b, prefix=redis_prefix),
        )
        results = [
            await (node_a if i % 2 else node_b).hit("ip", limit=4, window_s=60) for i in range(6)
        ]
        assert results.count(True) == 4  # the two nodes share one budget
    finally:
        await a.aclose()
        await b.aclose()
