"""Rate limits (sign-in, join): fixed windows per key. In-process on a single node; in Redis
when several nodes share one deployment, so a client cannot spread attempts across nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis

from server.kernel.errors import JoinRateLimited

#: Join limits count per minute (ONEDOOR_JOIN_RATE_PER_MIN).
JOIN_WINDOW_S = 60


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window_s: int) -> bool:
        """Count one attempt; False when the key is over `limit` in the current window."""
        ...

    async def count(self, key: str, *, window_s: int) -> int:
        """Attempts counted for `key` in the current window (counts nothing itself)."""
        ...


@dataclass
class InProcessRateLimiter:
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict)

    async def hit(self, key: str, *, limit: int, window_s: int) -> bool:
        window = int(self.clock() // window_s)
        current_window, count = self._windows.get(key, (window, 0))
        if current_window != window:
            count = 0
        count += 1
        if len(self._windows) >= self.max_keys and key not in self._windows:
            self._windows.clear()  # bounded memory; a flood of keys resets the table
        self._windows[key] = (window, count)
        return count <= limit

    async def count(self, key: str, *, window_s: int) -> int:
        current_window, count = self._windows.get(key, (-1, 0))
        return count if current_window == int(self.clock() // window_s) else 0


class RedisRateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "onedoor:rl:",
        clock: Callable[[], float] = time.time,  # wall clock: windows line up across nodes
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock

    async def hit(self, key: str, *, limit: int, window_s: int) -> bool:
        window = int(self._clock() // window_s)
        name = f"{self._prefix}{key}:{window}"
        count = await self._redis.incr(name)
        if count == 1:
            await self._redis.expire(name, window_s + 1)
        return int(count) <= limit

    async def count(self, key: str, *, window_s: int) -> int:
        window = int(self._clock() // window_s)
        raw = await self._redis.get(f"{self._prefix}{key}:{window}")
        return int(raw) if raw is not None else 0


async def check_join_rate(limiter: RateLimiter, ip: str, *, per_min: int) -> None:
    """Count one join-link redemption from `ip`; the join page and the signaling join share the
    key, so a client cannot double its budget by skipping the page.

    Raises:
        JoinRateLimited: over `per_min` in the current minute.
    """
    if not await limiter.hit(f"join:{ip}", limit=per_min, window_s=JOIN_WINDOW_S):
        raise JoinRateLimited("too many joins from this address; wait a minute")
