"""Races that only a real database settles: 50 conflicting bookings at once (exactly one
wins, on PostgreSQL through the exclusion constraint, on SQLite through BEGIN IMMEDIATE), and
two reminder runners on one PostgreSQL (every job sent exactly once)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from scheduling import service
from scheduling.models import Booking, BookingClaim, ScheduledJob
from scheduling.reminders import StaffRoomLinks, run_due_reminders
from scheduling.schemas import BookingOut, BookingRequest
from server.kernel.crypto import PiiCipher
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.errors import BookingConflict
from server.org.models import Staff
from tests.component.scheduling.conftest import NOW, TZ, demo_ids
from tests.conftest import load_demo_into
from tests.fakes import RecordingNotifier

START = datetime.fromisoformat("2026-12-08T09:00:00+08:00")
CONTENDERS = 50


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def wide_db(
    request: pytest.FixtureRequest,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A demo database with a connection pool wide enough for every contender at once."""
    if request.param == "sqlite":
        url = str(request.getfixturevalue("demo_sqlite_url"))
        engine = make_engine(url, pool_size=CONTENDERS, max_overflow=0)
    else:
        url = str(request.getfixturevalue("pg_url"))
        await load_demo_into(url)
        engine = create_async_engine(url, pool_size=CONTENDERS, max_overflow=0, pool_timeout=30)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_fifty_conflicting_bookings_exactly_one_wins(
    wide_db: async_sessionmaker[AsyncSession],
) -> None:
    pii = PiiCipher(secrets.token_bytes(32))
    async with wide_db() as session:
        ids = await demo_ids(session)

    async def attempt(i: int) -> BookingOut:
        # Every pair overlaps: starts 09:00..09:49, one hour long, same room.
        start = START + timedelta(minutes=i)
        req = BookingRequest.model_validate(
            {
                "start": start,
                "end": start + timedelta(hours=1),
                "staff": [{"staff_id": ids.mediators[i % len(ids.mediators)]}],
                "resources": [{"resource_id": ids.centre_room}],
            }
        )
        async with wide_db.begin() as session:
            return await service.book(
                session,
                request=req,
                actor=f"staff:{i}",
                actor_staff_id=None,
                now=NOW,
                tz=TZ,
                cipher=pii,
            )

    results = await asyncio.gather(*(attempt(i) for i in range(CONTENDERS)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, BookingOut)]
    losers = [r for r in results if isinstance(r, BookingConflict)]
    assert len(winners) == 1, [
        type(r).__name__ for r in results if not isinstance(r, BookingConflict)
    ]
    assert len(losers) == CONTENDERS - 1
    async with wide_db() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 1
        claims = await session.scalar(
            select(func.count())
            .select_from(BookingClaim)
            .where(BookingClaim.resource_key == f"resource:{ids.centre_room}")
        )
        assert claims == 1


@pytest.mark.integration
async def test_two_runners_send_every_job_exactly_once(pg_url: str) -> None:
    await load_demo_into(pg_url)
    engine_a, engine_b = make_engine(pg_url), make_engine(pg_url)  # two "nodes"
    node_a, node_b = make_sessionmaker(engine_a), make_sessionmaker(engine_b)
    pii = PiiCipher(secrets.token_bytes(32))
    try:
        async with node_a.begin() as session:
            ids = await demo_ids(session)
            # Demo staff have phones; take the mediator's away so their invites fail.
            await session.execute(
                update(Staff).where(Staff.id == ids.mediators[0]).values(phone="")
            )
            for i in range(12):
                start = START + timedelta(days=i // 6, hours=i % 6 if i % 6 < 3 else i % 6 + 1.5)
                req = BookingRequest.model_validate(
                    {
                        "start": start,
                        "end": start + timedelta(minutes=45),
                        "staff": [{"staff_id": ids.mediators[0]}],
                        "guests": [
                            {"display_name": f"当事人{i}a", "email": f"a{i}@example.cn"},
                            {"display_name": f"当事人{i}b", "email": f"b{i}@example.cn"},
                        ],
                        "title": f"调解{i}",
                        "reminders_s": [3600],
                    }
                )
                await service.book(
                    session,
                    request=req,
                    actor="staff:1",
                    actor_staff_id=None,
                    now=NOW,
                    tz=TZ,
                    cipher=pii,
                )
            expected = 12 * 2  # guests' invites (the mediator has no phone: those fail)
        notifier = RecordingNotifier(delay_s=0.001)  # let the other runner interleave

        async def runner(maker: async_sessionmaker[AsyncSession]) -> None:
            while True:
                await run_due_reminders(
                    maker,
                    now=NOW,
                    notifier=notifier,
                    issuer=StaffRoomLinks("https://od.test"),
                    cipher=pii,
                    tz=TZ,
                    limit=4,
                )
                async with maker() as session:
                    left = await session.scalar(
                        select(func.count())
                        .select_from(ScheduledJob)
                        .where(ScheduledJob.status == "pending", ScheduledJob.due_at <= NOW)
                    )
                if not left:
                    return

        await asyncio.gather(runner(node_a), runner(node_b))
        assert len(notifier.sent) == expected
        assert len(set(notifier.sent)) == expected
        async with node_a() as session:
            statuses = {
                str(k): int(v)
                for k, v in (
                    await session.execute(
                        select(ScheduledJob.status, func.count())
                        .where(ScheduledJob.kind == "invite")
                        .group_by(ScheduledJob.status)
                    )
                ).all()
            }
        assert statuses == {"sent": expected, "failed": 12}
    finally:
        await engine_a.dispose()
        await engine_b.dispose()
