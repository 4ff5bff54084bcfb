"""Changing a booking: reschedule, cancel, follow-on, no-show."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.booking import book, cancel_pending_jobs, enqueue_all
from scheduling.claims import (
    OPEN_STATES,
    Cipher,
    check_times,
    claim_time,
    owners_of,
    resolve_request,
)
from scheduling.errors import (
    BookingClosed,
)
from scheduling.models import (
    Booking,
    BookingClaim,
    BookingStatus,
    JobKind,
)
from scheduling.records import booking_out, load_booking, session_record, session_view
from scheduling.schemas import BookingOut, BookingRequest, SessionRecord
from server.audit.service import record as audit
from server.kernel.errors import IllegalTransition, InvalidInput, NotFound
from server.sessions import participants
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.schemas import SessionState, SessionView

# --- reschedule, cancel, follow-on, no-show ------------------------------------------------


async def _live_session(session: AsyncSession, booking: Booking) -> SessionView:
    """The booking's session, locked and still `scheduled` (checked by the sessions service)."""
    if booking.status != BookingStatus.confirmed or booking.session_id is None:
        raise BookingClosed(f"booking {booking.id} is {booking.status}")
    try:
        return await sessions.require_scheduled(session, session_id=booking.session_id)
    except SessionNotFound:
        raise NotFound(f"no session for booking {booking.id}") from None


async def reschedule(
    session: AsyncSession,
    *,
    booking_id: int,
    start: datetime,
    end: datetime,
    reason: str,
    actor: str,
    actor_staff_id: int | None,
    now: datetime,
    tz: str,
    lobby_lead: timedelta = timedelta(0),
) -> BookingOut:
    """Move a booking: a new booking row linked to the old one, the same session and UID,
    SEQUENCE + 1, every participant sent the updated invite, reminders re-planned."""
    check_times(start, end, now)
    if not reason.strip():
        raise InvalidInput("a reschedule needs a reason", field="reason")
    old = await load_booking(session, booking_id, for_update=True)
    call = await _live_session(session, old)
    request = BookingRequest.model_validate(
        {**_public_request(old.request), "start": start, "end": end}
    )
    staff, resources = await resolve_request(session, request)
    new = Booking(
        session_id=call.id,
        status=BookingStatus.confirmed,
        start_at=start,
        end_at=end,
        previous_id=old.id,
        follows_id=old.follows_id,
        request=old.request,
        reason=reason,
        created_by_id=actor_staff_id,
        created_at=now,
    )
    session.add(new)
    await session.flush()
    await session.execute(delete(BookingClaim).where(BookingClaim.booking_id == old.id))
    await claim_time(
        session,
        booking=new,
        owners=owners_of(staff, resources),
        start=start,
        end=end,
        now=now,
        tz=tz,
        expires_at=None,
    )
    old.status = BookingStatus.rescheduled
    old.closed_at = now
    old.reason = reason
    call = await sessions.reschedule(session, session_id=call.id, start=start, end=end)
    await cancel_pending_jobs(session, session_id=call.id, now=now)
    await enqueue_all(
        session, call=call, booking=new, kind=JobKind.update, now=now, lobby_lead=lobby_lead
    )
    await audit(
        session,
        actor=actor,
        action="schedule.rescheduled",
        object_type="call_session",
        object_id=str(call.id),
        detail={
            "from_booking": old.id,
            "to_booking": new.id,
            "start": start,
            "end": end,
            "reason": reason,
        },
        at=now,
    )
    return await booking_out(session, new)


