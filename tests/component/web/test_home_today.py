"""What the home page lists of video sessions: "today" is the district's day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.clock import day_bounds_utc
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Site, SiteLevel, Staff
from server.sessions.models import (
    CallSession,
    ParticipantRole,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from server.sessions.service import live_overview, sessions_created_by, sessions_of_day

#: 2027-01-01 23:30 in the district (Asia/Shanghai) is 15:30 UTC.
NOW = datetime(2027, 1, 1, 15, 30, tzinfo=UTC)


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


def call(
    room_id: str, *, by: int | None, at: datetime, state: SessionState, site: int | None = None
) -> CallSession:
    return CallSession(
        room_id=room_id,
        kind=SessionKind.mediation,
        mode=SessionMode.video,
        state=state,
        title=f"会话{room_id}",
        created_by_id=by,
        host_site_id=site,
        created_at=at,
    )


async def test_sessions_of_the_district_day(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        me = await s.scalar(select(Staff.id).order_by(Staff.id).limit(1))
        other = await s.scalar(select(Staff.id).order_by(Staff.id.desc()).limit(1))
        assert me is not None and other is not None and me != other
        s.add_all(
            [
                # 23:59 on 31 December in the district: yesterday
                call("r-yesterday", by=me, at=datetime(2026, 12, 31, 15, 59, tzinfo=UTC),
                     state=SessionState.ended),
                # 01:00 on 1 January in the district, before UTC midnight: today
                call("r-early", by=me, at=datetime(2026, 12, 31, 17, 0, tzinfo=UTC),
                     state=SessionState.ended),
                call("r-late", by=me, at=datetime(2027, 1, 1, 15, 0, tzinfo=UTC),
                     state=SessionState.live),
                call("r-someone-else", by=other, at=datetime(2027, 1, 1, 15, 0, tzinfo=UTC),
                     state=SessionState.live),
            ]
        )  # fmt: skip
    start, end = day_bounds_utc(NOW, tz="Asia/Shanghai")
    async with db() as s:
        mine = await sessions_created_by(s, staff_id=me, since=start, until=end)
    assert [line.room_id for line in mine] == ["r-late", "r-early"]
    assert mine[0].title == "会话r-late" and mine[0].state == SessionState.live


async def test_the_days_sessions_include_the_booked_ones_i_take_part_in(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """A mediator's home lists the mediation someone else booked for them today (district
    day), not tomorrow's, not a cancelled one, not one they are not in."""
    async with db.begin() as s:
        me = await s.scalar(select(Staff.id).order_by(Staff.id).limit(1))
        other = await s.scalar(select(Staff.id).order_by(Staff.id.desc()).limit(1))
        assert me is not None and other is not None
        booked_at = datetime(2026, 12, 20, 2, 0, tzinfo=UTC)

        async def booked(room_id: str, start: datetime, state: SessionState, staff: int) -> None:
            row = call(room_id, by=other, at=booked_at, state=state)
            row.planned_start = start
            s.add(row)
            await s.flush()
            s.add(
                SessionParticipant(
                    session_id=row.id,
                    identity=f"staff:{staff}",
                    role=ParticipantRole.mediator,
                    staff_id=staff,
                    display_name="调解员",
                )
            )

        # 09:00 on 1 January in the district (01:00 UTC): today
        await booked("r-today", datetime(2027, 1, 1, 1, 0, tzinfo=UTC), SessionState.scheduled, me)
        # 08:00 on 2 January in the district (00:00 UTC): tomorrow
        await booked(
            "r-tomorrow", datetime(2027, 1, 2, 0, 0, tzinfo=UTC), SessionState.scheduled, me
        )
        await booked(
            "r-cancelled", datetime(2027, 1, 1, 2, 0, tzinfo=UTC), SessionState.cancelled, me
        )
        await booked(
            "r-not-mine", datetime(2027, 1, 1, 3, 0, tzinfo=UTC), SessionState.scheduled, other
        )
        s.add(
            call(
                "r-opened",
                by=me,
                at=datetime(2027, 1, 1, 5, 0, tzinfo=UTC),
                state=SessionState.live,
            )
        )
    start, end = day_bounds_utc(NOW, tz="Asia/Shanghai")
    async with db() as s:
        day = await sessions_of_day(s, staff_id=me, start=start, end=end)
    assert [line.room_id for line in day] == ["r-today", "r-opened"]


async def test_live_sessions_with_their_site(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        centre = await s.scalar(select(Site).where(Site.level == SiteLevel.district))
        assert centre is not None
        s.add_all(
            [
                call("r-lobby", by=None, at=NOW, state=SessionState.lobby, site=centre.id),
                call("r-live", by=None, at=NOW, state=SessionState.live),
                call("r-ended", by=None, at=NOW, state=SessionState.ended, site=centre.id),
                call("r-planned", by=None, at=NOW, state=SessionState.scheduled),
            ]
        )
    async with db() as s:
        lines = await live_overview(s)
    assert [(line.room_id, line.site_name) for line in lines] == [
        ("r-live", None),
        ("r-lobby", centre.name),
    ]
