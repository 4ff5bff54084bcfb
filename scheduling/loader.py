"""Loads availability, busy claims and candidate groups from the database for the pure
availability and slot code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.availability import (
    FALLBACK_HOURS,
    Availability,
    BookingPolicy,
    HolidayCalendar,
    WorkingHours,
    free_intervals,
)
from scheduling.intervals import Interval, IntervalSet, normalize
from scheduling.models import (
    AvailabilityException,
    AvailabilityRule,
    BookingClaim,
    BookingPolicyRow,
    ExceptionKind,
)
from scheduling.schemas import PersonReq, ResourceReq, SlotOut, SlotQuery
from scheduling.slots import Candidate, Group, find_slots
from server.cases.models import Holiday
from server.org.models import Resource, Staff, StaffRole

DEFAULT_OWNER = "default"
DEFAULT_SEARCH_DAYS = 14
FIRST_HORIZON_DAYS = 3


def staff_key(staff_id: int) -> str:
    return f"staff:{staff_id}"


def resource_key(resource_id: int) -> str:
    return f"resource:{resource_id}"


def parse_key(key: str) -> tuple[str, int]:
    kind, _, ident = key.partition(":")
    return kind, int(ident)


async def load_calendar(session: AsyncSession) -> HolidayCalendar:
    rows = (await session.scalars(select(Holiday))).all()
    return HolidayCalendar(
        days_off=frozenset(r.day for r in rows if not r.workday),
        makeup_workdays=frozenset(r.day for r in rows if r.workday),
    )


def policy_from_row(row: BookingPolicyRow | None) -> BookingPolicy:
    if row is None:
        return BookingPolicy()
    return BookingPolicy(
        buffer_before=timedelta(minutes=row.buffer_before_min),
        buffer_after=timedelta(minutes=row.buffer_after_min),
        min_notice=timedelta(minutes=row.min_notice_min),
        max_advance=timedelta(days=row.max_advance_days),
        slot_step=timedelta(minutes=row.slot_step_min),
    )


def hours_from_row(row: AvailabilityRule) -> WorkingHours:
    return WorkingHours(
        rrule=row.rrule,
        start_local=row.start_local,
        end_local=row.end_local,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        observe_holidays=row.observe_holidays,
    )


async def load_availability(
    session: AsyncSession, *, keys: Sequence[str], start: datetime, end: datetime, tz: str
) -> dict[str, Availability]:
    """Each owner's rules (or the "default" owner's, or the built-in fallback), exceptions
    overlapping [start, end) and booking policy."""
    owners = [*keys, DEFAULT_OWNER]
    rules: dict[str, list[WorkingHours]] = defaultdict(list)
    for row in await session.scalars(
        select(AvailabilityRule).where(AvailabilityRule.owner_key.in_(owners))
    ):
        rules[row.owner_key].append(hours_from_row(row))
    policies = {
        row.owner_key: row
        for row in await session.scalars(
            select(BookingPolicyRow).where(BookingPolicyRow.owner_key.in_(owners))
        )
    }
    unavailable: dict[str, list[Interval]] = defaultdict(list)
    extra: dict[str, list[Interval]] = defaultdict(list)
    for exc in await session.scalars(
        select(AvailabilityException).where(
            AvailabilityException.owner_key.in_(owners),
            AvailabilityException.start_at < end,
            AvailabilityException.end_at > start,
        )
    ):
        target = extra if exc.kind == ExceptionKind.extra else unavailable
        target[exc.owner_key].append((exc.start_at, exc.end_at))
    default_hours = tuple(rules.get(DEFAULT_OWNER, ())) or FALLBACK_HOURS
    default_policy = policies.get(DEFAULT_OWNER)
    out: dict[str, Availability] = {}
    for key in keys:
        out[key] = Availability(
            hours=tuple(rules.get(key, ())) or default_hours,
            unavailable=tuple(normalize([*unavailable[key], *unavailable[DEFAULT_OWNER]])),
            extra=tuple(normalize(extra[key])),
            policy=policy_from_row(policies.get(key, default_policy)),
            tz=tz,
        )
    return out


async def load_busy(
    session: AsyncSession,
    *,
    keys: Sequence[str],
    start: datetime,
    end: datetime,
    now: datetime,
    exclude_booking_ids: Iterable[int] = (),
) -> dict[str, IntervalSet]:
    """Live claims (confirmed, or held and not yet expired) overlapping [start, end)."""
    if not keys:
        return {}
    stmt = select(BookingClaim.resource_key, BookingClaim.start_at, BookingClaim.end_at).where(
        BookingClaim.resource_key.in_(list(keys)),
        BookingClaim.start_at < end,
        BookingClaim.end_at > start,
        or_(BookingClaim.expires_at.is_(None), BookingClaim.expires_at > now),
    )
    excluded = list(exclude_booking_ids)
    if excluded:
        stmt = stmt.where(BookingClaim.booking_id.not_in(excluded))
    busy: dict[str, list[Interval]] = defaultdict(list)
    # Core rows, not ORM entities: this is the hot path of every slot search.
    conn = await session.connection()
    for key, s, e in (await conn.execute(stmt)).all():
        busy[key].append((s, e))
    return {k: normalize(v) for k, v in busy.items()}


async def resolve_person(session: AsyncSession, req: PersonReq) -> list[tuple[str, int]]:
    """(key, site id) of every active staff member the requirement accepts."""
    stmt = select(Staff.id, Staff.site_id).where(Staff.active.is_(True))
    if req.staff_id is not None:
        stmt = stmt.where(Staff.id == req.staff_id)
    if req.role is not None:
        stmt = stmt.where(
            Staff.id.in_(select(StaffRole.staff_id).where(StaffRole.role == req.role))
        )
    if req.department_id is not None:
        stmt = stmt.where(Staff.department_id == req.department_id)
    if req.site_id is not None:
        stmt = stmt.where(Staff.site_id == req.site_id)
    return [(staff_key(i), s) for i, s in (await session.execute(stmt.order_by(Staff.id))).all()]


async def resolve_resource(session: AsyncSession, req: ResourceReq) -> list[tuple[str, int]]:
    stmt = select(Resource.id, Resource.site_id).where(Resource.active.is_(True))
    if req.resource_id is not None:
        stmt = stmt.where(Resource.id == req.resource_id)
    if req.type is not None:
        stmt = stmt.where(Resource.type == req.type)
    if req.site_ids:
        stmt = stmt.where(Resource.site_id.in_(req.site_ids))
    rows = (await session.execute(stmt.order_by(Resource.id))).all()
    return [(resource_key(i), s) for i, s in rows]


async def search_slots(
    session: AsyncSession, *, query: SlotQuery, now: datetime, tz: str
) -> list[SlotOut]:
    """The slot finder over the database: resolve groups, load their availability and live
    claims over the window, and run the pure search."""
    start = query.start or now
    end = query.end or (start + timedelta(days=DEFAULT_SEARCH_DAYS))
    # Most searches fill up within the first days: look there first, then the whole window.
    first = start + timedelta(days=FIRST_HORIZON_DAYS)
    if first < end:
        found = await _search(session, query=query, now=now, tz=tz, start=start, end=first)
        if len(found) >= query.limit:
            return found
    return await _search(session, query=query, now=now, tz=tz, start=start, end=end)


async def _search(
    session: AsyncSession,
    *,
    query: SlotQuery,
    now: datetime,
    tz: str,
    start: datetime,
    end: datetime,
) -> list[SlotOut]:
    labelled: list[tuple[str, list[tuple[str, int]]]] = []
    for i, p in enumerate(query.people):
        labelled.append((f"person{i}", await resolve_person(session, p)))
    for i, r in enumerate(query.resources):
        labelled.append((f"resource{i}", await resolve_resource(session, r)))
    if any(not cands for _, cands in labelled):
        return []
    keys = sorted({k for _, cands in labelled for k, _ in cands})
    pad = timedelta(days=1)
    availability = await load_availability(session, keys=keys, start=start, end=end, tz=tz)
    busy = await load_busy(session, keys=keys, start=start - pad, end=end + pad, now=now)
    calendar = await load_calendar(session)
    free: dict[str, tuple[Interval, ...]] = {}
    for key in keys:
        free[key] = tuple(
            free_intervals(
                availability[key],
                busy=busy.get(key, []),
                start=start,
                end=end,
                now=now,
                calendar=calendar,
            )
        )
    groups = [
        Group(label, tuple(Candidate(k, site, free[k]) for k, site in cands))
        for label, cands in labelled
    ]
    step = max((availability[k].policy.slot_step for k in keys), default=timedelta(minutes=30))
    slots = find_slots(
        groups,
        duration=timedelta(minutes=query.duration_min),
        start=start,
        end=end,
        step=step,
        limit=query.limit,
        tz=tz,
    )
    out = []
    for slot in slots:
        parsed = [parse_key(k) for k in slot.assignment]
        out.append(
            SlotOut(
                start=slot.start,
                end=slot.end,
                staff_ids=[i for kind, i in parsed if kind == "staff"],
                resource_ids=[i for kind, i in parsed if kind == "resource"],
                sites=slot.sites,
            )
        )
    return out
