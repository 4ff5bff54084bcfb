"""What makes the audit log tamper-evident beyond its own rows.

- **A keyed MAC.** Each entry's `hash` is HMAC-SHA256 over the previous entry's hash and the
  entry's content, under a key derived from the deployment secret. Someone with write access to
  the database but not the secret cannot re-compute the chain after editing or deleting a row.
  The key id stored with each entry lets a rotated secret (ONEDOOR_PREVIOUS_SECRET_KEYS) still
  verify the entries written under the old one.
- **Witnesses outside the database.** After every commit that appended entries, the newest
  entry's id and hash are written to each witness: an append-only file in the data directory
  (one line per committed head) and, when Redis is configured, a Redis hash. Verification checks
  every witnessed head against the database, so a re-computed chain (even by someone holding the
  secret), a deleted entry or a truncated tail is detected.

The chain travels with the database session (`session.info`), so the many callers of
`audit.service.record` need nothing more than the session they already have.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from server.kernel.crypto import derive_key
from server.kernel.settings import Settings

logger = logging.getLogger(__name__)

INFO_KEY = "onedoor.audit_chain"
_PENDING = "onedoor.audit_pending"
WITNESS_FILE = "audit-witness.log"


class AuditKeys:
    """The current MAC key and the keys of previous secrets, by key id."""

    def __init__(self, secret: bytes, *, old_secrets: tuple[bytes, ...] = ()) -> None:
        self._keys: dict[str, bytes] = {}
        self.current_id = ""
        for index, s in enumerate((secret, *old_secrets)):
            key = derive_key(s, b"audit-chain-v1")
            key_id = hashlib.sha256(key).hexdigest()[:8]
            self._keys.setdefault(key_id, key)
            if index == 0:
                self.current_id = key_id

    def mac(self, key_id: str, body: bytes) -> str | None:
        """The MAC under key `key_id`, or None when that key is not known here."""
        key = self._keys.get(key_id)
        if key is None:
            return None
        return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    entry_id: int
    hash: str


class Witness(Protocol):
    """Keeps the chain's committed heads somewhere the database's writers cannot reach."""

    name: str

    def witness(self, head: Head) -> None:
        """Record a committed head (called right after the commit; must not block long)."""

    async def heads(self) -> list[Head]:
        """Every head this witness holds (at least the newest)."""
        ...


class FileWitness:
    """One line per committed head, `<id> <hash>`, appended with O_APPEND."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def witness(self, head: Head) -> None:
        line = f"{head.entry_id} {head.hash}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    async def heads(self) -> list[Head]:
        if not self.path.exists():
            return []
        heads = []
        for raw in self.path.read_text("ascii").splitlines():
            parts = raw.split()
            if len(parts) == 2 and parts[0].isdigit():
                heads.append(Head(int(parts[0]), parts[1]))
        return heads


# Keep the newest head: a later commit may reach Redis before an earlier one.
_SET_IF_NEWER = """
local current = tonumber(redis.call('HGET', KEYS[1], 'id') or '0')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'hash', ARGV[2])
end
return 1
"""


class RedisWitness:
    """The newest committed head in a Redis hash (shared by every node)."""

    name = "redis"

    def __init__(self, redis: Redis, *, key: str = "onedoor:audit:head") -> None:
        self._redis = redis
        self._key = key
        self._tasks: set[asyncio.Task[None]] = set()

    def witness(self, head: Head) -> None:
        task = asyncio.get_running_loop().create_task(self._write(head))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, head: Head) -> None:
        try:
            await self._redis.eval(_SET_IF_NEWER, 1, self._key, str(head.entry_id), head.hash)
        except (RedisError, OSError) as e:  # an outage: the next commit's head catches up
            logger.warning(
                "audit head %s not witnessed in Redis (%s)", head.entry_id, type(e).__name__
            )

    async def flush(self) -> None:
        """Wait for witness writes under way (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def heads(self) -> list[Head]:
        raw = await self._redis.hgetall(self._key)
        values = {_text(k): _text(v) for k, v in raw.items()}
        if "id" not in values:
            return []
        return [Head(int(values["id"]), values["hash"])]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class AuditChain:
    keys: AuditKeys
    witnesses: tuple[Witness, ...] = field(default=())

    def info(self) -> dict[str, object]:
        """The `info` to create sessions with (`make_sessionmaker(engine, info=chain.info())`)."""
        return {INFO_KEY: self}


def chain_of(session: AsyncSession) -> AuditChain | None:
    chain = session.info.get(INFO_KEY)
    return chain if isinstance(chain, AuditChain) else None


def note_appended(session: AsyncSession, chain: AuditChain, head: Head) -> None:
    """Remember the newest appended head; witness it once the transaction commits."""
    if not chain.witnesses:
        return
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        sync = session.sync_session
        event.listen(sync, "after_commit", _after_commit)
        event.listen(sync, "after_soft_rollback", _after_rollback)
    pending.append(head)


def _after_commit(sync: Session) -> None:
    pending: list[Head] | None = sync.info.get(_PENDING)
    chain = sync.info.get(INFO_KEY)
    if not pending or not isinstance(chain, AuditChain):
        return
    head = max(pending, key=lambda h: h.entry_id)
    pending.clear()
    for witness in chain.witnesses:
        try:
            witness.witness(head)
        except Exception:
            logger.warning(
                "audit head %s not witnessed (%s)", head.entry_id, witness.name, exc_info=True
            )


def _after_rollback(sync: Session, previous_transaction: object) -> None:
    pending: list[Head] | None = sync.info.get(_PENDING)
    if pending:
        pending.clear()


def chain_for(settings: Settings, redis: Redis | None) -> AuditChain:
    """The deployment's chain: keys from its secrets, the data directory's witness file,
    when Redis is configured the Redis witness, and with a TSA the time-stamped anchors
    (server/audit/anchors.py)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    witnesses: list[Witness] = [FileWitness(settings.data_dir / WITNESS_FILE)]
    if redis is not None:
        witnesses.append(RedisWitness(redis))
    if settings.tsa_url and settings.tsa_cert is not None:
        from server.audit.anchors import ANCHOR_FILE, TsaWitness  # it imports Head from here

        witnesses.append(
            TsaWitness(settings.data_dir / ANCHOR_FILE, settings.tsa_cert.read_bytes())
        )
    keys = AuditKeys(settings.secret_bytes(), old_secrets=settings.previous_secret_bytes())
    return AuditChain(keys, tuple(witnesses))


async def flush(chain: AuditChain) -> None:
    """Wait for witness writes still under way."""
    for witness in chain.witnesses:
        if isinstance(witness, RedisWitness):
            await witness.flush()


def newest(heads: Iterable[Head]) -> Head | None:
    return max(heads, key=lambda h: h.entry_id, default=None)
