"""Hold, confirm and book: the claims, the call session (through the sessions service), its
participants and their jobs, in the caller's transaction.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.claims import (
    HOLD_FOR,
    Cipher,
    check_times,
    claim_time,
    new_ical_uid,
    owners_of,
    request_json,
    resolve_request,
)
from scheduling.errors import (
    BookingClosed,
    HoldExpired,
)
from scheduling.loader import staff_key
from scheduling.models import (
    Booking,
    BookingClaim,
    BookingStatus,
    GuestContact,
    JobKind,
    JobStatus,
    ScheduledJob,
)
from scheduling.records import booking_out, load_booking
from scheduling.schemas import BookingOut, BookingRequest
from server.audit.service import record as audit
from server.cases import team
from server.org.models import Resource, Staff
from server.sessions import participants
from server.sessions import service as sessions
from server.sessions.schemas import ParticipantRole, SessionKind, SessionMode, SessionView

# --- hold, confirm, book -------------------------------------------------------------------


async def hold(
    session: AsyncSession,
    *,
    request: BookingRequest,
    actor_staff_id: int | None,
    now: datetime,
    tz: str,
    cipher: Cipher,
    hold_for: timedelta = HOLD_FOR,
    follows_id: int | None = None,
) -> BookingOut:
    """Reserve every person and resource for a short while; `confirm` makes it a booking.

    Raises:
        InvalidInput, UnknownParticipant, WrongResourceKind, SlotUnavailable, BookingConflict.
    """
    check_times(request.start, request.end, now)
    staff, resources = await resolve_request(session, request)
    booking = Booking(
        status=BookingStatus.held,
        start_at=request.start,
        end_at=request.end,
        hold_expires_at=now + hold_for,
        request=request_json(request, cipher),
        created_by_id=actor_staff_id,
        created_at=now,
        follows_id=follows_id,
    )
    session.add(booking)
    await session.flush()
    await claim_time(
        session,
        booking=booking,
        owners=owners_of(staff, resources),
        start=request.start,
        end=request.end,
        now=now,
        tz=tz,
        expires_at=now + hold_for,
    )
    return await booking_out(session, booking)


async def confirm(
    session: AsyncSession,
    *,
    booking_id: int,
    actor: str,
    now: datetime,
    lobby_lead: timedelta = timedelta(0),
) -> BookingOut:
    """Turn a hold into a booking: the call session, its participants, invites and reminders.

    Raises:
        HoldExpired: the hold ran out and someone else took part of the time.
        BookingClosed: the booking was cancelled or replaced.
    """
    booking = await load_booking(session, booking_id, for_update=True)
    if booking.status == BookingStatus.confirmed:
        return await booking_out(session, booking)
    if booking.status == BookingStatus.expired:
        raise HoldExpired(f"the hold on booking {booking_id} expired and the time was taken")
    if booking.status != BookingStatus.held:
        raise BookingClosed(f"booking {booking_id} is {booking.status}")
    expected = len(booking.request.get("staff", [])) + len(booking.request.get("resources", []))
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(BookingClaim)
        .where(BookingClaim.booking_id == booking.id)
        .values(expires_at=None)
        .execution_options(synchronize_session=False)
    )
    kept = result.rowcount
    if kept != expected:
        raise HoldExpired(f"the hold on booking {booking_id} expired and the time was taken")
    booking.status = BookingStatus.confirmed
    booking.hold_expires_at = None
    call = await _create_session(session, booking=booking, actor=actor, now=now)
    booking.session_id = call.id
    await session.flush()
    await enqueue_all(
        session, call=call, booking=booking, kind=JobKind.invite, now=now, lobby_lead=lobby_lead
    )
    await audit(
        session,
        actor=actor,
        action="schedule.booked",
        object_type="call_session",
        object_id=str(call.id),
        detail={"booking_id": booking.id, "start": booking.start_at, "end": booking.end_at},
        at=now,
    )
    return await booking_out(session, booking)


async def book(
    session: AsyncSession,
    *,
    request: BookingRequest,
    actor: str,
    actor_staff_id: int | None,
    now: datetime,
    tz: str,
    cipher: Cipher,
    follows_id: int | None = None,
    lobby_lead: timedelta = timedelta(0),
) -> BookingOut:
    """Hold and confirm at once (one transaction)."""
    held = await hold(
        session,
        request=request,
        actor_staff_id=actor_staff_id,
        now=now,
        tz=tz,
        cipher=cipher,
        follows_id=follows_id,
    )
    return await confirm(session, booking_id=held.id, actor=actor, now=now, lobby_lead=lobby_lead)


async def _create_session(
    session: AsyncSession, *, booking: Booking, actor: str, now: datetime
) -> SessionView:
    req = booking.request
    staff_refs = req.get("staff", [])
    staff_rows = {
        s.id: s
        for s in await session.scalars(
            select(Staff).where(Staff.id.in_([r["staff_id"] for r in staff_refs]))
        )
    }
    resource_rows = list(
        await session.scalars(
            select(Resource).where(
                Resource.id.in_([r["resource_id"] for r in req.get("resources", [])])
            )
        )
    )
    host_site = (
        resource_rows[0].site_id
        if resource_rows
        else (staff_rows[staff_refs[0]["staff_id"]].site_id if staff_refs else None)
    )
    call = await sessions.create_session(
        session,
        kind=SessionKind(req.get("kind", "mediation")),
        mode=SessionMode(req.get("mode", "video")),
        title=req.get("title") or "预约会话",
        case_id=req.get("case_id"),
        recording_allowed=(
            req["recording_allowed"]
            if req.get("recording_allowed") is not None
            else req.get("kind", "mediation") == SessionKind.mediation.value
        ),
        host_site_id=host_site,
        created_by_id=booking.created_by_id,
        planned_start=booking.start_at,
        planned_end=booking.end_at,
        ical_uid=new_ical_uid(),
        now=now,
    )
    for ref in staff_refs:
        s = staff_rows[ref["staff_id"]]
        await participants.add_participant(
            session,
            session_id=call.id,
            identity=staff_key(s.id),
            role=ParticipantRole(ref.get("as_role", "official")),
            staff_id=s.id,
            display_name=s.display_name,
            site_id=s.site_id,
            invite_status="queued",
        )
        if req.get("case_id") and ref.get("as_role") == ParticipantRole.mediator.value:
            # the mediator booked for the case's mediation may open the case they mediate
            await team.name_mediator(
                session,
                case_id=req["case_id"],
                staff_id=s.id,
                added_by_id=booking.created_by_id,
                actor=actor,
                now=now,
            )
    for guest in req.get("guests", []):
        participant = await participants.add_participant(
            session,
            session_id=call.id,
            identity=f"guest:{secrets.token_urlsafe(16)}",
            role=ParticipantRole(guest.get("as_role", "party")),
            display_name=guest["display_name"],
            side=guest.get("side"),
            invite_status="queued",
        )
        session.add(
            GuestContact(
                participant_id=participant.id,
                phone_enc=guest.get("phone_enc", ""),
                email_enc=guest.get("email_enc", ""),
            )
        )
    await session.flush()
    return call


async def enqueue_all(
    session: AsyncSession,
    *,
    call: SessionView,
    booking: Booking,
    kind: JobKind,
    now: datetime,
    lobby_lead: timedelta,
) -> None:
    """An invite/update/cancel per participant; for live bookings also reminders and the
    room opening."""
    people = await participants.participants_of(session, session_id=call.id)
    leads = booking.request.get("reminders_s", [])
    await participants.set_invite_status(
        session, participant_ids=[p.id for p in people], status="queued"
    )
    for p in people:
        session.add(_job(call.id, p.id, kind, due_at=now, now=now))
        if kind == JobKind.cancel:
            continue
        for lead_s in leads:
            due = booking.start_at - timedelta(seconds=int(lead_s))
            if due > now:
                session.add(
                    _job(call.id, p.id, JobKind.reminder, due_at=due, now=now, lead_s=int(lead_s))
                )
    if kind != JobKind.cancel:
        session.add(
            _job(
                call.id,
                None,
                JobKind.room_open,
                due_at=max(now, booking.start_at - lobby_lead),
                now=now,
            )
        )
    await session.flush()


def _job(
    session_id: int,
    participant_id: int | None,
    kind: JobKind,
    *,
    due_at: datetime,
    now: datetime,
    lead_s: int = 0,
) -> ScheduledJob:
    return ScheduledJob(
        session_id=session_id,
        participant_id=participant_id,
        kind=kind,
        lead_s=lead_s,
        due_at=due_at,
        status=JobStatus.pending,
        attempts=0,
        last_error="",
        created_at=now,
    )


async def cancel_pending_jobs(session: AsyncSession, *, session_id: int, now: datetime) -> None:
    await session.execute(
        update(ScheduledJob)
        .where(ScheduledJob.session_id == session_id, ScheduledJob.status == JobStatus.pending)
        .values(status=JobStatus.cancelled, last_error="superseded", locked_until=None)
        .execution_options(synchronize_session=False)
    )
