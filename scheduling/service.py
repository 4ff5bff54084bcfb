"""Bookings: hold, confirm, book, reschedule, cancel, follow-on, no-show; the session record.

Every function takes the caller's `AsyncSession` first and never commits: the view runs
`async with sessionmaker.begin() as session:` so a booking either happens completely (claims,
call session, participants, jobs, audit entry) or not at all.

Why double booking is impossible:
- PostgreSQL: `booking_claim` has an exclusion constraint (btree_gist) on
  (resource_key WITH =, tstzrange(start_at, end_at) WITH &&). Two transactions that claim
  overlapping time on one key cannot both commit; the loser gets an IntegrityError that
  becomes `BookingConflict`. Claims are inserted in key order, so two bookings sharing several
  keys queue behind each other instead of deadlocking.
- SQLite: every write transaction starts with BEGIN IMMEDIATE (server/db.py), so writers run
  one at a time; the overlap check below runs in the same transaction as the insert, so no
  other writer can slip in between.
The explicit overlap check also runs on PostgreSQL: it gives a clear error naming the
conflicting person or resource before the constraint has to fire.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.availability import BookingPolicy, free_intervals, padded
from scheduling.errors import (
    BookingClosed,
    BookingNotFound,
    HoldExpired,
    SlotUnavailable,
    UnknownParticipant,
    WrongResourceKind,
)
from scheduling.intervals import contains
from scheduling.loader import load_availability, load_calendar, resource_key, staff_key
from scheduling.models import (
    Booking,
    BookingClaim,
    BookingStatus,
    GuestContact,
    JobKind,
    JobStatus,
    ScheduledJob,
)
from scheduling.schemas import BookingOut, BookingRequest, JobOut, ParticipantOut, SessionRecord
from server.audit.service import record as audit
from server.errors import BookingConflict, IllegalTransition, InvalidInput, NotFound
from server.org.models import Resource, Staff
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.models import (
    CallSession,
    ParticipantRole,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from server.sessions.schemas import SessionView

logger = logging.getLogger(__name__)

HOLD_FOR = timedelta(minutes=5)  # [cfg] how long a held slot waits for confirmation
MAX_SESSION = timedelta(hours=12)
HOST_ROLES = frozenset({ParticipantRole.host, ParticipantRole.mediator})
OPEN_STATES = frozenset({SessionState.scheduled, SessionState.lobby})


class Cipher(Protocol):
    """Encrypts guests' contact details (server.crypto.PiiCipher implements it)."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


@dataclass(frozen=True, slots=True)
class _Owner:
    key: str
    site_id: int | None
    policy: BookingPolicy


def new_ical_uid() -> str:
    return f"{uuid.uuid4()}@onedoor"


# --- validation and claims -----------------------------------------------------------------


def _check_times(start: datetime, end: datetime, now: datetime) -> None:
    if end <= start:
        raise InvalidInput("the end must be after the start", field="end")
    if end - start > MAX_SESSION:
        raise InvalidInput("a session may last at most 12 hours", field="end")
    if start < now:
        raise InvalidInput("the start lies in the past", field="start")


async def _resolve(
    session: AsyncSession, request: BookingRequest
) -> tuple[list[Staff], list[Resource]]:
    """Load and check every named person and resource. Raises before anything is written."""
    staff_ids = [s.staff_id for s in request.staff]
    staff_rows = {
        s.id: s
        for s in await session.scalars(
            select(Staff).where(Staff.id.in_(staff_ids), Staff.active.is_(True))
        )
    }
    missing_staff = [i for i in staff_ids if i not in staff_rows]
    resource_ids = [r.resource_id for r in request.resources]
    resource_rows = {
        r.id: r
        for r in await session.scalars(
            select(Resource).where(Resource.id.in_(resource_ids), Resource.active.is_(True))
        )
    }
    missing_resources = [i for i in resource_ids if i not in resource_rows]
    if missing_staff or missing_resources:
        raise UnknownParticipant(
            "unknown or inactive participants",
            staff_ids=missing_staff,
            resource_ids=missing_resources,
        )
    for ref in request.staff:
        if ref.must_have_role is not None and ref.must_have_role not in (
            staff_rows[ref.staff_id].role_set
        ):
            raise InvalidInput(
                f"staff {ref.staff_id} does not hold the role {ref.must_have_role}",
                staff_id=ref.staff_id,
            )
    for rref in request.resources:
        actual = resource_rows[rref.resource_id].type
        if rref.expected_type is not None and actual != rref.expected_type:
            raise WrongResourceKind(
                f"resource {rref.resource_id} is a {actual}, not a {rref.expected_type}",
                resource_id=rref.resource_id,
                expected=str(rref.expected_type),
                actual=str(actual),
            )
    return [staff_rows[i] for i in staff_ids], [resource_rows[i] for i in resource_ids]


