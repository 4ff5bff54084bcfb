"""Booking through the service API on SQLite and PostgreSQL: atomic claims, holds, bad
input, reschedule chain, cancel, follow-on and no-show."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduling import service
from scheduling.errors import (
    HoldExpired,
    SlotUnavailable,
    UnknownParticipant,
    WrongResourceKind,
)
from scheduling.models import AvailabilityException, Booking, BookingClaim, ExceptionKind
from scheduling.schemas import BookingOut, BookingRequest
from server.kernel.crypto import PiiCipher
from server.kernel.errors import BookingConflict, InvalidInput
from server.org.models import ResourceType
from server.sessions.models import CallSession, SessionParticipant, SessionState
from tests.component.scheduling.conftest import NOW, TZ, demo_ids

Maker = async_sessionmaker[AsyncSession]
# Tuesday 2026-12-08 09:00–10:00 in Hangzhou.
START = datetime.fromisoformat("2026-12-08T09:00:00+08:00")
END = START + timedelta(hours=1)


def request(
    staff: list[int],
    resources: list[int],
    start: datetime = START,
    end: datetime = END,
    **kw: object,
) -> BookingRequest:
    return BookingRequest.model_validate(
        {
            "start": start,
            "end": end,
            "staff": [{"staff_id": s, "as_role": "mediator"} for s in staff],
            "resources": [{"resource_id": r} for r in resources],
            "guests": [{"display_name": "王某", "phone": "13800000000"}],
            "title": "邻里纠纷调解",
            **kw,
        }
    )


async def _book(db: Maker, pii: PiiCipher, req: BookingRequest, now: datetime = NOW) -> BookingOut:
    async with db.begin() as session:
        return await service.book(
            session, request=req, actor="staff:1", actor_staff_id=None, now=now, tz=TZ, cipher=pii
        )


async def test_booking_creates_session_participants_and_jobs(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    out = await _book(db, pii, request([ids.mediators[0]], [ids.centre_room]))
    assert out.status == "confirmed" and out.ical_sequence == 0 and out.ical_uid
    async with db() as session:
        record = await service.session_record(session, session_id=out.session_id or 0)
    assert record.state == "scheduled"
    assert record.planned_start == START and record.planned_end == END
    assert sorted(p.role for p in record.participants) == ["mediator", "party"]
    kinds = sorted(j.kind for j in record.jobs)
    # 2 invites, 2 x 2 reminders (1 day, 15 min), 1 room opening
    assert kinds == ["invite"] * 2 + ["reminder"] * 4 + ["room_open"]


async def test_overlap_is_refused_and_nothing_is_written(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    await _book(db, pii, request([ids.mediators[0]], [ids.centre_room]))
    with pytest.raises(BookingConflict) as err:
        await _book(
            db,
            pii,
            request(
                [ids.mediators[1]],
                [ids.centre_room],
                START + timedelta(minutes=30),
                END + timedelta(minutes=30),
            ),
        )
    assert err.value.details["owners"] == [f"resource:{ids.centre_room}"]
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(CallSession)) == 1
        assert await session.scalar(select(func.count()).select_from(Booking)) == 1
        assert await session.scalar(select(func.count()).select_from(BookingClaim)) == 2


async def test_bad_input_gets_typed_errors(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    with pytest.raises(ValueError, match="end must be after start"):
        request([ids.mediators[0]], [], START, START - timedelta(hours=1))
    with pytest.raises(InvalidInput, match="past"):
        await _book(db, pii, request([ids.mediators[0]], []), now=START + timedelta(days=1))
    with pytest.raises(UnknownParticipant) as unknown:
        await _book(db, pii, request([ids.mediators[0], 999_999], [888_888]))
    assert unknown.value.details == {"staff_ids": [999_999], "resource_ids": [888_888]}
    wrong = BookingRequest.model_validate(
        {
            "start": START,
            "end": END,
            "staff": [{"staff_id": ids.mediators[0]}],
            "resources": [
                {
                    "resource_id": ids.community_terminals[0],
                    "expected_type": ResourceType.mediation_room,
                }
            ],
        }
    )
    with pytest.raises(WrongResourceKind):
        await _book(db, pii, wrong)
    # Saturday: outside the default working hours
    saturday = START + timedelta(days=4)
    with pytest.raises(SlotUnavailable):
        await _book(
            db, pii, request([ids.mediators[0]], [], saturday, saturday + timedelta(hours=1))
        )
    # 12:00–13:00 lunch break
    with pytest.raises(SlotUnavailable):
        await _book(
            db,
            pii,
            request([ids.mediators[0]], [], START + timedelta(hours=3), START + timedelta(hours=4)),
        )
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Booking)) == 0
        assert await session.scalar(select(func.count()).select_from(CallSession)) == 0


async def test_leave_blocks_booking(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    async with db.begin() as session:
        session.add(
            AvailabilityException(
                owner_key=f"staff:{ids.mediators[0]}",
                kind=ExceptionKind.leave,
                start_at=START - timedelta(hours=1),
                end_at=START + timedelta(days=1),
                reason="年假",
            )
        )
    with pytest.raises(SlotUnavailable):
        await _book(db, pii, request([ids.mediators[0]], []))


async def test_hold_then_confirm_and_expired_hold(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    req = request([ids.mediators[0]], [ids.centre_room])
    async with db.begin() as session:
        held = await service.hold(
            session, request=req, actor_staff_id=None, now=NOW, tz=TZ, cipher=pii
        )
    assert held.status == "held" and held.session_id is None
    # While the hold lasts nobody else gets the room.
    with pytest.raises(BookingConflict):
        await _book(
            db, pii, request([ids.mediators[1]], [ids.centre_room]), now=NOW + timedelta(minutes=2)
        )
    async with db.begin() as session:
        ok = await service.confirm(
            session, booking_id=held.id, actor="staff:1", now=NOW + timedelta(minutes=3)
        )
    assert ok.status == "confirmed" and ok.session_id is not None

    # A second hold expires and someone else takes the time: confirming fails clearly.
    later = request(
        [ids.mediators[0]], [ids.centre_room], START + timedelta(hours=1), END + timedelta(hours=1)
    )
    async with db.begin() as session:
        held2 = await service.hold(
            session, request=later, actor_staff_id=None, now=NOW, tz=TZ, cipher=pii
        )
    taken = await _book(
        db,
        pii,
        request(
            [ids.mediators[1]],
            [ids.centre_room],
            START + timedelta(hours=1),
            END + timedelta(hours=1),
        ),
        now=NOW + timedelta(minutes=6),
    )
    assert taken.status == "confirmed"
    with pytest.raises(HoldExpired):
        async with db.begin() as session:
            await service.confirm(
                session, booking_id=held2.id, actor="staff:1", now=NOW + timedelta(minutes=7)
            )
    async with db() as session:
        row = await session.get(Booking, held2.id)
        assert row is not None and row.status == "expired"


async def test_reschedule_chain_and_cancel(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    first = await _book(db, pii, request([ids.mediators[0]], [ids.centre_room]))
    current = first
    for hours in (1, 2):  # two reschedules: 10:00, then 11:00 (the 09:00 slot frees up)
        async with db.begin() as session:
            current = await service.reschedule(
                session,
                booking_id=current.id,
                start=START + timedelta(hours=hours),
                end=END + timedelta(hours=hours),
                reason=f"当事人申请改期{hours}",
                actor="staff:1",
                actor_staff_id=None,
                now=NOW,
                tz=TZ,
            )
    assert current.ical_sequence == 2 and current.ical_uid == first.ical_uid
    async with db() as session:
        chain = []
        row = await session.get(Booking, current.id)
        while row is not None:
            chain.append((row.status, row.start_at))
            row = await session.get(Booking, row.previous_id) if row.previous_id else None
    assert [s for s, _ in chain] == ["confirmed", "rescheduled", "rescheduled"]
    assert [t for _, t in chain] == [START + timedelta(hours=h) for h in (2, 1, 0)]
    # The old time is free again for someone else.
    other = await _book(db, pii, request([ids.mediators[1]], [ids.centre_room]))
    assert other.status == "confirmed"
    # Rescheduling an outdated version is refused.
    with pytest.raises(Exception, match="rescheduled"):
        async with db.begin() as session:
            await service.reschedule(
                session,
                booking_id=first.id,
                start=START,
                end=END,
                reason="x",
                actor="staff:1",
                actor_staff_id=None,
                now=NOW,
                tz=TZ,
            )
    async with db.begin() as session:
        cancelled = await service.cancel(
            session, booking_id=current.id, reason="当事人撤回申请", actor="staff:1", now=NOW
        )
    assert cancelled.status == "cancelled" and cancelled.ical_sequence == 3
    async with db() as session:
        record = await service.session_record(session, session_id=current.session_id or 0)
    assert record.state == "cancelled"
    pending = [j for j in record.jobs if j.status == "pending"]
    assert sorted(j.kind for j in pending) == ["cancel", "cancel"]


async def test_follow_on_and_no_show(db: Maker, pii: PiiCipher) -> None:
    async with db() as session:
        ids = await demo_ids(session)
    first = await _book(db, pii, request([ids.mediators[0]], [ids.centre_room]))
    async with db.begin() as session:
        nxt = await service.follow_on(
            session,
            booking_id=first.id,
            start=START + timedelta(days=7),
            end=END + timedelta(days=7),
            reason="休会，择日续调",
            actor="staff:1",
            actor_staff_id=None,
            now=NOW,
            tz=TZ,
            cipher=pii,
        )
    assert nxt.follows_id == first.id and nxt.session_id != first.session_id
    assert nxt.ical_uid != first.ical_uid
    async with db() as session:
        party = await session.scalar(
            select(SessionParticipant).where(
                SessionParticipant.session_id == nxt.session_id,
                SessionParticipant.role == "party",
            )
        )
        assert party is not None and party.display_name == "王某"
    with pytest.raises(Exception, match="after the start"):
        async with db.begin() as session:
            await service.mark_no_show(
                session,
                session_id=nxt.session_id or 0,
                participant_id=party.id,
                no_show=True,
                actor="staff:1",
                now=NOW,
            )
    async with db() as session:
        first_party = await session.scalar(
            select(SessionParticipant.id).where(
                SessionParticipant.session_id == first.session_id,
                SessionParticipant.role == "party",
            )
        )
    assert first_party is not None
    async with db.begin() as session:
        record = await service.mark_no_show(
            session,
            session_id=first.session_id or 0,
            participant_id=first_party,
            no_show=True,
            actor="staff:1",
            now=START + timedelta(minutes=20),
        )
    assert record.state == SessionState.no_show
    assert [p.no_show for p in record.participants if p.role == "party"] == [True]


async def test_marking_both_parties_absent_is_a_no_show_whatever_staff_are_booked(
    db: Maker, pii: PiiCipher
) -> None:
    """Issue #16 item 5: an official booked besides the mediator is staff, not a party; an
    agent who is absent too does not matter; one party still expected keeps it open."""
    async with db() as session:
        ids = await demo_ids(session)
    req = BookingRequest.model_validate(
        {
            "start": START, "end": END, "title": "邻里纠纷调解",
            "staff": [{"staff_id": ids.mediators[0], "as_role": "mediator"},
                      {"staff_id": ids.mediators[1], "as_role": "official"}],
            "guests": [{"display_name": "甲", "side": "applicant"},
                       {"display_name": "乙", "side": "respondent"},
                       {"display_name": "丙", "as_role": "agent", "side": "applicant"}],
        }
    )  # fmt: skip
    out = await _book(db, pii, req)
    async with db() as session:
        record = await service.session_record(session, session_id=out.session_id or 0)
    by_name = {p.display_name: p.id for p in record.participants}
    after = START + timedelta(minutes=20)
    for name in ("甲", "乙"):
        async with db.begin() as session:
            record = await service.mark_no_show(
                session, session_id=out.session_id or 0, participant_id=by_name[name],
                no_show=True, actor="staff:1", now=after,
            )  # fmt: skip
        assert record.state == ("no_show" if name == "乙" else "scheduled")
    assert {p.display_name for p in record.participants if p.no_show} == {"甲", "乙"}
