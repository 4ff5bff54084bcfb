"""Session events for integrators (signed webhooks, server.webhooks): each call below is
enqueued in the caller's transaction, with what identifies the session."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from server.sessions.models import CallSession
from server.sessions.schemas import RecordingRecord
from server.webhooks.service import enqueue

#: The case-timeline notes of a session (casefile.note) and the webhook event of each.
CASE_NOTE_EVENTS = {
    "session_started": "session.started",
    "session_ended": "session.ended",
    "session_no_show": "session.no_show",
    "session_outcome": "session.outcome_recorded",
}
#: Signaling journal events (service._write_event) and the webhook event of each.
JOURNAL_EVENTS = {
    "participant.joined": "participant.joined",
    "participant.resumed": "participant.joined",
    "participant.left": "participant.left",
    "participant.removed": "participant.left",
}
#: What of a journal event's payload goes out (no names or phone numbers).
PARTICIPANT_KEYS = ("identity", "role", "site_id")


async def emit(
    session: AsyncSession,
    session_id: int,
    event: str,
    payload: Mapping[str, object] | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """Queue webhook `event` about call session `session_id` (unknown session: nothing)."""
    row = await session.get(CallSession, session_id)
    if row is None:
        return
    data: dict[str, object] = {
        "session_id": row.id,
        "room_id": row.room_id,
        "kind": row.kind.value,
        "case_id": row.case_id,
        "state": row.state.value,
        "outcome": row.outcome.value if row.outcome is not None else None,
    }
    if at is not None:
        data["at"] = at.isoformat()
    data.update(payload or {})
    await enqueue(session, event=event, data=data, now=at)


async def emit_case_note(session: AsyncSession, session_id: int, type: str, at: datetime) -> None:
    """A session's case-timeline note that integrators hear of (others send nothing)."""
    event = CASE_NOTE_EVENTS.get(type)
    if event is not None:
        await emit(session, session_id, event, at=at)


async def emit_journal(
    session: AsyncSession, session_id: int, type: str, payload: Mapping[str, object], at: datetime
) -> None:
    """A participant joined or left (other journal events send nothing)."""
    event = JOURNAL_EVENTS.get(type)
    if event is not None:
        public = {k: payload[k] for k in PARTICIPANT_KEYS if k in payload}
        await emit(session, session_id, event, public, at=at)


async def emit_recording(session: AsyncSession, record: RecordingRecord) -> None:
    """A session's recordings are on disk with their hashes (the files, not their paths)."""
    if not record.files:
        return
    files = [
        {
            "identity": f.identity,
            "kind": f.kind,
            "sha256": f.sha256,
            "size_bytes": f.size_bytes,
            "started_at": f.started_at.isoformat(),
            "duration_s": f.duration_s,
        }
        for f in record.files
    ]
    payload = {"files": files, "interrupted": record.interrupted}
    ended = max(f.started_at + timedelta(seconds=f.duration_s) for f in record.files)
    await emit(session, record.session_id, "recording.ready", payload, at=ended)
