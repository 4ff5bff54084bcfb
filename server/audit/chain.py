"""What makes the audit chain tamper-evident beyond the database (issue #21, item 3).

A plain SHA-256 chain only proves the rows agree with each other: whoever can write the table
can edit a row and recompute every hash after it, or delete the newest rows. So

- each row's hash is an HMAC-SHA256 under a key derived from the deployment's secret: without
  the secret, a re-chained row does not verify;
- every committed entry's (id, hash) is appended to a witness outside the database (a file in
  the data dir, opened append-only; and, when Redis is configured, the newest (id, hash) of all
  nodes in Redis): entries deleted from the tail, or a chain rebuilt from the genesis, no
  longer match what the witnesses saw.

The configuration travels in the session's `info` (`session_options`), so `record` and
`verify` keep their signatures. A session without it (tests, tools) writes and checks the
unkeyed chain of earlier versions; `verify` accepts such legacy rows only before the first
keyed one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

INFO_KEY = "onedoor.audit_chain"
PENDING_KEY = "onedoor.audit_pending"
WITNESS_FILE = "audit_witness.log"


def derive_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"onedoor-audit-chain-v1", hashlib.sha256).digest()


@dataclass
class FileWitness:
    """Appends `id hash` lines to a file nobody rewrites (O_APPEND; ship it off the machine or
    make it append-only with `chattr +a` in production)."""

    path: Path
    _fd: int | None = field(default=None, repr=False)

    def note(self, entries: list[tuple[int, str]]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # One small write to the page cache per commit: no fsync, so a crash may lose the last
        # few lines (the witness lags; it never claims what was not committed).
        os.write(self._fd, "".join(f"{i} {h}\n" for i, h in entries).encode())

    def read(self) -> dict[int, str]:
        if not self.path.exists():
            return {}
        out: dict[int, str] = {}
        for line in self.path.read_text().splitlines():
            ident, _, digest = line.partition(" ")
            if ident.isdigit() and len(digest) == 64:
                out[int(ident)] = digest
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


#: Keeps the highest (id, hash) ever noted: concurrent commits from several nodes may arrive out
#: of order.
_HEAD_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'id') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'hash', ARGV[2])
end
return 0
"""


class RedisWitness:
    """The chain head of every node, in Redis. A commit schedules the update (the commit hook
    cannot await); a Redis outage costs a warning, never the commit."""

    def __init__(self, redis: Redis, *, key: str = "onedoor:audit:head") -> None:
        self._redis = redis
        self._key = key
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, entries: list[tuple[int, str]]) -> None:
        ident, digest = max(entries)
        task = asyncio.get_running_loop().create_task(
            self._push(ident, digest), name="audit-witness"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, ident: int, digest: str) -> None:
        try:
            await self._redis.eval(_HEAD_SCRIPT, 1, self._key, str(ident), digest)
        except (RedisError, OSError) as e:
            logger.warning("audit head not witnessed in Redis: %s", type(e).__name__)

    async def flush(self) -> None:
        """Wait for the updates already scheduled."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def head(self) -> tuple[int, str] | None:
        await self.flush()
        raw = await self._redis.hmget(self._key, ["id", "hash"])
        if raw[0] is None or raw[1] is None:
            return None
        return int(raw[0]), raw[1].decode() if isinstance(raw[1], bytes) else str(raw[1])

    async def aclose(self) -> None:
        await self.flush()
        await self._redis.aclose()


@dataclass(frozen=True)
class ChainConfig:
    key: bytes
    witness: FileWitness | None = None
    redis_witness: RedisWitness | None = None

    async def witnessed(self) -> dict[int, str]:
        """Every (id, hash) the witnesses saw."""
        seen = self.witness.read() if self.witness is not None else {}
        if self.redis_witness is not None:
            head = await self.redis_witness.head()
            if head is not None:
                seen.setdefault(*head)
        return seen

    async def aclose(self) -> None:
        if self.witness is not None:
            self.witness.close()
        if self.redis_witness is not None:
            await self.redis_witness.aclose()


def _after_commit(session: Session) -> None:
    pending: list[tuple[int, str]] = session.info.pop(PENDING_KEY, [])
    config = session.info.get(INFO_KEY)
    if pending and isinstance(config, ChainConfig):
        if config.witness is not None:
            config.witness.note(pending)
        if config.redis_witness is not None:
            config.redis_witness.note(pending)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


def session_options(config: ChainConfig) -> dict[str, Any]:
    """Keyword arguments for `make_sessionmaker`: the config in every session's `info`, and a
    Session class of its own whose commits feed the witness."""
    cls = type("AuditedSession", (Session,), {})
    event.listen(cls, "after_commit", _after_commit)
    event.listen(cls, "after_rollback", _after_rollback)
    return {"info": {INFO_KEY: config}, "sync_session_class": cls}


def config_of(session_info: dict[Any, Any]) -> ChainConfig | None:
    config = session_info.get(INFO_KEY)
    return config if isinstance(config, ChainConfig) else None


def for_deployment(secret: bytes, data_dir: Path, redis_url: str | None = None) -> ChainConfig:
    """The deployment's chain: keyed, witnessed in the data dir and, with Redis, there too (a
    client of its own, connected on first use)."""
    key = derive_key(secret)
    # Named after the key: the nodes of one deployment share it, other deployments on the same
    # Redis (or tests) never read each other's head.
    head_key = f"onedoor:audit:head:{hashlib.sha256(key).hexdigest()[:16]}"
    return ChainConfig(
        key=key,
        witness=FileWitness(data_dir / WITNESS_FILE),
        redis_witness=RedisWitness(Redis.from_url(redis_url), key=head_key) if redis_url else None,
    )
