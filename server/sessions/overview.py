"""What the home page shows of video sessions: the ones a staff member opened on a given
day and, for supervisors, every session in the lobby or live across the district."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.org.models import Site
from server.sessions.models import CallSession, SessionState

LIVE_STATES = (SessionState.lobby, SessionState.live)


@dataclass(frozen=True, slots=True)
class SessionLine:
    """One session in a list; `site_name` is the host site's, where the list shows it."""

    id: int
    room_id: str
    title: str
    state: SessionState
    site_name: str | None = None


async def sessions_created_by(
    session: AsyncSession, *, staff_id: int, since: datetime, until: datetime, limit: int = 20
) -> list[SessionLine]:
    """The sessions `staff_id` created in [since, until), newest first."""
    rows = await session.scalars(
        select(CallSession)
        .where(
            CallSession.created_by_id == staff_id,
            CallSession.created_at >= since,
            CallSession.created_at < until,
        )
        .order_by(CallSession.id.desc())
        .limit(limit)
    )
    return [SessionLine(id=r.id, room_id=r.room_id, title=r.title, state=r.state) for r in rows]


async def live_sessions(session: AsyncSession, *, limit: int = 200) -> list[SessionLine]:
    """Every session in the lobby or live, newest first, with its host site's name."""
    rows = await session.execute(
        select(CallSession, Site.name)
        .outerjoin(Site, Site.id == CallSession.host_site_id)
        .where(CallSession.state.in_(LIVE_STATES))
        .order_by(CallSession.id.desc())
        .limit(limit)
    )
    return [
        SessionLine(id=r.id, room_id=r.room_id, title=r.title, state=r.state, site_name=name)
        for r, name in rows.all()
    ]
