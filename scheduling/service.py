"""Bookings: hold, confirm, book, reschedule, cancel, follow-on, no-show; the session record.

The public face of scheduling's booking code, split by job:
- `claims.py`: validation, people and rooms, claiming time (and why double booking is
  impossible);
- `booking.py`: hold, confirm, book (creates the call session through server.sessions);
- `changes.py`: reschedule, cancel, follow-on, no-show;
- `records.py`: BookingOut, the session record, calendar entries, my sessions.

Every function takes the caller's `AsyncSession` first and never commits: the view runs
`async with sessionmaker.begin() as session:` so a booking either happens completely (claims,
call session, participants, jobs, audit entry) or not at all.
"""

from __future__ import annotations

from scheduling.booking import book, confirm, hold
from scheduling.changes import cancel, follow_on, mark_no_show, reschedule
from scheduling.claims import (
    HOLD_FOR,
    HOST_ROLES,
    MAX_SESSION,
    OPEN_STATES,
    Cipher,
    new_ical_uid,
)
from scheduling.records import (
    CalendarEntry,
    booking_for_session,
    calendar_entries,
    count_live_claims,
    get_booking,
    my_sessions,
    session_record,
)

__all__ = [
    "HOLD_FOR",
    "HOST_ROLES",
    "MAX_SESSION",
    "OPEN_STATES",
    "CalendarEntry",
    "Cipher",
    "book",
    "booking_for_session",
    "calendar_entries",
    "cancel",
    "confirm",
    "count_live_claims",
    "follow_on",
    "get_booking",
    "hold",
    "mark_no_show",
    "my_sessions",
    "new_ical_uid",
    "reschedule",
    "session_record",
]