async def _claim(
    session: AsyncSession,
    *,
    booking: Booking,
    owners: Sequence[_Owner],
    start: datetime,
    end: datetime,
    now: datetime,
    tz: str,
    expires_at: datetime | None,
) -> None:
    """Check availability and conflicts for every owner, then insert the claims.

    Raises:
        SlotUnavailable: outside someone's working hours, notice/advance window or on leave.
        BookingConflict: overlaps a live claim (found here, or by the exclusion constraint).
    """
    keys = [o.key for o in owners]
    # 1. Working hours, leave, notice and advance (bookings not considered yet).
    availability = await load_availability(session, keys=keys, start=start, end=end, tz=tz)
    calendar = await load_calendar(session)
    outside = [
        key
        for key in keys
        if not contains(
            free_intervals(
                availability[key], busy=[], start=start, end=end, now=now, calendar=calendar
            ),
            start,
            end,
        )
    ]
    if outside:
        raise SlotUnavailable(
            "the time is outside the availability of " + ", ".join(outside), owners=outside
        )
    ranges = {o.key: padded(availability[o.key].policy, start, end) for o in owners}
    lo = min(r[0] for r in ranges.values())
    hi = max(r[1] for r in ranges.values())
    # 2. Expired holds on these keys block nothing: remove them (their bookings expire).
    expired = (
        await session.scalars(
            delete(BookingClaim)
            .where(
                BookingClaim.resource_key.in_(keys),
                BookingClaim.expires_at.is_not(None),
                BookingClaim.expires_at <= now,
                BookingClaim.start_at < hi,
                BookingClaim.end_at > lo,
            )
            .returning(BookingClaim.booking_id)
        )
    ).all()
    if expired:
        await session.execute(
            update(Booking)
            .where(Booking.id.in_(set(expired)), Booking.status == BookingStatus.held)
            .values(status=BookingStatus.expired, closed_at=now)
        )
    # 3. Overlap with live claims (SQLite relies on this; PostgreSQL also has the constraint).
    rows = (
        await session.execute(
            select(BookingClaim.resource_key, BookingClaim.start_at, BookingClaim.end_at).where(
                BookingClaim.resource_key.in_(keys),
                BookingClaim.start_at < hi,
                BookingClaim.end_at > lo,
            )
        )
    ).all()
    conflicts = sorted({k for k, s, e in rows if s < ranges[k][1] and ranges[k][0] < e})
    if conflicts:
        raise BookingConflict(
            "the time overlaps another booking of " + ", ".join(conflicts), owners=conflicts
        )
    # 4. Insert in key order (concurrent bookings sharing keys queue instead of deadlocking).
    for key in sorted(keys):
        s, e = ranges[key]
        session.add(
            BookingClaim(
                booking_id=booking.id, resource_key=key, start_at=s, end_at=e, expires_at=expires_at
            )
        )
    try:
        await session.flush()
    except IntegrityError as e:
        raise BookingConflict("the time was just booked by someone else") from e
    except DBAPIError as e:  # deadlock or serialisation failure under contention
        if getattr(e.orig, "sqlstate", None) in ("40P01", "40001"):
            raise BookingConflict("the time was just booked by someone else") from e
        raise


def _owners(staff: Sequence[Staff], resources: Sequence[Resource]) -> list[_Owner]:
    out = [_Owner(staff_key(s.id), s.site_id, BookingPolicy()) for s in staff]
    out += [_Owner(resource_key(r.id), r.site_id, BookingPolicy()) for r in resources]
    return out


