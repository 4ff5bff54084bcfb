"""The optimised slot search (`loader.search_slots`: one candidate query, claims loaded a
slice at a time while the window grows, early exit) gives exactly what a straightforward
search gives: every requirement resolved on its own, all claims of the whole window (padded
by a day) loaded at once, one `find_slots` over the whole window. Random claims, holds,
buffers, grids, leave, extra hours, rules and holidays; SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduling import loader
from scheduling.availability import free_intervals
from scheduling.models import (
    AvailabilityException,
    AvailabilityRule,
    Booking,
    BookingClaim,
    BookingPolicyRow,
    BookingStatus,
    ExceptionKind,
)
from scheduling.schemas import SlotQuery
from scheduling.slots import Candidate, Group, find_slots
from server.cases.models import Holiday
from server.org.models import Resource, ResourceType, Role, Site, Staff, StaffRole
from tests.component.scheduling.conftest import NOW, TZ

Maker = async_sessionmaker[AsyncSession]
Row = tuple[datetime, datetime, list[int], list[int], int]


async def reference(session: AsyncSession, query: SlotQuery) -> list[Row]:
    start = query.start or NOW
    end = query.end or (start + timedelta(days=loader.DEFAULT_SEARCH_DAYS))
    labelled = [
        (f"person{i}", await loader.resolve_person(session, p)) for i, p in enumerate(query.people)
    ]
    labelled += [
        (f"resource{i}", await loader.resolve_resource(session, r))
        for i, r in enumerate(query.resources)
    ]
    if any(not cands for _, cands in labelled):
        return []
    keys = sorted({k for _, cands in labelled for k, _ in cands})
    pad = timedelta(days=1)
    availability = await loader.load_availability(session, keys=keys, start=start, end=end, tz=TZ)
    busy = await loader.load_busy(session, keys=keys, start=start - pad, end=end + pad, now=NOW)
    calendar = await loader.load_calendar(session)
    free = {
        k: tuple(
            free_intervals(
                availability[k],
                busy=busy.get(k, []),
                start=start,
                end=end,
                now=NOW,
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
        groups,
        duration=timedelta(minutes=query.duration_min),
        start=start,
        end=end,
        step=max(availability[k].policy.slot_step for k in keys),
        limit=query.limit,
        tz=TZ,
    )
    out: list[Row] = []
    for slot in slots:
        parsed = [loader.parse_key(k) for k in slot.assignment]
        staff = [i for kind, i in parsed if kind == "staff"]
        res = [i for kind, i in parsed if kind == "resource"]
        out.append((slot.start, slot.end, staff, res, slot.sites))
    return out


async def seed(session: AsyncSession, rng: random.Random) -> dict[str, Any]:
    mediators = list(
        await session.scalars(
            select(StaffRole.staff_id)
            .where(StaffRole.role == Role.mediator)
            .order_by(StaffRole.staff_id)
        )
    )
    depts = sorted(
        {
            d
            for d in await session.scalars(
                select(Staff.department_id).where(Staff.id.in_(mediators))
            )
            if d
        }
    )
    rooms = list(
        await session.scalars(
            select(Resource.id)
            .where(Resource.type == ResourceType.mediation_room)
            .order_by(Resource.id)
        )
    )
    terminals = (
        await session.execute(
            select(Resource.id, Resource.site_id)
            .where(Resource.type == ResourceType.video_terminal)
            .order_by(Resource.id)
            .limit(12)
        )
    ).all()
    sites = list(await session.scalars(select(Site.id).order_by(Site.id)))
    keys = [
        *(loader.staff_key(i) for i in mediators),
        *(loader.resource_key(i) for i in rooms),
        *(loader.resource_key(i) for i, _ in terminals),
    ]
    booking = Booking(
        status=BookingStatus.confirmed,
        start_at=NOW,
        end_at=NOW + timedelta(hours=1),
        created_at=NOW,
    )
    session.add(booking)
    await session.flush()
    for key in keys:
        t = NOW - timedelta(days=2) + timedelta(minutes=15 * rng.randrange(96))
        while t < NOW + timedelta(days=17):
            length = timedelta(minutes=rng.choice([15, 30, 60, 60, 90, 180, 600]))
            expires = rng.choice(
                [None, None, None, NOW - timedelta(minutes=1), NOW + timedelta(minutes=5)]
            )
            session.add(
                BookingClaim(
                    booking_id=booking.id,
                    resource_key=key,
                    start_at=t,
                    end_at=t + length,
                    expires_at=expires,
                )
            )
            t += length + timedelta(minutes=rng.choice([0, 5, 15, 30, 60, 240, 900, 2000]))
        if rng.random() < 0.3:
            s = NOW + timedelta(hours=rng.randrange(0, 24 * 10))
            kind = rng.choice(list(ExceptionKind))
            session.add(
                AvailabilityException(
                    owner_key=key,
                    kind=kind,
                    start_at=s,
                    end_at=s + timedelta(hours=rng.randrange(1, 50)),
                    reason="",
                )
            )
        if rng.random() < 0.5:
            session.add(
                BookingPolicyRow(
                    owner_key=key,
                    buffer_before_min=rng.choice([0, 15, 30, 60]),
                    buffer_after_min=rng.choice([0, 15, 45, 90]),
                    min_notice_min=rng.choice([0, 60, 120, 600]),
                    max_advance_days=rng.choice([3, 9, 60]),
                    slot_step_min=rng.choice([15, 30, 60]),
                )
            )
        if rng.random() < 0.15:
            session.add(
                AvailabilityRule(
                    owner_key=key,
                    rrule=rng.choice(
                        ["FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,WE"]
                    ),
                    start_local=time(rng.choice([7, 9, 13])),
                    end_local=time(rng.choice([17, 20])),
                    valid_from=date(2026, 1, 1),
                    valid_until=rng.choice([None, date(2026, 12, 15)]),
                    observe_holidays=rng.random() < 0.5,
                )
            )
    for day, workday in (
        (date(2026, 12, 9), False),
        (date(2026, 12, 12), True),
        (date(2026, 12, 17), False),
    ):
        if await session.get(Holiday, day) is None:
            session.add(Holiday(day=day, workday=workday, name="测试"))
    return {
        "mediators": mediators,
        "depts": depts,
        "rooms": rooms,
        "terminals": terminals,
        "sites": sites,
    }


def random_query(rng: random.Random, d: dict[str, Any]) -> SlotQuery:
    people: list[dict[str, Any]] = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        people.append(
            rng.choice(
                [
                    {"staff_id": rng.choice(d["mediators"])},
                    {"role": "mediator"},
                    {"role": "mediator", "department_id": rng.choice(d["depts"])},
                ]
            )
        )
    resources: list[dict[str, Any]] = []
    for _ in range(rng.choice([0, 1, 2, 3]) if people else rng.choice([1, 2, 3])):
        term_sites = sorted({s for _, s in d["terminals"]})
        resources.append(
            rng.choice(
                [
                    {"resource_id": rng.choice(d["rooms"])},
                    {"type": "mediation_room"},
                    {"type": "mediation_room", "site_ids": rng.sample(d["sites"], 5)},
                    {
                        "type": "video_terminal",
                        "site_ids": rng.sample(term_sites, rng.choice([1, 3])),
                    },
                ]
            )
        )
    # Starts on the claims' 15-minute grid, so claims begin right at a horizon (+ buffers).
    start = NOW + timedelta(minutes=rng.randrange(-24 * 60, 10 * 24 * 60, rng.choice([7, 15])))
    end = rng.choice([None, None, start + timedelta(hours=rng.randrange(1, 24 * 20))])
    return SlotQuery.model_validate(
        {
            "people": people,
            "resources": resources,
            "duration_min": rng.choice([15, 30, 60, 90, 240]),
            "start": rng.choice([None, start]) if end is None else start,
            "end": end,
            "limit": rng.choice([1, 1, 2, 3, 5, 12, 50]),
        }
    )


async def test_slot_search_matches_reference(db: Maker) -> None:
    rng = random.Random(20261207)
    async with db.begin() as session:
        data = await seed(session, rng)
    late = 0
    nonempty = 0
    for _ in range(200):
        query = random_query(rng, data)
        async with db() as session:
            expected = await reference(session, query)
        async with db() as session:
            got = [
                (s.start, s.end, s.staff_ids, s.resource_ids, s.sites)
                for s in await loader.search_slots(session, query=query, now=NOW, tz=TZ)
            ]
        assert got == expected, query.model_dump_json()
        nonempty += bool(got)
        late += bool(got) and got[-1][0] - (query.start or NOW) > timedelta(days=2)
    # The random queries reach the later horizons, and most find something.
    assert late >= 10
    assert nonempty >= 60


async def test_claims_at_a_horizon_and_within_buffers_of_it_count(db: Maker) -> None:
    # Tuesday 11:00 in Hangzhou: the first horizon is Wednesday 11:00.
    start = datetime.fromisoformat("2026-12-08T11:00:00+08:00")
    wed = datetime.fromisoformat("2026-12-09T00:00:00+08:00")
    async with db.begin() as session:
        padded_room, plain_room = list(
            await session.scalars(
                select(Resource.id)
                .where(Resource.type == ResourceType.mediation_room)
                .order_by(Resource.id)
                .limit(2)
            )
        )
        booking = Booking(status=BookingStatus.confirmed, start_at=NOW, end_at=NOW, created_at=NOW)
        session.add(booking)
        await session.flush()
        # Starts 30 minutes after the horizon, but its owner's 60-minute buffer_after blocks
        # Wednesday 10:30-11:00, inside the first window.
        session.add(
            BookingPolicyRow(owner_key=loader.resource_key(padded_room), buffer_after_min=60)
        )
        session.add(
            BookingClaim(
                booking_id=booking.id,
                resource_key=loader.resource_key(padded_room),
                start_at=wed + timedelta(hours=11, minutes=30),
                end_at=wed + timedelta(hours=12),
            )
        )
        # Starts exactly at the horizon: the second slice must take it.
        session.add(
            BookingClaim(
                booking_id=booking.id,
                resource_key=loader.resource_key(plain_room),
                start_at=wed + timedelta(hours=11),
                end_at=wed + timedelta(hours=11, minutes=30),
            )
        )
    for room, limit, blocked in (
        (padded_room, 15, wed + timedelta(hours=10, minutes=30)),
        (plain_room, 50, wed + timedelta(hours=11)),
    ):
        query = SlotQuery.model_validate(
            {
                "resources": [{"resource_id": room}],
                "duration_min": 30,
                "start": start,
                "limit": limit,
            }
        )
        async with db() as session:
            got = await loader.search_slots(session, query=query, now=NOW, tz=TZ)
        async with db() as session:
            expected = await reference(session, query)
        assert [(s.start, s.end, s.staff_ids, s.resource_ids, s.sites) for s in got] == expected
        assert len(got) == limit
        assert blocked not in [s.start for s in got]
