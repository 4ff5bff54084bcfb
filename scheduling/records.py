"""What a booking and a session look like from outside: BookingOut, the session record,
calendar entries, my sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.errors import (
    BookingNotFound,
)
from scheduling.models import (
    Booking,
    BookingClaim,
    ScheduledJob,
)
from scheduling.schemas import BookingOut, JobOut, ParticipantOut, SessionRecord
from server.cases.access import masked_name
from server.kernel.errors import NotFound
from server.sessions import participants
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.models import CallSession
from server.sessions.schemas import SessionView

# --- views ---------------------------------------------------------------------------------


async def load_booking(
    session: AsyncSession, booking_id: int, *, for_update: bool = False
) -> Booking:
    stmt = select(Booking).where(Booking.id == booking_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise BookingNotFound(f"no booking {booking_id}")
    return row


async def session_view(session: AsyncSession, session_id: int) -> SessionView:
    try:
        return await sessions.get_session_by_id(session, session_id=session_id)
    except SessionNotFound:
        raise NotFound(f"no session {session_id}") from None


async def booking_out(session: AsyncSession, booking: Booking) -> BookingOut:
    call = await session_view(session, booking.session_id) if booking.session_id else None
    req = booking.request
    return BookingOut(
        id=booking.id,
        status=booking.status.value,
        start=booking.start_at,
        end=booking.end_at,
        hold_expires_at=booking.hold_expires_at,
        session_id=booking.session_id,
        room_id=call.room_id if call else None,
        ical_uid=call.ical_uid if call else None,
        ical_sequence=call.ical_sequence if call else 0,
        previous_id=booking.previous_id,
        follows_id=booking.follows_id,
        reason=booking.reason,
        staff_ids=[int(s["staff_id"]) for s in req.get("staff", [])],
        resource_ids=[int(r["resource_id"]) for r in req.get("resources", [])],
    )


async def get_booking(session: AsyncSession, *, booking_id: int) -> BookingOut:
    return await booking_out(session, await load_booking(session, booking_id))


async def session_record(
    session: AsyncSession, *, session_id: int, guests_in_clear: bool = True
) -> SessionRecord:
    """The session with its participants and bookings; residents' (guests') names masked
    (王**) unless `guests_in_clear` (what `server.sessions.record.check_visible` returns for
    the viewer: whether they may know the case's petitioner)."""
    call = await session_view(session, session_id)
    people = await participants.participants_of(session, session_id=session_id)
    bookings = await session.scalars(
        select(Booking).where(Booking.session_id == session_id).order_by(Booking.id)
    )
    jobs = await session.scalars(
        select(ScheduledJob).where(ScheduledJob.session_id == session_id).order_by(ScheduledJob.id)
    )
    return SessionRecord(
        session_id=call.id,
        room_id=call.room_id,
        title=call.title,
        state=call.state.value,
        planned_start=call.planned_start,
        planned_end=call.planned_end,
        actual_start=call.actual_start,
        actual_end=call.actual_end,
        ical_uid=call.ical_uid,
        ical_sequence=call.ical_sequence,
        participants=[
            ParticipantOut(
                id=p.id,
                display_name=p.display_name
                if guests_in_clear or p.staff_id is not None
                else masked_name(p.display_name),
                role=p.role,
                staff_id=p.staff_id,
                invite_status=p.invite_status,
                joined_at=p.joined_at,
                left_at=p.left_at,
                no_show=p.no_show,
                side=p.side,
            )
            for p in people
        ],
        bookings=[await booking_out(session, b) for b in bookings],
        jobs=[
            JobOut(
                id=j.id,
                kind=j.kind.value,
                participant_id=j.participant_id,
                due_at=j.due_at,
                status=j.status.value,
                attempts=j.attempts,
                last_error=j.last_error,
                sent_at=j.sent_at,
            )
            for j in jobs
        ],
    )


async def booking_for_session(session: AsyncSession, *, session_id: int) -> Booking | None:
    """The current booking of a session (the newest row)."""
    rows = await session.scalars(
        select(Booking).where(Booking.session_id == session_id).order_by(Booking.id.desc()).limit(1)
    )
    return rows.first()


async def count_live_claims(session: AsyncSession, *, key: str, now: datetime) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(BookingClaim)
            .where(
                BookingClaim.resource_key == key,
                (BookingClaim.expires_at.is_(None)) | (BookingClaim.expires_at > now),
            )
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    key: str
    start: datetime  # the session itself (claims also cover buffers)
    end: datetime
    booking_id: int
    session_id: int | None
    title: str
    status: str


async def calendar_entries(
    session: AsyncSession, *, keys: Sequence[str], start: datetime, end: datetime, now: datetime
) -> list[CalendarEntry]:
    """Live bookings and holds of the given people/resources overlapping [start, end)."""
    if not keys:
        return []
    rows = (
        await session.execute(
            select(BookingClaim.resource_key, Booking, CallSession.title)
            .join(Booking, Booking.id == BookingClaim.booking_id)
            .outerjoin(CallSession, CallSession.id == Booking.session_id)
            .where(
                BookingClaim.resource_key.in_(list(keys)),
                BookingClaim.start_at < end,
                BookingClaim.end_at > start,
                (BookingClaim.expires_at.is_(None)) | (BookingClaim.expires_at > now),
            )
            .order_by(Booking.start_at)
        )
    ).all()
    return [
        CalendarEntry(
            key, b.start_at, b.end_at, b.id, b.session_id, title or "预留", b.status.value
        )
        for key, b, title in rows
    ]


async def my_sessions(
    session: AsyncSession, *, staff_id: int, since: datetime, limit: int = 100
) -> list[SessionView]:
    """Planned sessions the staff member takes part in, ending from `since` on, earliest first."""
    return await sessions.planned_sessions_of(session, staff_id=staff_id, since=since, limit=limit)
