"""Rate limits (sign-in, join): fixed windows per key. In-process on a single node; in Redis
when several nodes share one deployment, so a client cannot spread attempts across nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window_s: int) -> bool:
        """Count one attempt; False when the key is over `limit` in the current window."""
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


class RedisRateLimiter:
    def __init__(self, redis: Redis, *, prefix: str = "onedoor:rl:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, *, limit: int, window_s: int) -> bool:
        window = int(time.time() // window_s)
        name = f"{self._prefix}{key}:{window}"
        count = await self._redis.incr(name)
        if count == 1:
            await self._redis.expire(name, window_s + 1)
        return int(count) <= limit