def _request_json(request: BookingRequest, cipher: Cipher) -> dict[str, Any]:
    data = request.model_dump(mode="json", exclude={"guests", "start", "end"})
    data["guests"] = [
        {
            "display_name": g.display_name,
            "as_role": g.as_role.value,
            "phone_enc": cipher.encrypt(g.phone) if g.phone else "",
            "email_enc": cipher.encrypt(g.email) if g.email else "",
        }
        for g in request.guests
    ]
    return data


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
    _check_times(request.start, request.end, now)
    staff, resources = await _resolve(session, request)
    booking = Booking(
        status=BookingStatus.held,
        start_at=request.start,
        end_at=request.end,
        hold_expires_at=now + hold_for,
        request=_request_json(request, cipher),
        created_by_id=actor_staff_id,
        created_at=now,
        follows_id=follows_id,
    )
    session.add(booking)
    await session.flush()
    await _claim(
        session,
        booking=booking,
        owners=_owners(staff, resources),
        start=request.start,
        end=request.end,
        now=now,
        tz=tz,
        expires_at=now + hold_for,
    )
    return await _booking_out(session, booking)


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
    booking = await _get_booking(session, booking_id, for_update=True)
    if booking.status == BookingStatus.confirmed:
        return await _booking_out(session, booking)
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
    call = await _create_session(session, booking=booking, now=now)
    booking.session_id = call.id
    await session.flush()
    await _enqueue_all(
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
    return await _booking_out(session, booking)


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


async def _create_session(session: AsyncSession, *, booking: Booking, now: datetime) -> SessionView:
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
        host_site_id=host_site,
        created_by_id=booking.created_by_id,
        planned_start=booking.start_at,
        planned_end=booking.end_at,
        ical_uid=new_ical_uid(),
        now=now,
    )
    for ref in staff_refs:
        s = staff_rows[ref["staff_id"]]
        session.add(
            SessionParticipant(
                session_id=call.id,
                identity=staff_key(s.id),
                role=ParticipantRole(ref.get("as_role", "official")),
                staff_id=s.id,
                display_name=s.display_name,
                site_id=s.site_id,
                invite_status="queued",
            )
        )
    for guest in req.get("guests", []):
        participant = SessionParticipant(
            session_id=call.id,
            identity=f"guest:{secrets.token_urlsafe(16)}",
            role=ParticipantRole(guest.get("as_role", "party")),
            display_name=guest["display_name"],
            invite_status="queued",
        )
        session.add(participant)
        await session.flush()
        session.add(
            GuestContact(
                participant_id=participant.id,
                phone_enc=guest.get("phone_enc", ""),
                email_enc=guest.get("email_enc", ""),
            )
        )
    await session.flush()
    return call


