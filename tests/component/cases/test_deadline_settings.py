"""The deployment's deadline settings reach the services (#17 finding 9): holiday roll-over
(`ONEDOOR_DEADLINE_HOLIDAY_ROLLOVER`) and office hours (`ONEDOOR_DEADLINE_OFFICE_HOURS`),
read once into a `DeadlineClock`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import deadline_clock, intake
from server.cases.deadline_clock import DeadlineClock
from server.cases.deadlines import Rollover
from server.cases.models import CaseDeadline, Channel, DeadlinePolicy
from server.cases.schemas import IntakeRequest
from server.http import keys
from server.kernel.crypto import PiiCipher
from server.kernel.settings import Settings
from server.sessions import service as sessions
from server.sessions.schemas import EventRecord, SessionKind
from tests.conftest import make_settings

from .conftest import NOW, centre_id, who
from .test_lifecycle import PERSON, fire, register

TZ = ZoneInfo("Asia/Shanghai")
#: Wednesday 16 September 2026, 10:00 in Hangzhou: 15 days later is 1 October (国庆).
BEFORE_NATIONAL_DAY = datetime(2026, 9, 16, 2, 0, tzinfo=UTC)


def clock_of(**settings: str) -> DeadlineClock:
    return DeadlineClock.from_settings(Settings(**settings))


async def acceptance_due(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher, deadlines: DeadlineClock
) -> datetime:
    """Register a window petition through the intake pipeline; its 受理告知 due (15 days)."""
    async with db.begin() as s:
        result = await intake.intake(
            s,
            pii=pii,
            staff=await who(s, "window01"),
            request=IntakeRequest(
                channel=Channel.window,
                site_id=await centre_id(s),
                summary="小区门口路灯损坏多日",
                petitioner=PERSON,
            ),
            now=BEFORE_NATIONAL_DAY,
            deadlines=deadlines,
        )
        due = await s.scalar(
            select(CaseDeadline.due_at).where(
                CaseDeadline.case_id == result.case.id, CaseDeadline.kind == "acceptance"
            )
        )
    assert due is not None
    return due.astimezone(TZ)


async def test_a_calendar_deadline_ending_on_a_holiday_rolls_over_with_the_setting_on(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        policy = await s.get(DeadlinePolicy, "acceptance")
        assert policy is not None and (policy.day_mode, policy.limit_days) == ("calendar", 15)
    on = clock_of(deadline_holiday_rollover="next_working_day")
    # 1 October is 国庆 (1-7 October off): the period ends with the next working day, 8 October
    assert await acceptance_due(db, pii, on) == datetime(2026, 10, 9, tzinfo=TZ)


async def test_without_the_roll_over_it_ends_on_the_holiday(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    off = clock_of(deadline_holiday_rollover="none")
    assert await acceptance_due(db, pii, off) == datetime(2026, 10, 2, tzinfo=TZ)


async def test_office_hours_decide_what_a_working_day_pause_adds(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """A pause on Tuesday 13:00-17:00 adds its office time: none with mornings-only hours."""
    async with db.begin() as s:
        await s.execute(
            update(DeadlinePolicy)
            .where(DeadlinePolicy.kind == "handling")
            .values(day_mode="working")
        )
    added: dict[str, timedelta] = {}
    for hours in ("08:30-12:00", "08:30-17:30"):
        deadlines = clock_of(deadline_office_hours=hours)
        case_id = await register(
            db,
            pii,
            matter="property_management",
            summary="物业乱收费",
            attributes={"estate": "和睦新村"},
        )
        await fire(db, "handler02", case_id, "accept")
        async with db.begin() as s:
            await deadline_clock.pause_deadline(
                s,
                staff=await who(s, "leader02"),
                case_id=case_id,
                kind="handling",
                reason="听证",
                now=NOW + timedelta(days=1, hours=3),  # Tuesday 13:00
            )
        async with db.begin() as s:
            row = await deadline_clock.resume_deadline(
                s,
                staff=await who(s, "leader02"),
                case_id=case_id,
                kind="handling",
                now=NOW + timedelta(days=1, hours=7),  # Tuesday 17:00
                deadlines=deadlines,
            )
        added[hours] = row.due_at - row.base_due_at
    # the next working day's office time: 4 hours from 08:30, against midnight
    assert added == {"08:30-12:00": timedelta(0), "08:30-17:30": timedelta(hours=12, minutes=30)}


@pytest.mark.parametrize(
    ("rollover", "ends"), [("next_working_day", date(2026, 10, 9)), ("none", date(2026, 10, 2))]
)
async def test_a_mediation_started_by_its_room_counts_with_the_given_clock(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher, rollover: str, ends: date
) -> None:
    """The room's `session.started` (written by signaling's journal) starts the 调解期限 (30
    days): from 1 September, the last day is 1 October (国庆)."""
    case_id = await register(db, pii, matter="neighbour_dispute", summary="漏水纠纷")
    start = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
    async with db.begin() as s:
        host = await who(s, "mediator01")
        view = await sessions.create_session(
            s,
            kind=SessionKind.mediation,
            title="漏水纠纷调解",
            case_id=case_id,
            host_site_id=host.site_id,
            created_by_id=host.staff_id,
            recording_allowed=False,
            now=start,
        )
        await sessions.write_records(
            s,
            [EventRecord(view.id, "session.started", "system", {}, start)],
            deadlines=clock_of(deadline_holiday_rollover=rollover),
        )
    async with db() as s:
        due = await s.scalar(
            select(CaseDeadline.due_at).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "mediation"
            )
        )
    assert due is not None and due.astimezone(TZ) == datetime.combine(ends, time(), tzinfo=TZ)


def test_the_app_builds_its_clock_from_the_settings(tmp_path: Path) -> None:
    from server.app import create_app

    app = create_app(
        make_settings(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
            deadline_holiday_rollover="none",
            deadline_office_hours="09:00-12:00,14:00-18:00",
        )
    )
    rules = app[keys.deadline_clock].rules
    assert rules.rollover == Rollover.none
    assert [(a.isoformat(), b.isoformat()) for a, b in rules.office_hours] == [
        ("09:00:00", "12:00:00"),
        ("14:00:00", "18:00:00"),
    ]
    assert DeadlineClock.from_settings(Settings()).rules.rollover == Rollover.next_working_day


@pytest.mark.parametrize("hours", ["9-12", "12:00-09:00", "08:00-12:00,11:00-17:00", ""])
def test_bad_office_hours_are_refused_at_startup(hours: str) -> None:
    from server.kernel.settings import SettingsError

    with pytest.raises(SettingsError, match="ONEDOOR_DEADLINE_OFFICE_HOURS"):
        Settings.from_env({"ONEDOOR_DEADLINE_OFFICE_HOURS": hours})
