"""Sign-in throttling per (username, client address) pair, with growing delays.

Replaces the per-account lock (issue #21): that lock told anyone which usernames exist (423 for
a real one, 401 forever for an unknown one) and let anyone lock a member of staff out for 15
minutes with six wrong passwords. Here the key is the pair (the name as typed, the address), so

- a name that does not exist is throttled exactly like one that does (same answers, same timing;
  the password check runs against a dummy hash for unknown names: server/auth/passwords.py);
- an attacker elsewhere slows down only their own guesses, never the officer at the window;
- after `free_failures` failures the pair waits `first_delay_s`, doubling with each further
  failure up to `max_delay_s`; a success clears the pair; a sec_admin can clear every pair of a
  name (`unlock`).

In-process on a single node, in Redis when the nodes share one (a guesser cannot spread
attempts across nodes). Wall-clock time (`clock`) so Redis entries line up across nodes; tests
pass a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = 5
    first_delay_s: float = 15.0
    max_delay_s: float = 900.0

    def __post_init__(self) -> None:
        if self.free_failures < 1 or self.first_delay_s <= 0 or self.max_delay_s <= 0:
            raise ValueError("throttle policy values must be positive")

    def delay_s(self, failures: int) -> float:
        """How long a pair with `failures` consecutive failures waits after the last one."""
        if failures < self.free_failures:
            return 0.0
        doublings = min(failures - self.free_failures, 32)
        return float(min(self.max_delay_s, self.first_delay_s * 2**doublings))


class SignInThrottle(Protocol):
    async def wait_s(self, username: str, ip: str) -> float:
        """Seconds this pair must still wait before its next attempt (0: it may try now)."""
        ...

    async def failed(self, username: str, ip: str) -> None: ...

    async def succeeded(self, username: str, ip: str) -> None: ...

    async def unlock(self, username: str) -> int:
        """Forget every address's failures for `username`; returns how many pairs there were."""
        ...

    async def waiting(self, limit: int = 200) -> list[Waiting]:
        """The pairs that must wait now (the security administrator's list of lockouts)."""
        ...


@dataclass(frozen=True, slots=True)
class Waiting:
    username: str
    ip: str
    failures: int
    wait_s: float


@dataclass
class InProcessSignInThrottle:
    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Callable[[], float] = time.time
    max_pairs: int = 100_000
    #: username -> ip -> (consecutive failures, time of the last one)
    _pairs: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)
    _count: int = 0

    async def wait_s(self, username: str, ip: str) -> float:
        failures, last = self._pairs.get(username, {}).get(ip, (0, 0.0))
        return max(0.0, last + self.policy.delay_s(failures) - self.clock())

    async def failed(self, username: str, ip: str) -> None:
        if self._count >= self.max_pairs:
            self._pairs.clear()  # bounded memory: a flood of names resets the table
            self._count = 0
        by_ip = self._pairs.setdefault(username, {})
        failures, _last = by_ip.get(ip, (0, 0.0))
        self._count += ip not in by_ip
        by_ip[ip] = (failures + 1, self.clock())

    async def succeeded(self, username: str, ip: str) -> None:
        by_ip = self._pairs.get(username, {})
        if by_ip.pop(ip, None) is not None:
            self._count -= 1

    async def unlock(self, username: str) -> int:
        cleared = len(self._pairs.pop(username, {}))
        self._count -= cleared
        return cleared

    async def waiting(self, limit: int = 200) -> list[Waiting]:
        now = self.clock()
        out = []
        for username, by_ip in self._pairs.items():
            for ip, (failures, last) in by_ip.items():
                wait = last + self.policy.delay_s(failures) - now
                if wait > 0:
                    out.append(Waiting(username, ip, failures, wait))
        return sorted(out, key=lambda w: -w.wait_s)[:limit]


class RedisSignInThrottle:
    """One hash per name: field = address, value = "failures:last_failure_time"."""

    def __init__(
        self,
        redis: Redis,
        *,
        policy: ThrottlePolicy | None = None,
        prefix: str = "onedoor:signin:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.policy = policy or ThrottlePolicy()
        self._prefix = prefix
        self._clock = clock

    def _key(self, username: str) -> str:
        return f"{self._prefix}{username}"

    async def _get(self, username: str, ip: str) -> tuple[int, float]:
        raw = await self._redis.hget(self._key(username), ip)
        if raw is None:
            return 0, 0.0
        failures, _, last = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
        return int(failures), float(last)

    async def wait_s(self, username: str, ip: str) -> float:
        failures, last = await self._get(username, ip)
        return max(0.0, last + self.policy.delay_s(failures) - self._clock())

    async def failed(self, username: str, ip: str) -> None:
        failures, _last = await self._get(username, ip)
        key = self._key(username)
        await self._redis.hset(key, ip, f"{failures + 1}:{self._clock()}")
        # Forgotten a while after the longest delay: an idle pair starts afresh.
        await self._redis.expire(key, int(self.policy.max_delay_s * 2) + 60)

    async def succeeded(self, username: str, ip: str) -> None:
        await self._redis.hdel(self._key(username), ip)

    async def unlock(self, username: str) -> int:
        key = self._key(username)
        cleared = int(await self._redis.hlen(key))
        await self._redis.delete(key)
        return cleared

    async def waiting(self, limit: int = 200) -> list[Waiting]:
        now = self._clock()
        out: list[Waiting] = []
        async for raw_key in self._redis.scan_iter(match=f"{self._prefix}*", count=500):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            username = key.removeprefix(self._prefix)
            for raw_ip, raw in (await self._redis.hgetall(key)).items():
                ip = raw_ip.decode() if isinstance(raw_ip, bytes) else str(raw_ip)
                value = raw.decode() if isinstance(raw, bytes) else str(raw)
                failures_s, _, last_s = value.partition(":")
                failures, last = int(failures_s), float(last_s)
                wait = last + self.policy.delay_s(failures) - now
                if wait > 0:
                    out.append(Waiting(username, ip, failures, wait))
            if len(out) >= limit * 5:
                break
        return sorted(out, key=lambda w: -w.wait_s)[:limit]