async def _enqueue_all(
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
    participants = list(
        await session.scalars(
            select(SessionParticipant).where(SessionParticipant.session_id == call.id)
        )
    )
    leads = booking.request.get("reminders_s", [])
    for p in participants:
        session.add(_job(call.id, p.id, kind, due_at=now, now=now))
        p.invite_status = "queued"
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


async def _cancel_pending_jobs(session: AsyncSession, *, session_id: int, now: datetime) -> None:
    await session.execute(
        update(ScheduledJob)
        .where(ScheduledJob.session_id == session_id, ScheduledJob.status == JobStatus.pending)
        .values(status=JobStatus.cancelled, last_error="superseded", locked_until=None)
        .execution_options(synchronize_session=False)
    )


# --- reschedule, cancel, follow-on, no-show ------------------------------------------------


async def _get_booking(
    session: AsyncSession, booking_id: int, *, for_update: bool = False
) -> Booking:
    stmt = select(Booking).where(Booking.id == booking_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise BookingNotFound(f"no booking {booking_id}")
    return row


async def _live_session(session: AsyncSession, booking: Booking) -> SessionView:
    """The booking's session, locked and still `scheduled` (checked by the sessions service)."""
    if booking.status != BookingStatus.confirmed or booking.session_id is None:
        raise BookingClosed(f"booking {booking.id} is {booking.status}")
    try:
        return await sessions.require_scheduled(session, session_id=booking.session_id)
    except SessionNotFound:
        raise NotFound(f"no session for booking {booking.id}") from None


async def _session(session: AsyncSession, session_id: int) -> SessionView:
    try:
        return await sessions.get_session_by_id(session, session_id=session_id)
    except SessionNotFound:
        raise NotFound(f"no session {session_id}") from None


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
    _check_times(start, end, now)
    if not reason.strip():
        raise InvalidInput("a reschedule needs a reason", field="reason")
    old = await _get_booking(session, booking_id, for_update=True)
    call = await _live_session(session, old)
    request = BookingRequest.model_validate(
        {**_public_request(old.request), "start": start, "end": end}
    )
    staff, resources = await _resolve(session, request)
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
    await _claim(
        session,
        booking=new,
        owners=_owners(staff, resources),
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
    await _cancel_pending_jobs(session, session_id=call.id, now=now)
    await _enqueue_all(
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
    return await _booking_out(session, new)


async def cancel(
    session: AsyncSession, *, booking_id: int, reason: str, actor: str, now: datetime
) -> BookingOut:
    """Cancel a hold or a booking: claims released; for a booking the session is cancelled,
    SEQUENCE + 1 and every participant gets METHOD:CANCEL."""
    if not reason.strip():
        raise InvalidInput("a cancellation needs a reason", field="reason")
    booking = await _get_booking(session, booking_id, for_update=True)
    if booking.status == BookingStatus.held:
        await session.execute(delete(BookingClaim).where(BookingClaim.booking_id == booking.id))
        booking.status = BookingStatus.cancelled
        booking.closed_at = now
        booking.reason = reason
        return await _booking_out(session, booking)
    call = await _live_session(session, booking)
    await session.execute(delete(BookingClaim).where(BookingClaim.booking_id == booking.id))
    booking.status = BookingStatus.cancelled
    booking.closed_at = now
    booking.reason = reason
    call = await sessions.cancel(session, session_id=call.id)
    await _cancel_pending_jobs(session, session_id=call.id, now=now)
    await _enqueue_all(
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
    return await _booking_out(session, booking)


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
    earlier = await _get_booking(session, booking_id)
    if earlier.status not in (BookingStatus.confirmed,) or earlier.session_id is None:
        raise BookingClosed(f"booking {booking_id} is {earlier.status}")
    if not reason.strip():
        raise InvalidInput("a follow-on session needs a reason", field="reason")
    guests = [
        {
            "display_name": g["display_name"],
            "as_role": g.get("as_role", "party"),
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
    new = await _get_booking(session, out.id)
    new.reason = reason
    return await _booking_out(session, new)


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
    party is absent, a session still waiting in the lobby becomes no_show."""
    call = await _session(session, session_id)
    part = await session.get(SessionParticipant, participant_id)
    if part is None or part.session_id != session_id:
        raise NotFound(f"no participant {participant_id} in session {session_id}")
    if call.planned_start is not None and now < call.planned_start:
        raise IllegalTransition("attendance can be marked only after the start")
    part.no_show = no_show
    await session.flush()
    parties = list(
        await session.scalars(
            select(SessionParticipant).where(
                SessionParticipant.session_id == session_id,
                SessionParticipant.role.not_in(list(HOST_ROLES)),
            )
        )
    )
    if parties and all(p.no_show for p in parties) and call.state in OPEN_STATES:
        await sessions.mark_no_show(session, session_id=call.id)
        await _cancel_pending_jobs(session, session_id=call.id, now=now)
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


# --- views ---------------------------------------------------------------------------------


async def _booking_out(session: AsyncSession, booking: Booking) -> BookingOut:
    call = await _session(session, booking.session_id) if booking.session_id else None
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
    return await _booking_out(session, await _get_booking(session, booking_id))


async def session_record(session: AsyncSession, *, session_id: int) -> SessionRecord:
    call = await _session(session, session_id)
    participants = await session.scalars(
        select(SessionParticipant)
        .where(SessionParticipant.session_id == session_id)
        .order_by(SessionParticipant.id)
    )
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
                display_name=p.display_name,
                role=p.role,
                staff_id=p.staff_id,
                invite_status=p.invite_status,
                joined_at=p.joined_at,
                left_at=p.left_at,
                no_show=p.no_show,
            )
            for p in participants
        ],
        bookings=[await _booking_out(session, b) for b in bookings],
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
