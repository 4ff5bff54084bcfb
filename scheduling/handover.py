"""Join links for staff to hand over (copy, print, read out) besides the SMS: a fresh recorded
join token per guest of a booked session, valid over the same window as the invite's link.
Each issue is audited (who issued links for which participants); the links themselves are
never stored or logged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from scheduling.errors import BookingClosed
from scheduling.reminders import TOKEN_VALID_AFTER_END, JoinLinkIssuer
from server.audit.service import record as audit
from server.kernel.errors import NotFound
from server.sessions import service as sessions
from server.sessions.schemas import ParticipantRole

#: Join links open this long before the planned start (as the invite's).
LINK_LEAD = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class HandoverLink:
    participant_id: int
    display_name: str
    role: ParticipantRole
    url: str
    not_before: datetime
    expires_at: datetime


async def issue_handover_links(
    session: AsyncSession, *, session_id: int, issuer: JoinLinkIssuer, actor: str, now: datetime
) -> list[HandoverLink]:
    """A join link for every guest (party, agent, observer) of a booked, still open session.

    Raises:
        NotFound: not a booked session.
        BookingClosed: the session has ended or was cancelled.
    """
    call = await sessions.get_session_by_id(session, session_id=session_id)
    if call.planned_start is None or call.planned_end is None:
        raise NotFound(f"session {session_id} is not a booked session")
    if not call.open:
        raise BookingClosed(f"session {session_id} is {call.state.value}")
    not_before = call.planned_start - LINK_LEAD
    expires_at = call.planned_end + TOKEN_VALID_AFTER_END
    out = []
    for p in await sessions.participants(session, session_id=session_id):
        if p.staff_id is not None:
            continue
        url = await issuer(
            session, call=call, participant=p, not_before=not_before, expires_at=expires_at
        )
        out.append(HandoverLink(p.id, p.display_name, p.role, url, not_before, expires_at))
    await audit(
        session,
        actor=actor,
        action="schedule.links_issued",
        object_type="call_session",
        object_id=str(session_id),
        detail={"participant_ids": [link.participant_id for link in out]},
        at=now,
    )
    return out
