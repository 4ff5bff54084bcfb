"""The audit log is tamper-evident for someone with write access to the database: editing,
re-chaining, deleting in the middle and truncating the tail are each detected and named, on
SQLite and PostgreSQL, with the file witness and the Redis witness."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.chain import (
    WITNESS_FILE,
    AuditChain,
    AuditKeys,
    FileWitness,
    RedisWitness,
    Witness,
)
from server.audit.chain import flush as flush_witnesses
from server.audit.models import AuditEntry
from server.audit.service import _body, record, verify
from server.kernel.crypto import derive_key
from server.kernel.db import make_engine, make_sessionmaker

SECRET = b"s" * 32


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def chain(tmp_path: Path, redis: Redis, redis_prefix: str) -> AuditChain:
    witnesses: tuple[Witness, ...] = (
        FileWitness(tmp_path / WITNESS_FILE),
        RedisWitness(redis, key=redis_prefix + "audit:head"),
    )
    return AuditChain(AuditKeys(SECRET), witnesses)


@pytest.fixture
async def maker(db_url: str, chain: AuditChain) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine, info=chain.info())
    await engine.dispose()


async def _write(maker: async_sessionmaker[AsyncSession], chain: AuditChain, n: int) -> None:
    for i in range(n):  # one commit per entry, as requests do
        async with maker.begin() as s:
            await record(s, actor=f"staff:{i}", action="case.read", object_id=str(i))
    await flush_witnesses(chain)


async def _verify(maker: async_sessionmaker[AsyncSession]) -> tuple[bool, int | None, str]:
    async with maker() as s:
        result = await verify(s)
    return result.ok, result.first_bad_id, result.reason


async def _rechain(s: AsyncSession, key: bytes | None) -> None:
    """What an attacker with database access does after a change: recompute every link (with
    the MAC key if they stole the secret, else with plain SHA-256)."""
    prev = "0" * 64
    for row in (await s.scalars(select(AuditEntry).order_by(AuditEntry.id))).all():
        body = _body(
            prev,
            at=row.at,
            actor=row.actor,
            action=row.action,
            object_type=row.object_type,
            object_id=row.object_id,
            ip=row.ip,
            detail=row.detail,
        )
        row.prev_hash = prev
        row.hash = (
            hmac.new(key, body, hashlib.sha256).hexdigest()
            if key
            else hashlib.sha256(body).hexdigest()
        )
        await s.flush()
        prev = row.hash


async def test_an_untouched_log_verifies_and_every_head_is_witnessed(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 5)
    async with maker() as s:
        result = await verify(s)
    assert result.ok and result.checked == 5 and result.unwitnessed == 0
    assert result.witnesses == ("file", "redis")
    file_heads = await chain.witnesses[0].heads()
    assert [h.entry_id for h in file_heads] == [1, 2, 3, 4, 5]
    assert [h.entry_id for h in await chain.witnesses[1].heads()] == [5]


async def test_a_rolled_back_entry_is_never_witnessed(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 2)
    async with maker() as s, s.begin():
        await record(s, actor="staff:9", action="case.read")
        await s.rollback()
    await flush_witnesses(chain)
    assert [h.entry_id for h in await chain.witnesses[0].heads()] == [1, 2]
    assert (await _verify(maker))[0]


async def test_an_edited_entry_is_named(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 5)
    async with maker.begin() as s:
        await s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="staff:999"))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 3 and reason.startswith("edited")


async def test_an_edit_rechained_without_the_secret_is_named(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 5)
    async with maker.begin() as s:
        await s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="staff:999"))
        await s.execute(update(AuditEntry).values(key_id=""))
        await _rechain(s, None)
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 1 and reason.startswith("re-chained")


async def test_an_edit_rechained_with_the_stolen_secret_is_named(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 5)
    async with maker.begin() as s:
        await s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="staff:999"))
        await _rechain(s, derive_key(SECRET, b"audit-chain-v1"))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 3 and reason.startswith("re-chained")


async def test_a_middle_deletion_rechained_with_the_stolen_secret_is_named(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 6)
    async with maker.begin() as s:
        await s.execute(delete(AuditEntry).where(AuditEntry.id == 3))
        await _rechain(s, derive_key(SECRET, b"audit-chain-v1"))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 3 and reason.startswith("deleted")


async def test_a_middle_deletion_without_rechaining_is_named(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 6)
    async with maker.begin() as s:
        await s.execute(delete(AuditEntry).where(AuditEntry.id == 3))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 3 and reason.startswith("deleted")


async def test_deleting_the_last_three_entries_is_named_truncated(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain
) -> None:
    await _write(maker, chain, 8)
    async with maker.begin() as s:
        await s.execute(delete(AuditEntry).where(AuditEntry.id > 5))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 6 and reason.startswith("truncated")


async def test_redis_alone_still_catches_truncation(
    maker: async_sessionmaker[AsyncSession], chain: AuditChain, tmp_path: Path
) -> None:
    await _write(maker, chain, 4)
    (tmp_path / WITNESS_FILE).unlink()  # the attacker also removed the file witness
    async with maker.begin() as s:
        await s.execute(delete(AuditEntry).where(AuditEntry.id == 4))
    ok, bad, reason = await _verify(maker)
    assert not ok and bad == 4 and reason.startswith("truncated")


async def test_a_rotated_secret_still_verifies_old_entries(db_url: str, tmp_path: Path) -> None:
    witness = FileWitness(tmp_path / WITNESS_FILE)
    old = AuditChain(AuditKeys(b"old" * 11), (witness,))
    new = AuditChain(AuditKeys(b"new" * 11, old_secrets=(b"old" * 11,)), (witness,))
    engine = make_engine(db_url)
    try:
        await _write(make_sessionmaker(engine, info=old.info()), old, 2)
        await _write(make_sessionmaker(engine, info=new.info()), new, 2)
        assert (await _verify(make_sessionmaker(engine, info=new.info())))[0]
        # Without the old secret, the old entries cannot be checked: said, not passed.
        alone = AuditChain(AuditKeys(b"new" * 11), (witness,))
        ok, bad, reason = await _verify(make_sessionmaker(engine, info=alone.info()))
        assert not ok and bad == 1 and reason.startswith("unknown key")
    finally:
        await engine.dispose()


async def test_unkeyed_entries_are_accepted_only_before_the_first_keyed_one(
    db_url: str, tmp_path: Path
) -> None:
    keyed = AuditChain(AuditKeys(SECRET), (FileWitness(tmp_path / WITNESS_FILE),))
    engine = make_engine(db_url)
    try:
        plain = make_sessionmaker(engine)  # entries written before the chain was keyed
        async with plain.begin() as s:
            await record(s, actor="cli", action="staff.create")
        await _write(make_sessionmaker(engine, info=keyed.info()), keyed, 2)
        assert (await _verify(make_sessionmaker(engine, info=keyed.info())))[0]
        async with plain.begin() as s:
            await record(s, actor="cli", action="staff.create")
        ok, bad, reason = await _verify(make_sessionmaker(engine, info=keyed.info()))
        assert not ok and bad == 4 and reason.startswith("unkeyed")
    finally:
        await engine.dispose()
