"""The two `CallQueue`s: `InProcessCallQueue` (one node) and `RedisCallQueue` (every node of a
deployment on one Redis).

Redis keys, all under the deployment's prefix:

    {prefix}queue:seq          INCR: entry ids, unique across nodes
    {prefix}queue:order        sorted set: entry id, scored by waiting_since (epoch seconds)
    {prefix}queue:entry:<id>   JSON of one entry; the resident's name and phone and the handover
                               note are PII-cipher tokens; PX a little past its `expires_at`

`update` is optimistic: WATCH the entry, read it, apply the change, MULTI/SET/EXEC; if another
node wrote the entry in between, EXEC fails and the change is applied again to the new value
(so of two officers accepting one call, the second sees it accepted and gets `CallTaken`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from server.kernel.crypto import PiiCipher
from server.kernel.errors import ServiceUnavailable
from server.queue.service import CallEntry, CallState, call_not_found

#: Redis drops a key this long after its entry expired (the app's clock decides before that).
REDIS_EXPIRY_MARGIN = timedelta(minutes=1)
#: Optimistic retries before `update` gives up (each lost race means another node wrote).
MAX_UPDATE_ATTEMPTS = 50
_PII_FIELDS = ("resident_name", "resident_phone", "handover_note")
_TIME_FIELDS = ("waiting_since", "seen_at", "expires_at", "accepted_at", "ended_at")


class QueueBusy(ServiceUnavailable):
    code = "queue_busy"


class InProcessCallQueue:
    """One node's queue: a dict guarded by one lock (updates are atomic within the process)."""

    def __init__(self) -> None:
        self._entries: dict[int, CallEntry] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def next_id(self) -> int:
        return next(self._ids)

    async def add(self, entry: CallEntry, *, now: datetime) -> None:
        async with self._lock:
            self._entries[entry.id] = entry

    def _live(self, entry_id: int, now: datetime) -> CallEntry:
        entry = self._entries.get(entry_id)
        if entry is None or entry.expired(now):
            raise call_not_found(entry_id)
        return entry

    async def get(self, entry_id: int, *, now: datetime) -> CallEntry:
        return self._live(entry_id, now)

    async def entries(self, *, now: datetime) -> list[CallEntry]:
        async with self._lock:
            for entry_id in [i for i, e in self._entries.items() if e.expired(now)]:
                del self._entries[entry_id]
            return sorted(self._entries.values(), key=lambda e: (e.waiting_since, e.id))

    async def update(
        self, entry_id: int, change: Callable[[CallEntry], CallEntry], *, now: datetime
    ) -> CallEntry:
        async with self._lock:
            new = change(self._live(entry_id, now))
            self._entries[entry_id] = new
            return new


class RedisCallQueue:
    """The deployment's queue in Redis (see the module docstring for the keys)."""

    def __init__(self, redis: Redis, *, prefix: str, pii: PiiCipher) -> None:
        self._redis = redis
        self._pii = pii
        self._seq = f"{prefix}queue:seq"
        self._order = f"{prefix}queue:order"
        self._entry_prefix = f"{prefix}queue:entry:"

    def _key(self, entry_id: int) -> str:
        return f"{self._entry_prefix}{entry_id}"

    # -------------------------------------------------------------- codec

    def encode(self, entry: CallEntry) -> str:
        d: dict[str, Any] = {}
        for name in CallEntry.__dataclass_fields__:
            value = getattr(entry, name)
            if name in _PII_FIELDS:
                value = self._pii.encrypt(value) if value else ""
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, CallState):
                value = value.value
            d[name] = value
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    def decode(self, raw: bytes | str) -> CallEntry:
        d: dict[str, Any] = json.loads(raw)
        for name in _PII_FIELDS:
            d[name] = self._pii.decrypt(d[name]) if d[name] else ""
        for name in _TIME_FIELDS:
            if d[name] is not None:
                d[name] = datetime.fromisoformat(d[name])
        d["state"] = CallState(d["state"])
        d["invited_ids"] = frozenset(d["invited_ids"])
        return CallEntry(**d)

    @staticmethod
    def _ttl_ms(entry: CallEntry, now: datetime) -> int:
        return max(1, int(((entry.expires_at - now) + REDIS_EXPIRY_MARGIN).total_seconds() * 1000))

    # -------------------------------------------------------------- CallQueue

    async def next_id(self) -> int:
        return int(await self._redis.incr(self._seq))

    async def add(self, entry: CallEntry, *, now: datetime) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            # Queued on the pipeline; `execute` sends both at once.
            pipe.set(self._key(entry.id), self.encode(entry), px=self._ttl_ms(entry, now))  # type: ignore[unused-awaitable]
            pipe.zadd(self._order, {str(entry.id): entry.waiting_since.timestamp()})  # type: ignore[unused-awaitable]
            await pipe.execute()

    async def get(self, entry_id: int, *, now: datetime) -> CallEntry:
        raw = await self._redis.get(self._key(entry_id))
        entry = self.decode(raw) if raw is not None else None
        if entry is None or entry.expired(now):
            raise call_not_found(entry_id)
        return entry

    async def entries(self, *, now: datetime) -> list[CallEntry]:
        members = await self._redis.zrange(self._order, 0, -1)
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        if not ids:
            return []
        raws = await self._redis.mget([self._entry_prefix + i for i in ids])
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:  # Redis expired them: forget their place in the order
            await self._redis.zrem(self._order, *gone)
        live = [e for e in (self.decode(r) for r in raws if r is not None) if not e.expired(now)]
        return sorted(live, key=lambda e: (e.waiting_since, e.id))

    async def update(
        self, entry_id: int, change: Callable[[CallEntry], CallEntry], *, now: datetime
    ) -> CallEntry:
        key = self._key(entry_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _attempt in range(MAX_UPDATE_ATTEMPTS):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    entry = self.decode(raw) if raw is not None else None
                    if entry is None or entry.expired(now):
                        raise call_not_found(entry_id)
                    new = change(entry)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, self.encode(new), px=self._ttl_ms(new, now))  # type: ignore[unused-awaitable]
                    await pipe.execute()
                    return new
                except WatchError:
                    continue
                finally:
                    await pipe.reset()  # type: ignore[no-untyped-call]
        raise QueueBusy(f"call {entry_id} kept changing; try again")
