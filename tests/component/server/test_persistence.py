"""Persistence on both backends: audit chain, gap-free case numbers, demo load, sign-in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from server.audit.models import AuditEntry
from server.audit.service import record, verify
from server.auth.service import load_session, sign_in
from server.cases.intake import create_case
from server.cases.models import Channel, PetitionCase, Petitioner
from server.cases.schemas import PetitionerInput
from server.demo.loader import load_demo
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.errors import InvalidCredentials
from server.org.models import Resource, ResourceType, Site, SiteLevel, Staff

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def test_audit_chain_detects_edit_and_delete(db_url: str) -> None:
    engine = make_engine(db_url)
    db = make_sessionmaker(engine)
    try:
        for i in range(5):
            async with db.begin() as s:
                await record(
                    s,
                    actor="staff:1",
                    action="case.view",
                    object_type="case",
                    object_id=str(i),
                    detail={"n": i, "名": "测试"},
                )
        async with db.begin() as s:
            assert (await verify(s)).ok
            assert (await verify(s)).checked == 5
        async with db.begin() as s:
            await s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="staff:2"))
        async with db.begin() as s:
            result = await verify(s)
        assert not result.ok and result.first_bad_id == 3
        async with db.begin() as s:
            await s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="staff:1"))
            await s.delete(await s.get(AuditEntry, 2))
        async with db.begin() as s:
            result = await verify(s)
        assert not result.ok and result.first_bad_id == 3
    finally:
        await engine.dispose()


async def test_demo_district_shape_and_idempotence(demo_db_url: str) -> None:
    engine = make_engine(demo_db_url)
    db = make_sessionmaker(engine)
    try:
        async with db.begin() as s:
            again = await load_demo(s)
            counts = dict(
                (await s.execute(select(Site.level, func.count()).group_by(Site.level)))
                .tuples()
                .all()
            )
            terminals = await s.scalar(
                select(func.count())
                .select_from(Resource)
                .where(Resource.type == ResourceType.video_terminal)
            )
            windows = await s.scalar(
                select(func.count())
                .select_from(Resource)
                .where(Resource.type == ResourceType.window)
            )
            rooms = await s.scalar(
                select(func.count())
                .select_from(Resource)
                .where(Resource.type == ResourceType.legal_room)
            )
        assert not again.created
        assert counts == {SiteLevel.district: 1, SiteLevel.street: 10, SiteLevel.community: 94}
        assert windows == 7 and rooms == 5
        assert terminals is not None and terminals >= 94 + 10
    finally:
        await engine.dispose()


async def _intake(db: object, pii: PiiCipher, site_id: int, n: int, fail: bool = False) -> str:
    async with db.begin() as s:  # type: ignore[attr-defined]
        case = await create_case(
            s,
            pii=pii,
            site_id=site_id,
            channel=Channel.window,
            summary=f"诉求 {n}",
            petitioner=PetitionerInput(name="王建国", phone="13812345678"),
            first_receiver_id=None,
            now=NOW,
        )
        if fail:
            raise RuntimeError("intake aborted after numbering")
        return case.case_no


@pytest.mark.parametrize("concurrency", [50])
async def test_case_numbers_unique_and_gap_free_under_concurrency(
    demo_db_url: str, concurrency: int
) -> None:
    engine = make_engine(demo_db_url)
    db = make_sessionmaker(engine)
    pii = PiiCipher(b"secret")
    try:
        async with db.begin() as s:
            site_id = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
        assert site_id is not None
        jobs = [_intake(db, pii, site_id, n, fail=(n % 7 == 3)) for n in range(concurrency)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        numbers = sorted(r for r in results if isinstance(r, str))
        failures = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(f, RuntimeError) for f in failures)
        expected = [f"330105-2026-{i:06d}" for i in range(1, len(numbers) + 1)]
        assert numbers == expected  # unique, and the aborted intakes left no gaps
        async with db.begin() as s:
            stored = (await s.scalars(select(PetitionCase.seq).order_by(PetitionCase.seq))).all()
            phones = (await s.scalars(select(Petitioner.phone_enc))).all()
        assert list(stored) == list(range(1, len(numbers) + 1))
        assert all(p and "13812345678" not in p for p in phones)  # encrypted at rest
        assert pii.decrypt(phones[0] or "") == "13812345678"
    finally:
        await engine.dispose()


async def test_sign_in_never_locks_the_account_and_idle_timeout(demo_db_url: str) -> None:
    """Failures never lock the account itself (issue #21: anyone could lock staff out); the
    edge throttles per (name, address) pair instead (tests/component/server/
    test_sign_in_throttle.py)."""
    engine = make_engine(demo_db_url)
    db = make_sessionmaker(engine)
    kw: dict[str, Any] = {"ip": "127.0.0.1"}
    try:
        for _ in range(6):
            async with db.begin() as s:
                with pytest.raises(InvalidCredentials):
                    await sign_in(s, username="window01", password="wrong", now=NOW, **kw)
                await s.commit()
        later = NOW + timedelta(minutes=1)
        async with db.begin() as s:
            sid, who = await sign_in(
                s, username="window01", password="demo-pass-2026", now=later, **kw
            )
        assert "window_officer" in who.roles
        async with db.begin() as s:
            assert (
                await load_session(
                    s,
                    session_id=sid,
                    now=later + timedelta(minutes=5),
                    idle_timeout=timedelta(minutes=30),
                )
                is not None
            )
        async with db.begin() as s:
            assert (
                await load_session(
                    s,
                    session_id=sid,
                    now=later + timedelta(hours=2),
                    idle_timeout=timedelta(minutes=30),
                )
                is None
            )
        async with db.begin() as s:
            staff = await s.scalar(select(Staff).where(Staff.username == "window01"))
            assert staff is not None and staff.failed_logins == 0
            actions = (await s.scalars(select(AuditEntry.action))).all()
        assert "auth.sign_in_failed" in actions and "auth.sign_in" in actions
        assert "auth.locked" not in actions
        assert "auth.session_expired" in actions
    finally:
        await engine.dispose()
