"""A session tied to a case leaves its marks on the case's timeline (办理过程): started, ended,
no-show, outcome recorded. Written through the cases service, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.cases import deadline_clock
from server.cases.deadline_clock import DeadlineClock
from server.cases.timeline import append_event
from server.sessions import hooks
from server.sessions.models import CallSession, SessionKind, SessionOutcome

#: The case event types a session writes (labelled in web/labels.py CASE_EVENT_LABELS).
SESSION_CASE_EVENTS = ("session_started", "session_ended", "session_no_show", "session_outcome")


async def note(session: AsyncSession, row: CallSession, type: str, at: datetime) -> None:
    """Append `type` to the session's case timeline (nothing for a session without a case),
    and queue its webhook event (for every session)."""
    await hooks.emit_case_note(session, row.id, type, at)
    if row.case_id is None:
        return
    payload: dict[str, object] = {"session_id": row.id, "kind": row.kind.value}
    if type == "session_outcome" and row.outcome is not None:
        payload["outcome"] = row.outcome.value
    await append_event(session, case_id=row.case_id, type=type, at=at, payload=payload)
    if row.kind != SessionKind.mediation:
        return
    if type == "session_outcome" and row.outcome in MEDIATION_ENDS:
        await deadline_clock.meet_deadline(session, case_id=row.case_id, kind="mediation", now=at)


async def started(
    session: AsyncSession, row: CallSession, at: datetime, *, deadlines: DeadlineClock
) -> None:
    """The session started (or, started before, was filed under its case): noted on the
    timeline; the first mediation session of a case starts its 调解期限, counted by the
    deployment's deadline clock."""
    await note(session, row, "session_started", at)
    if row.case_id is not None and row.kind == SessionKind.mediation:
        await deadline_clock.open_deadline(
            session, case_id=row.case_id, kind="mediation", start=at, now=at, deadlines=deadlines
        )


#: Outcomes that end the mediation (agreement or 调解不成): its time limit stops.
MEDIATION_ENDS = frozenset(
    {SessionOutcome.agreement, SessionOutcome.no_agreement, SessionOutcome.party_withdrew}
)
