"""Loads availability, busy claims and candidate groups from the database for the pure
availability and slot code."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSTZMULTIRANGE
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from scheduling.availability import (
    DEFAULT_TZ,
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
from scheduling.slots import Candidate, Group, Slot, find_slots
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


async def load_calendar(
    session: AsyncSession,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tz: str = DEFAULT_TZ,
) -> HolidayCalendar:
    """The holiday calendar; with `start` and `end`, only the days that working hours over
    [start, end) can depend on (one local day either side, see `working_intervals`)."""
    stmt = select(Holiday.day, Holiday.workday)
    if start is not None and end is not None:
        zone = ZoneInfo(tz)
        stmt = stmt.where(
            Holiday.day >= start.astimezone(zone).date() - timedelta(days=1),
            Holiday.day <= end.astimezone(zone).date() + timedelta(days=1),
        )
    rows = (await session.execute(stmt)).all()
    return HolidayCalendar(
        days_off=frozenset(day for day, workday in rows if not workday),
        makeup_workdays=frozenset(day for day, workday in rows if workday),
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


def key_in(
    column: QueryableAttribute[Any], values: Iterable[Any], dialect: str
) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(:array)`: one parameter, so the SQL
    text (and asyncpg's prepared statement) does not change with the number of values, and
    SQLAlchemy renders no per-value bind."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


@lru_cache(maxsize=1024)
def _hours(*fields: Any) -> WorkingHours:
    return WorkingHours(*fields)


@lru_cache(maxsize=1024)
def _policy(*minutes: int) -> BookingPolicy:
    before, after, notice, advance_days, step = minutes
    return BookingPolicy(
        buffer_before=timedelta(minutes=before),
        buffer_after=timedelta(minutes=after),
        min_notice=timedelta(minutes=notice),
        max_advance=timedelta(days=advance_days),
        slot_step=timedelta(minutes=step),
    )


async def load_availability(
    session: AsyncSession, *, keys: Sequence[str], start: datetime, end: datetime, tz: str
) -> dict[str, Availability]:
    """Each owner's rules (or the "default" owner's, or the built-in fallback), exceptions
    overlapping [start, end) and booking policy."""
    owners = [*keys, DEFAULT_OWNER]
    # Core rows, not ORM entities: every slot search comes through here.
    conn = await session.connection()
    dialect = conn.dialect.name
    rules: dict[str, list[WorkingHours]] = defaultdict(list)
    rule_rows = await conn.execute(
        select(
            AvailabilityRule.owner_key,
            AvailabilityRule.rrule,
            AvailabilityRule.start_local,
            AvailabilityRule.end_local,
            AvailabilityRule.valid_from,
            AvailabilityRule.valid_until,
            AvailabilityRule.observe_holidays,
        )
        .where(key_in(AvailabilityRule.owner_key, owners, dialect))
        .order_by(AvailabilityRule.id)
    )
    for owner, *fields in rule_rows.all():
        rules[owner].append(_hours(*fields))
    policy_rows = await conn.execute(
        select(
            BookingPolicyRow.owner_key,
            BookingPolicyRow.buffer_before_min,
            BookingPolicyRow.buffer_after_min,
            BookingPolicyRow.min_notice_min,
            BookingPolicyRow.max_advance_days,
            BookingPolicyRow.slot_step_min,
        ).where(key_in(BookingPolicyRow.owner_key, owners, dialect))
    )
    policies = {owner: _policy(*minutes) for owner, *minutes in policy_rows.all()}
    unavailable: dict[str, list[Interval]] = defaultdict(list)
    extra: dict[str, list[Interval]] = defaultdict(list)
    exception_rows = await conn.execute(
        select(
            AvailabilityException.owner_key,
            AvailabilityException.kind,
            AvailabilityException.start_at,
            AvailabilityException.end_at,
        ).where(
            key_in(AvailabilityException.owner_key, owners, dialect),
            AvailabilityException.start_at < end,
            AvailabilityException.end_at > start,
        )
    )
    for owner, kind, s, e in exception_rows.all():
        target = extra if kind == ExceptionKind.extra else unavailable
        target[owner].append((s, e))
    default_hours = tuple(rules.get(DEFAULT_OWNER, ())) or FALLBACK_HOURS
    default_policy = policies.get(DEFAULT_OWNER) or BookingPolicy()
    out: dict[str, Availability] = {}
    for key in keys:
        out[key] = Availability(
            hours=tuple(rules.get(key, ())) or default_hours,
            unavailable=tuple(normalize([*unavailable[key], *unavailable[DEFAULT_OWNER]])),
            extra=tuple(normalize(extra[key])),
            policy=policies.get(key, default_policy),
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
    conn = await session.connection()
    stmt = select(BookingClaim.resource_key, BookingClaim.start_at, BookingClaim.end_at).where(
        key_in(BookingClaim.resource_key, keys, conn.dialect.name),
        BookingClaim.start_at < end,
        BookingClaim.end_at > start,
        or_(BookingClaim.expires_at.is_(None), BookingClaim.expires_at > now),
    )
    excluded = list(exclude_booking_ids)
    if excluded:
        stmt = stmt.where(BookingClaim.booking_id.not_in(excluded))
    busy: dict[str, list[Interval]] = defaultdict(list)
    for key, s, e in (await conn.execute(stmt)).all():
        busy[key].append((s, e))
    return {k: normalize(v) for k, v in busy.items()}


_Sel = TypeVar("_Sel", bound=Select[Any])


async def resolve_person(session: AsyncSession, req: PersonReq) -> list[tuple[str, int]]:
    """(key, site id) of every active staff member the requirement accepts."""
    stmt = _person_where(select(Staff.id, Staff.site_id), req)
    return [(staff_key(i), s) for i, s in (await session.execute(stmt.order_by(Staff.id))).all()]


def _person_where(stmt: _Sel, req: PersonReq) -> _Sel:
    """The active staff members a person requirement accepts (one filter for both queries)."""
    stmt = stmt.where(Staff.active.is_(True))
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
    return stmt


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


async def resolve_groups(
    session: AsyncSession, query: SlotQuery
) -> list[tuple[str, list[tuple[str, int]]]]:
    """Every requirement's candidates, (key, site id) in id order, in one round trip: the
    same rows as `resolve_person`/`resolve_resource` per requirement, as one UNION ALL."""
    conn = await session.connection()
    dialect = conn.dialect.name
    parts: list[Select[tuple[int, int, int]]] = []
    labels: list[str] = []
    for i, p in enumerate(query.people):
        labels.append(f"person{i}")
        parts.append(_person_stmt(p, len(parts)))
    for i, r in enumerate(query.resources):
        labels.append(f"resource{i}")
        parts.append(_resource_stmt(r, len(parts), dialect))
    found: list[list[tuple[str, int]]] = [[] for _ in parts]
    if parts:
        union = union_all(*parts)
        stmt = union.order_by(union.selected_columns.grp, union.selected_columns.ident)
        for grp, ident, site in (await conn.execute(stmt)).all():
            key = staff_key(ident) if labels[grp].startswith("person") else resource_key(ident)
            found[grp].append((key, site))
    return list(zip(labels, found, strict=True))


def _person_stmt(req: PersonReq, grp: int) -> Select[tuple[int, int, int]]:
    stmt = select(
        literal_column(str(grp), Integer).label("grp"),
        Staff.id.label("ident"),
        Staff.site_id.label("site"),
    )
    return _person_where(stmt, req)


def _resource_stmt(req: ResourceReq, grp: int, dialect: str) -> Select[tuple[int, int, int]]:
    stmt = select(
        literal_column(str(grp), Integer).label("grp"),
        Resource.id.label("ident"),
        Resource.site_id.label("site"),
    ).where(Resource.active.is_(True))
    if req.resource_id is not None:
        stmt = stmt.where(Resource.id == req.resource_id)
    if req.type is not None:
        stmt = stmt.where(Resource.type == req.type)
    if req.site_ids:
        stmt = stmt.where(key_in(Resource.site_id, req.site_ids, dialect))
    return stmt


def horizons(start: datetime, end: datetime) -> list[datetime]:
    """Where the growing search stops to check for enough slots: after 3, 6, 12 … days,
    and at `end`. Most searches fill up within the first days; a pass costs one claims
    query plus recomputing free intervals, so the first horizon is not made shorter."""
    out = []
    days = FIRST_HORIZON_DAYS
    while (h := start + timedelta(days=days)) < end:
        out.append(h)
        days *= 2
    return [*out, end]


async def search_slots(
    session: AsyncSession, *, query: SlotQuery, now: datetime, tz: str
) -> list[SlotOut]:
    """The slot finder over the database: the first `query.limit` slots in [start, end).

    Candidates, availability and holidays are loaded once for the whole window; claims are
    loaded a slice at a time while the window grows (3, 6, 12 … days) and the search
    stops at the first horizon that already holds `limit` slots. The first `limit` slots
    of [start, h) are the first `limit` slots of [start, end) (slots are ranked by start,
    and a slot of [start, h) fits the same way in the longer window), so the answer is the
    one a single search over the whole window gives (tests/component/scheduling
    test_slot_search_matches_reference)."""
    start = query.start or now
    end = query.end or (start + timedelta(days=DEFAULT_SEARCH_DAYS))
    if start >= end:
        return []
    labelled = await resolve_groups(session, query)
    if any(not cands for _, cands in labelled):
        return []
    keys = sorted({k for _, cands in labelled for k, _ in cands})
    availability = await load_availability(session, keys=keys, start=start, end=end, tz=tz)
    calendar = await load_calendar(session, start=start, end=end, tz=tz)
    # A claim [s, e) blocks [s - buffer_after, e + buffer_before) of its owner (see
    # free_intervals), so the window [start, h) needs the claims with s < h + buffer_after
    # and e > start - buffer_before.
    pad_before = max(availability[k].policy.buffer_before for k in keys)
    pad_after = max(availability[k].policy.buffer_after for k in keys)
    step = max(availability[k].policy.slot_step for k in keys)
    duration = timedelta(minutes=query.duration_min)
    busy: dict[str, list[Interval]] = defaultdict(list)
    loaded_to: datetime | None = None
    slots: list[Slot] = []
    for h in horizons(start, end):
        lo = start - pad_before if loaded_to is None else loaded_to
        await _load_claims(
            session, busy, keys=keys, lo=lo, hi=h + pad_after, now=now, first=loaded_to is None
        )
        loaded_to = h + pad_after
        free = {
            k: tuple(
                free_intervals(
                    availability[k],
                    busy=busy.get(k, ()),
                    start=start,
                    end=h,
                    now=now,
                    calendar=calendar,
                )
            )
            for k in keys
        }
        groups = [
            Group(label, tuple(Candidate(k, site, free[k]) for k, site in cands))
            for label, cands in labelled
        ]
        slots = find_slots(
            groups, duration=duration, start=start, end=h, step=step, limit=query.limit, tz=tz
        )
        if len(slots) >= query.limit:
            break
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


async def _load_claims(
    session: AsyncSession,
    busy: dict[str, list[Interval]],
    *,
    keys: Sequence[str],
    lo: datetime,
    hi: datetime,
    now: datetime,
    first: bool,
) -> None:
    """Append the live claims of `keys` that a search window growing to `hi` newly needs.

    The first slice takes the claims overlapping [lo, hi); on PostgreSQL through the gist
    index of the no-overlap constraint (`tstzrange && tstzrange`), which, unlike the
    (resource_key, start_at) btree, does not walk every past claim of each key. A later
    slice takes the claims starting in [lo, hi), where lo is the previous slice's end: a
    claim starting before it and reaching past it was in an earlier slice.

    On PostgreSQL the claims come back merged, one `range_agg` multirange per key: fewer
    values to decode, and free_intervals merges touching claims anyway."""
    conn = await session.connection()
    pg = conn.dialect.name == "postgresql"
    claim = func.tstzrange(BookingClaim.start_at, BookingClaim.end_at, "[)")
    where = [
        key_in(BookingClaim.resource_key, keys, conn.dialect.name),
        or_(BookingClaim.expires_at.is_(None), BookingClaim.expires_at > now),
    ]
    if not first:
        where += [BookingClaim.start_at >= lo, BookingClaim.start_at < hi]
    elif pg:
        where.append(claim.op("&&")(func.tstzrange(lo, hi, "[)")))
    else:
        where += [BookingClaim.start_at < hi, BookingClaim.end_at > lo]
    if pg:
        merged = select(
            BookingClaim.resource_key, type_coerce(func.range_agg(claim), TSTZMULTIRANGE)
        ).where(*where)
        for key, ranges in (await conn.execute(merged.group_by(BookingClaim.resource_key))).all():
            busy[key].extend((r.lower, r.upper) for r in ranges)
        return
    stmt = select(BookingClaim.resource_key, BookingClaim.start_at, BookingClaim.end_at)
    for key, s, e in (await conn.execute(stmt.where(*where))).all():
        busy[key].append((s, e))
