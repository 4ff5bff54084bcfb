"""How a reception ends at the desk (接访结果) becomes its session's outcome: the session is
closed (if the room has not closed it yet) and the outcome recorded, so the session record and
the case timeline say how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.sessions import service
from server.sessions.models import SessionOutcome
from server.sessions.schemas import SessionView

#: The desk's outcome codes (web/views/desk.py OUTCOMES) as session outcomes.
RECEPTION_OUTCOMES: Mapping[str, SessionOutcome] = {
    "accepted": SessionOutcome.case_accepted,
    "answered": SessionOutcome.advice_given,
    "redirected": SessionOutcome.referred,
    "joint": SessionOutcome.joint_mediation,
    "interrupted": SessionOutcome.interrupted,
}


async def close_reception(
    session: AsyncSession, *, session_id: int, desk_outcome: str, now: datetime
) -> SessionView:
    """End the reception's session (a closed one stays as it is) and record its outcome
    (a session cancelled before it ever ran keeps none)."""
    view = await service.end_from_room(session, session_id=session_id, now=now)
    outcome = RECEPTION_OUTCOMES.get(desk_outcome)
    if outcome is None or view.state not in service.OUTCOME_STATES:
        return view
    return await service.record_outcome(session, session_id=session_id, outcome=outcome, now=now)
