"""Two sweep runners at once on real PostgreSQL (advisory lock) and real Redis (lock key)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import deadline_service
from server.cases.catalogue import load_case_reference
from server.cases.models import CaseNotification
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Staff
from tests.component.cases.conftest import NOW, who
from tests.component.cases.test_lifecycle import fire, register
from tests.fakes import RecordingNotifier

pytestmark = pytest.mark.integration


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from tests.conftest import load_demo_into

    await load_demo_into(pg_url)
    engine = make_engine(pg_url)
    maker = make_sessionmaker(engine)
    async with maker.begin() as s:
        await load_case_reference(s)
        for staff in await s.scalars(select(Staff)):
            staff.phone = f"139{staff.id:08d}"
    yield maker
    await engine.dispose()


async def _overdue_cases(db: async_sessionmaker[AsyncSession], n: int) -> None:
    pii = PiiCipher(secrets.token_bytes(32))
    for _ in range(n):
        case_id = await register(
            db,
            pii,
            matter="property_management",
            summary="物业乱收费",
            attributes={"estate": "和睦新村"},
        )
        await fire(db, "handler02", case_id, "accept")


@pytest.mark.parametrize("use_redis", [False, True], ids=["pg_advisory", "redis"])
async def test_two_runners_one_sweep(
    pg_db: async_sessionmaker[AsyncSession], use_redis: bool, redis_url: str, redis_prefix: str
) -> None:
    await _overdue_cases(pg_db, 3)
    redis = Redis.from_url(redis_url) if use_redis else None
    lock = f"{redis_prefix}lock:sweep"
    # the handling period ends on 1 May (劳动节) and rolls over to the end of 6 May (docs/cases.md)
    late = NOW + timedelta(days=69)
    gate = RecordingNotifier(held=True)
    try:
        first = asyncio.create_task(
            deadline_service.run_deadline_sweep(
                pg_db, now=late, notifier=gate, redis=redis, lock_name=lock
            )
        )
        await asyncio.wait_for(gate.entered.wait(), 30)
        second = await deadline_service.run_deadline_sweep(
            pg_db, now=late, notifier=gate, redis=redis, lock_name=lock
        )
        assert not second.ran
        gate.release.set()
        report = await asyncio.wait_for(first, 30)
        assert report.ran and report.escalations == 6  # levels 1 and 2 for each case
        assert len(gate.sent) == len(set(gate.sent)) == report.sent
        # a third run after the first finished: the lock is free, and there is nothing to do
        third = await deadline_service.run_deadline_sweep(
            pg_db, now=late, notifier=gate, redis=redis, lock_name=lock
        )
        assert third.ran and (third.warnings, third.escalations, third.sent) == (0, 0, 0)
        async with pg_db() as s:
            pending = await s.scalar(
                select(func.count())
                .select_from(CaseNotification)
                .where(CaseNotification.status != "sent")
            )
            assert pending == 0
    finally:
        if redis is not None:
            await redis.delete(lock)
            await redis.aclose()


async def test_concurrent_sweeps_on_both_sides_of_the_lock_never_duplicate(
    pg_db: async_sessionmaker[AsyncSession],
) -> None:
    """Without a gate: five runners race; messages are still sent exactly once."""
    await _overdue_cases(pg_db, 2)

    notifier = RecordingNotifier()
    # the handling period ends on 1 May (劳动节) and rolls over to the end of 6 May (docs/cases.md)
    late = NOW + timedelta(days=69)
    reports = await asyncio.gather(
        *(deadline_service.run_deadline_sweep(pg_db, now=late, notifier=notifier) for _ in range(5))
    )
    assert sum(r.escalations for r in reports) == 4
    assert len(notifier.sent) == len(set(notifier.sent))
    async with pg_db() as s:
        assert (await who(s, "supervisor01")).staff_id > 0


@pytest.mark.parametrize("use_redis", [False, True], ids=["pg_advisory", "redis"])
async def test_evaluation_timeouts_once_with_racing_runners(
    pg_db: async_sessionmaker[AsyncSession], use_redis: bool, redis_url: str, redis_prefix: str
) -> None:
    """Five runners at the end of the evaluation window: each case times out to 未评价 once,
    with one timeline entry, and its link stops working."""
    from server.cases import evaluation
    from server.cases.models import CaseEvent, CaseState, Evaluation, PetitionCase
    from tests.component.cases.test_evaluation_timeout import VOTE, replied_case
    from tests.component.cases.test_lifecycle import SECRET

    pii = PiiCipher(secrets.token_bytes(32))
    cases = [await replied_case(pg_db, pii, days=2, at=timedelta()) for _ in range(3)]
    redis = Redis.from_url(redis_url) if use_redis else None
    lock = f"{redis_prefix}lock:sweep"
    late = NOW + timedelta(days=4)
    try:
        reports = await asyncio.gather(
            *(
                deadline_service.run_deadline_sweep(
                    pg_db,
                    now=late,
                    notifier=RecordingNotifier(),
                    redis=redis,
                    lock_name=lock,
                    pii=pii,
                )
                for _ in range(5)
            )
        )
    finally:
        if redis is not None:
            await redis.delete(lock)
            await redis.aclose()
    assert sum(r.evaluation_timeouts for r in reports) == 3
    ids = [case_id for case_id, _ in cases]
    async with pg_db() as s:
        events = list(
            await s.scalars(
                select(CaseEvent.case_id).where(
                    CaseEvent.case_id.in_(ids), CaseEvent.type == "evaluation_timeout"
                )
            )
        )
        assert sorted(events) == sorted(ids)
        states = set(await s.scalars(select(PetitionCase.state).where(PetitionCase.id.in_(ids))))
        assert states == {CaseState.evaluated}
        ratings = set(
            await s.scalars(select(Evaluation.staff_rating).where(Evaluation.case_id.in_(ids)))
        )
        assert ratings == {"unrated"}
    for _, token in cases:
        async with pg_db.begin() as s:
            with pytest.raises(evaluation.EvaluationTimedOut):
                await evaluation.submit_evaluation(
                    s, secret=SECRET, token=token, submit=VOTE, now=late
                )
