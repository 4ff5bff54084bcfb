"""Scheduling: availability, slot finding, bookings with conflict detection in the database,
iCalendar invites and persisted reminders. Services take an `AsyncSession` first and never
commit; pure parts (intervals, availability, slots, ics) do no I/O.

May import: server.kernel.db, server.kernel.errors, server.org/sessions/cases models, server.kernel.notify
(the Protocol only). Never aiohttp (server/api/scheduling.py and web/views/scheduling.py are
the edges).

    rules + exceptions + holidays ─► availability.free_intervals ─┐
    booking_claim rows (busy)   ──────────────────────────────────┴► slots.find_slots
    booking.book / hold / confirm ─► booking_claim (EXCLUDE gist on PostgreSQL)
                                   ─► call_session + session_participant
                                   ─► scheduled_job (invites, reminders) ─► runner ─► Notifier
"""
