"""Booking claims: validating a request, resolving its people and rooms, and claiming their time.

Every function takes the caller's `AsyncSession` first and never commits: the view runs
`async with sessionmaker.begin() as session:` so a booking either happens completely (claims,
call session, participants, jobs, audit entry) or not at all.

Why double booking is impossible:
- PostgreSQL: `booking_claim` has an exclusion constraint (btree_gist) on
  (resource_key WITH =, tstzrange(start_at, end_at) WITH &&). Two transactions that claim
  overlapping time on one key cannot both commit; the loser gets an IntegrityError that
  becomes `BookingConflict`. Claims are inserted in key order, so two bookings sharing several
  keys queue behind each other instead of deadlocking.
- SQLite: every write transaction starts with BEGIN IMMEDIATE (server/kernel/db.py), so writers run
  one at a time; the overlap check below runs in the same transaction as the insert, so no
  other writer can slip in between.
The explicit overlap check also runs on PostgreSQL: it gives a clear error naming the
conflicting person or resource before the constraint has to fire.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.availability import BookingPolicy, free_intervals, padded
from scheduling.errors import (
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
)
from scheduling.schemas import BookingRequest
from server.kernel.errors import BookingConflict, InvalidInput
from server.org.models import Resource, Staff
from server.sessions.models import (
    ParticipantRole,
    SessionState,
)

HOLD_FOR = timedelta(minutes=5)  # [cfg] how long a held slot waits for confirmation
MAX_SESSION = timedelta(hours=12)
HOST_ROLES = frozenset({ParticipantRole.host, ParticipantRole.mediator})
OPEN_STATES = frozenset({SessionState.scheduled, SessionState.lobby})


class Cipher(Protocol):
    """Encrypts guests' contact details (server.kernel.crypto.PiiCipher implements it)."""

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


def check_times(start: datetime, end: datetime, now: datetime) -> None:
    if end <= start:
        raise InvalidInput("the end must be after the start", field="end")
    if end - start > MAX_SESSION:
        raise InvalidInput("a session may last at most 12 hours", field="end")
    if start < now:
        raise InvalidInput("the start lies in the past", field="start")


async def resolve_request(
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


async def claim_time(
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


def owners_of(staff: Sequence[Staff], resources: Sequence[Resource]) -> list[_Owner]:
    out = [_Owner(staff_key(s.id), s.site_id, BookingPolicy()) for s in staff]
    out += [_Owner(resource_key(r.id), r.site_id, BookingPolicy()) for r in resources]
    return out


def request_json(request: BookingRequest, cipher: Cipher) -> dict[str, Any]:
    data = request.model_dump(mode="json", exclude={"guests", "start", "end"})
    data["guests"] = [
        {
            "display_name": g.display_name,
            "as_role": g.as_role.value,
            "side": g.side,
            "phone_enc": cipher.encrypt(g.phone) if g.phone else "",
            "email_enc": cipher.encrypt(g.email) if g.email else "",
        }
        for g in request.guests
    ]
    return data
