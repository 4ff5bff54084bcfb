"""Owners' calendars as the scheduling API manages them: working hours (RRULE), booking
policy, exceptions (leave, blocked periods, extra hours) and the holiday calendar. The REST
edge (server/api/scheduling.py) calls these; ORM rows stay here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling import loader
from scheduling.availability import WorkingHours, free_intervals
from scheduling.models import (
    AvailabilityException,
    AvailabilityRule,
    BookingPolicyRow,
    ExceptionKind,
)
from scheduling.schemas import (
    AvailabilityOut,
    ExceptionIn,
    HolidayIn,
    PolicyIn,
    WorkingHoursIn,
)
from server.cases.models import Holiday
from server.kernel.errors import NotFound
from server.org import service as org


async def check_owner_exists(session: AsyncSession, owner: str) -> None:
    """Raises NotFound unless `owner` (`staff:<id>`, `resource:<id>` or the default) exists."""
    if owner == loader.DEFAULT_OWNER:
        return
    kind, ident = loader.parse_key(owner)
    name = (
        await org.staff_name(session, staff_id=ident)
        if kind == "staff"
        else await org.resource_name(session, resource_id=ident)
    )
    if name is None:
        raise NotFound(f"no {owner}")


async def availability_out(
    session: AsyncSession, *, owner: str, start: datetime, end: datetime, now: datetime, tz: str
) -> AvailabilityOut:
    av = (await loader.load_availability(session, keys=[owner], start=start, end=end, tz=tz))[owner]
    busy = await loader.load_busy(
        session,
        keys=[owner],
        start=start - timedelta(days=1),
        end=end + timedelta(days=1),
        now=now,
    )
    calendar = await loader.load_calendar(session)
    free = free_intervals(
        av, busy=busy.get(owner, []), start=start, end=end, now=now, calendar=calendar
    )
    excs = await session.scalars(
        select(AvailabilityException).where(
            AvailabilityException.owner_key == owner,
            AvailabilityException.start_at < end,
            AvailabilityException.end_at > start,
        )
    )
    p = av.policy
    return AvailabilityOut(
        owner_key=owner,
        hours=[
            WorkingHoursIn(
                rrule=h.rrule,
                start_local=h.start_local,
                end_local=h.end_local,
                valid_from=h.valid_from,
                valid_until=h.valid_until,
                observe_holidays=h.observe_holidays,
            )
            for h in av.hours
        ],
        policy=PolicyIn.model_validate(
            {
                "buffer_before_min": int(p.buffer_before.total_seconds() // 60),
                "buffer_after_min": int(p.buffer_after.total_seconds() // 60),
                "min_notice_min": int(p.min_notice.total_seconds() // 60),
                "max_advance_days": p.max_advance.days,
                "slot_step_min": int(p.slot_step.total_seconds() // 60),
            }
        ),
        exceptions=[
            ExceptionIn(kind=e.kind.value, start=e.start_at, end=e.end_at, reason=e.reason)
            for e in excs
        ],
        free=free,
    )


async def set_availability(
    session: AsyncSession,
    *,
    owner: str,
    hours: Sequence[WorkingHours],
    policy: PolicyIn | None,
    tz: str,
) -> None:
    """Replace the owner's working hours; set its booking policy when one is given."""
    await session.execute(delete(AvailabilityRule).where(AvailabilityRule.owner_key == owner))
    for h in hours:
        session.add(
            AvailabilityRule(
                owner_key=owner,
                rrule=h.rrule,
                start_local=h.start_local,
                end_local=h.end_local,
                valid_from=h.valid_from,
                valid_until=h.valid_until,
                observe_holidays=h.observe_holidays,
                tz=tz,
            )
        )
    if policy is not None:
        row = await session.get(BookingPolicyRow, owner)
        if row is None:
            row = BookingPolicyRow(owner_key=owner)
            session.add(row)
        for name, value in policy.model_dump().items():
            setattr(row, name, value)
    await session.flush()


async def add_exception(session: AsyncSession, *, owner: str, exception: ExceptionIn) -> int:
    """Record leave, a blocked period or extra hours; returns its id."""
    row = AvailabilityException(
        owner_key=owner,
        kind=ExceptionKind(exception.kind),
        start_at=exception.start,
        end_at=exception.end,
        reason=exception.reason,
    )
    session.add(row)
    await session.flush()
    return row.id


async def set_holiday(session: AsyncSession, *, holiday: HolidayIn) -> None:
    """A day off, or a 调休 make-up workday, in the holiday calendar (created or changed)."""
    row = await session.get(Holiday, holiday.day)
    if row is None:
        session.add(Holiday(day=holiday.day, workday=holiday.workday, name=holiday.name))
    else:
        row.workday, row.name = holiday.workday, holiday.name
