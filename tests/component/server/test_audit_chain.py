"""The audit chain is tamper-evident (issue #21): keyed MAC and a witness outside the database.

Five entries are recorded the way the app records them (keyed, witnessed on commit); then the
table is tampered with the way someone with database access, but not the deployment's secret,
would, and `verify` must name the first bad entry. One case plays an insider who also has the
secret: only the witness catches them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import chain as audit_chain
from server.audit.models import AuditEntry
from server.audit.service import GENESIS, VerifyResult, _digest, record, verify
from server.db import make_engine, make_sessionmaker


@dataclass
class Deployment:
    audited: async_sessionmaker[AsyncSession]  # the app's sessions: keyed and witnessed
    raw: async_sessionmaker[AsyncSession]  # direct database access, no secret
    key: bytes
    ids: list[int]

    async def verify(self) -> VerifyResult:
        async with self.audited() as session:
            return await verify(session)

    async def rechain(self, *, key: bytes | None, start_id: int = 0) -> None:
        """Recompute every link and hash from `start_id` on, as a forger with `key` would."""
        async with self.raw.begin() as session:
            rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
            prev = GENESIS
            for row in rows:
                if row.id >= start_id:
                    row.prev_hash = prev
                    row.hash = _digest(
                        prev,
                        key=key,
                        at=row.at,
                        actor=row.actor,
                        action=row.action,
                        object_type=row.object_type,
                        object_id=row.object_id,
                        ip=row.ip,
                        detail=row.detail,
                    )
                prev = row.hash


@pytest.fixture
async def deployment(tmp_path: Path, db_url: str) -> AsyncIterator[Deployment]:
    engine = make_engine(db_url)
    config = audit_chain.for_deployment(secrets.token_bytes(32), tmp_path / "data")
    audited = make_sessionmaker(engine, **audit_chain.session_options(config))
    for n in range(5):
        async with audited.begin() as session:
            await record(session, actor=f"staff:{n}", action="case.update", object_id=str(n))
    raw = make_sessionmaker(engine)
    async with raw() as session:
        ids = list((await session.scalars(select(AuditEntry.id).order_by(AuditEntry.id))).all())
    try:
        yield Deployment(audited, raw, config.key, ids)
    finally:
        await engine.dispose()
        await config.aclose()


async def test_intact_chain_verifies(deployment: Deployment) -> None:
    assert await deployment.verify() == VerifyResult(ok=True, checked=5)


async def test_edit_is_detected(deployment: Deployment) -> None:
    third = deployment.ids[2]
    async with deployment.raw.begin() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.id == third).values(actor="staff:mallory")
        )
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id, result.reason) == (
        False,
        third,
        "row content was edited",
    )


@pytest.mark.parametrize("forger_key", [None, b"a guess at the key"])
async def test_rechain_without_the_key_is_detected(
    deployment: Deployment, forger_key: bytes | None
) -> None:
    third = deployment.ids[2]
    async with deployment.raw.begin() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.id == third).values(actor="staff:mallory")
        )
    await deployment.rechain(key=forger_key, start_id=third)
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id) == (False, third)


async def test_unkeyed_chain_rebuilt_from_the_genesis_is_caught_by_the_witness(
    deployment: Deployment,
) -> None:
    """Every row becomes a valid legacy (unkeyed) row; only the witness knows better."""
    await deployment.rechain(key=None)
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id) == (False, deployment.ids[0])
    assert "witness" in result.reason


async def test_middle_deletion_is_detected(deployment: Deployment) -> None:
    third, fourth = deployment.ids[2], deployment.ids[3]
    async with deployment.raw.begin() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id == third))
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id) == (False, fourth)
    assert result.reason.startswith("chain broken")


async def test_middle_deletion_rechained_with_the_key_is_caught_by_the_witness(
    deployment: Deployment,
) -> None:
    """An insider with the secret re-chains after deleting a row: the MACs are all valid."""
    third = deployment.ids[2]
    async with deployment.raw.begin() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id == third))
    await deployment.rechain(key=deployment.key, start_id=third)
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id) == (False, third)
    assert "witness" in result.reason


async def test_tail_truncation_is_detected(deployment: Deployment) -> None:
    fourth = deployment.ids[3]
    async with deployment.raw.begin() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.id >= fourth))
    result = await deployment.verify()
    assert (result.ok, result.first_bad_id) == (False, fourth)
    assert result.reason.startswith("tail truncated")


async def test_rolled_back_entries_are_not_witnessed(deployment: Deployment) -> None:
    async with deployment.audited() as session:
        await record(session, actor="staff:9", action="case.update")
        await session.rollback()
    assert await deployment.verify() == VerifyResult(ok=True, checked=5)


@pytest.mark.integration
async def test_redis_witness_catches_tail_truncation_across_nodes(
    tmp_path: Path, sqlite_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Two nodes of one deployment, no witness file: the head they share in Redis is enough to
    catch the newest rows being deleted, whichever node wrote them."""
    from redis.asyncio import Redis

    engine = make_engine(sqlite_url)
    key = secrets.token_bytes(32)
    nodes = [
        audit_chain.ChainConfig(
            key=key,
            redis_witness=audit_chain.RedisWitness(
                Redis.from_url(redis_url), key=f"{redis_prefix}audit:head"
            ),
        )
        for _ in range(2)
    ]
    try:
        makers = [make_sessionmaker(engine, **audit_chain.session_options(c)) for c in nodes]
        for n in range(4):
            async with makers[n % 2].begin() as session:
                await record(session, actor=f"staff:{n}", action="case.update")
        async with makers[0]() as session:
            assert (await verify(session)).ok
            last = await session.scalar(select(func.max(AuditEntry.id)))
        async with make_sessionmaker(engine).begin() as session:
            await session.execute(delete(AuditEntry).where(AuditEntry.id == last))
        async with makers[0]() as session:
            result = await verify(session)
        assert (result.ok, result.first_bad_id) == (False, last)
        assert result.reason.startswith("tail truncated")
    finally:
        client = Redis.from_url(redis_url)
        await client.delete(f"{redis_prefix}audit:head")
        await client.aclose()
        for config in nodes:
            await config.aclose()
        await engine.dispose()