async def cancel(
    session: AsyncSession, *, booking_id: int, reason: str, actor: str, now: datetime
) -> BookingOut:
    """Cancel a hold or a booking: claims released; for a booking the session is cancelled,
    SEQUENCE + 1 and every participant gets METHOD:CANCEL."""
    if not reason.strip():
        raise InvalidInput("a cancellation needs a reason", field="reason")
    booking = await load_booking(session, booking_id, for_update=True)
    if booking.status == BookingStatus.held:
        await session.execute(delete(BookingClaim).where(BookingClaim.booking_id == booking.id))
        booking.status = BookingStatus.cancelled
        booking.closed_at = now
        booking.reason = reason
        return await booking_out(session, booking)
    call = await _live_session(session, booking)
    await session.execute(delete(BookingClaim).where(BookingClaim.booking_id == booking.id))
    booking.status = BookingStatus.cancelled
    booking.closed_at = now
    booking.reason = reason
    call = await sessions.cancel(session, session_id=call.id)
    await cancel_pending_jobs(session, session_id=call.id, now=now)
    await enqueue_all(
        session, call=call, booking=booking, kind=JobKind.cancel, now=now, lobby_lead=timedelta(0)
    )
    await audit(
        session,
        actor=actor,
        action="schedule.cancelled",
        object_type="call_session",
        object_id=str(call.id),
        detail={"booking_id": booking.id, "reason": reason},
        at=now,
    )
    return await booking_out(session, booking)


def _public_request(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored request without guests (their contacts stay encrypted in the row)."""
    return {k: v for k, v in stored.items() if k != "guests"}


async def follow_on(
    session: AsyncSession,
    *,
    booking_id: int,
    start: datetime,
    end: datetime,
    reason: str,
    actor: str,
    actor_staff_id: int | None,
    now: datetime,
    tz: str,
    cipher: Cipher,
    lobby_lead: timedelta = timedelta(0),
) -> BookingOut:
    """A further session after an adjournment (休会后续调): same people and rooms, a new
    session and UID, linked to the earlier booking by `follows_id`."""
    earlier = await load_booking(session, booking_id)
    if earlier.status not in (BookingStatus.confirmed,) or earlier.session_id is None:
        raise BookingClosed(f"booking {booking_id} is {earlier.status}")
    if not reason.strip():
        raise InvalidInput("a follow-on session needs a reason", field="reason")
    guests = [
        {
            "display_name": g["display_name"],
            "as_role": g.get("as_role", "party"),
            "side": g.get("side"),
            "phone": cipher.decrypt(g["phone_enc"]) if g.get("phone_enc") else "",
            "email": cipher.decrypt(g["email_enc"]) if g.get("email_enc") else "",
        }
        for g in earlier.request.get("guests", [])
    ]
    request = BookingRequest.model_validate(
        {**_public_request(earlier.request), "guests": guests, "start": start, "end": end}
    )
    out = await book(
        session,
        request=request,
        actor=actor,
        actor_staff_id=actor_staff_id,
        now=now,
        tz=tz,
        cipher=cipher,
        follows_id=earlier.id,
        lobby_lead=lobby_lead,
    )
    new = await load_booking(session, out.id)
    new.reason = reason
    return await booking_out(session, new)


async def mark_no_show(
    session: AsyncSession,
    *,
    session_id: int,
    participant_id: int,
    no_show: bool,
    actor: str,
    now: datetime,
) -> SessionRecord:
    """Mark (or unmark) one participant as absent. Once the start has passed and every
    required party (role `party`) is absent, the session becomes no_show, whatever staff are
    in the room."""
    call = await session_view(session, session_id)
    try:
        part = await participants.get_participant(session, participant_id=participant_id)
    except participants.ParticipantNotFound:
        part = None
    if part is None or part.session_id != session_id:
        raise NotFound(f"no participant {participant_id} in session {session_id}")
    if call.planned_start is not None and now < call.planned_start:
        raise IllegalTransition("attendance can be marked only after the start")
    await participants.set_no_show(session, participant_id=participant_id, no_show=no_show)
    # the required parties (applicants and respondents), never staff (issue #16 item 5)
    parties = [
        p
        for p in await participants.participants_of(session, session_id=session_id)
        if p.required_party and p.staff_id is None
    ]
    if (
        parties
        and all(p.no_show and p.joined_at is None for p in parties)
        and (call.state in OPEN_STATES or call.state == SessionState.live)
    ):
        await sessions.mark_no_show(session, session_id=call.id, now=now)
        await cancel_pending_jobs(session, session_id=call.id, now=now)
    await audit(
        session,
        actor=actor,
        action="schedule.no_show" if no_show else "schedule.attended",
        object_type="call_session",
        object_id=str(session_id),
        detail={"participant_id": participant_id},
        at=now,
    )
    return await session_record(session, session_id=session_id)
