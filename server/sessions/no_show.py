"""No-show per role (issue #16 item 5): a party who has not joined a booked session within the
configured time after its planned start (ONEDOOR_SESSION_NO_SHOW_MIN, default 15) is marked
absent; the session becomes `no_show` once every required party (the applicant and respondent
parties: role `party`) is absent, whatever staff are in the room. Staff, agents, interpreters
and observers are never required: a mediator waiting alone does not keep the session going.

`decide` is the rule, pure; `sweep` applies it to every booked session past its threshold,
run every minute by the app's job runner (server.app jobs_context) with its clock. The case
timeline says so (`session_no_show`, through server.sessions.casefile).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record as audit
from server.kernel.jobs import Periodic
from server.sessions import participants
from server.sessions import service as sessions
from server.sessions.models import CallSession, SessionState
from server.sessions.schemas import ParticipantView, SessionView

logger = logging.getLogger(__name__)

#: How long after the planned start a party may still come (ONEDOOR_SESSION_NO_SHOW_MIN).
DEFAULT_NO_SHOW_AFTER = timedelta(minutes=15)
#: How often the app's job runner sweeps.
SWEEP_EVERY = timedelta(minutes=1)
#: Sessions still waiting for their parties: booked, not closed.
SWEPT_STATES = (SessionState.scheduled, SessionState.lobby, SessionState.live)


@dataclass(frozen=True, slots=True)
class Decision:
    #: Participants to mark absent now (required parties who never came, plus other guests).
    absent_ids: tuple[int, ...]
    #: Every required party is absent: the session becomes `no_show`.
    session_no_show: bool


def came(identity: str, people: Sequence[ParticipantView]) -> bool:
    """Whether anyone with this identity joined (a reconnect writes a row per arrival)."""
    return any(p.identity == identity and p.joined_at is not None for p in people)


def decide(
    view: SessionView, people: Sequence[ParticipantView], *, now: datetime, after: timedelta
) -> Decision:
    """The no-show rule for one session at `now` (nothing before start + `after`, nothing for
    an unplanned session or one already closed)."""
    if (
        view.planned_start is None
        or view.state not in SWEPT_STATES
        or now < view.planned_start + after
    ):
        return Decision((), False)
    guests = [p for p in people if p.staff_id is None]
    absent = tuple(
        p.id
        for p in guests
        if not p.no_show and p.joined_at is None and not came(p.identity, people)
    )
    absent_set = set(absent)
    required = [p for p in guests if p.required_party]
    everyone_away = bool(required) and all(
        (p.no_show or p.id in absent_set) and not came(p.identity, people) for p in required
    )
    return Decision(absent, everyone_away)


async def apply(
    session: AsyncSession, *, session_id: int, now: datetime, after: timedelta
) -> Decision:
    """Mark the absent and, when every required party is absent, the session `no_show`."""
    view = await sessions.get_session_by_id(session, session_id=session_id)
    people = await participants.participants_of(session, session_id=session_id)
    decision = decide(view, people, now=now, after=after)
    for pid in decision.absent_ids:
        await participants.set_no_show(session, participant_id=pid, no_show=True)
    if decision.session_no_show and sessions.can_transition(view.state, SessionState.no_show):
        await sessions.mark_no_show(session, session_id=session_id, now=now)
    if decision.absent_ids or decision.session_no_show:
        await audit(
            session,
            actor="system",
            action="session.no_show_marked",
            object_type="call_session",
            object_id=str(session_id),
            detail={
                "participant_ids": list(decision.absent_ids),
                "session": decision.session_no_show,
            },
            at=now,
        )
    return decision


async def due_sessions(
    session: AsyncSession, *, now: datetime, after: timedelta, limit: int = 200
) -> list[int]:
    """Booked sessions past their threshold, still waiting (oldest first); a day's look-back
    is enough for a sweep that runs every minute."""
    rows = await session.scalars(
        select(CallSession.id)
        .where(
            CallSession.state.in_(SWEPT_STATES),
            CallSession.planned_start.is_not(None),
            CallSession.planned_start <= now - after,
            CallSession.planned_start > now - after - timedelta(days=1),
        )
        .order_by(CallSession.planned_start)
        .limit(limit)
    )
    return list(rows)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, after: timedelta
) -> int:
    """One pass over the due sessions, each in its own transaction; returns how many became
    `no_show`."""
    async with sessionmaker() as session:
        ids = await due_sessions(session, now=now, after=after)
    count = 0
    for session_id in ids:
        async with sessionmaker.begin() as session:
            if (await apply(session, session_id=session_id, now=now, after=after)).session_no_show:
                count += 1
    if count:
        logger.info("%d session(s) marked no-show", count)
    return count


def periodic(sessionmaker: async_sessionmaker[AsyncSession], *, after: timedelta) -> Periodic:
    """The sweep as the job runner's periodic task (registered in server.app jobs_context)."""

    async def run(now: datetime) -> None:
        await sweep(sessionmaker, now=now, after=after)

    return Periodic("session_no_show", every=SWEEP_EVERY, run=run)
