"""The sessions domain service: the only code that creates and changes `CallSession`, and the
only code that issues and checks join tokens. Signaling, scheduling, the desk/queue, the REST
API and the pages call it; it returns frozen views (server/sessions/schemas.py).

Lifecycle (every change is checked against `TRANSITIONS` in `check_transition`):

    scheduled ─► lobby ─► live ─► ended
        │  └──────┼──────►─┘│      ▲
        │         └─► no_show ◄┘───┘   (staff alone in the room: still a no-show; a room
        └─► cancelled, no_show, ended     closed after a party came late ends as ended)

Like every service: the caller's `AsyncSession` comes first, nothing here commits.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record as audit
from server.cases.deadline_clock import DeadlineClock
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput
from server.org import service as org
from server.sessions import casefile, hooks
from server.sessions import participants as participant_rows
from server.sessions.errors import (
    IllegalSessionTransition,
    JoinTokenNotFound,
    SessionClosed,
    SessionNotFound,
    SessionNotOpen,
    TokenInvalid,
    TokenRevoked,
)
from server.sessions.models import (
    CallSession,
    ChatMessage,
    JoinToken,
    ParticipantRole,
    Recording,
    SessionEvent,
    SessionKind,
    SessionMode,
    SessionOutcome,
    SessionParticipant,
    SessionState,
)
from server.sessions.schemas import (
    GUEST_ROLES,
    ROLE_PERMISSIONS,
    ChatRecord,
    EventRecord,
    IssuedJoinToken,
    ParticipantView,
    RecordingRecord,
    Role,
    SessionLine,
    SessionRecordOp,
    SessionView,
)
from server.sessions.tokens import JoinGrant, new_jti, verify_join_token
from server.sessions.tokens import issue_join_token as sign_join_token

logger = logging.getLogger(__name__)

S = SessionState
#: The legal state changes; everything else raises IllegalSessionTransition.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.scheduled: frozenset({S.lobby, S.live, S.ended, S.cancelled, S.no_show}),
    S.lobby: frozenset({S.live, S.ended, S.no_show}),
    S.live: frozenset({S.ended, S.no_show}),
    S.no_show: frozenset({S.ended}),
    S.ended: frozenset(),
    S.cancelled: frozenset(),
}
#: A session not yet under way: it can still be marked no-show.
WAITING_STATES = frozenset({S.scheduled, S.lobby})
#: An outcome is recorded while or after the session runs.
OUTCOME_STATES = frozenset({S.live, S.ended})
#: How long before its planned start a booked session's room opens, unless configured
#: (ONEDOOR_SESSION_LOBBY_OPEN_MIN); join links are valid from then on as well.
DEFAULT_LOBBY_LEAD = timedelta(minutes=30)
#: Never written to the event table or the audit log (PII stays in SessionParticipant).
PRIVATE_KEYS = ("display_name",)


def new_room_id() -> str:
    return "r-" + secrets.token_urlsafe(9).replace("_", "x").replace("-", "y")


def can_transition(current: SessionState, target: SessionState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: SessionState, target: SessionState) -> None:
    """Raises:
    IllegalSessionTransition: `current` may not become `target`."""
    if not can_transition(current, target):
        raise IllegalSessionTransition(
            f"a {current.value} session cannot become {target.value}",
            state=current.value,
            target=target.value,
        )


# --- the window of a booked session ---------------------------------------------------------
#
# A booked session (planned start and end) opens `lobby_lead` before its planned start: from
# then on it may start (an official enters) and be ended (结束会话). Before that, nothing that
# closes or starts it is allowed: a host who enters tomorrow's room today cannot end it. A
# session that is live has started in its window and may always be ended; an unplanned session
# (a reception call) is open at once.


def opens_at(view: SessionView, *, lobby_lead: timedelta) -> datetime | None:
    """When a booked session's window opens (None: unplanned, open at once)."""
    return None if view.planned_start is None else view.planned_start - lobby_lead


def check_can_start(view: SessionView, *, now: datetime, lobby_lead: timedelta) -> None:
    """Raises:
    SessionNotOpen: a booked session before its window opens."""
    start = opens_at(view, lobby_lead=lobby_lead)
    if start is not None and now < start:
        raise SessionNotOpen(
            f"the session opens at {start.isoformat()}", opens_at=start.isoformat()
        )


def check_can_end(
    view: SessionView, *, now: datetime, lobby_lead: timedelta, live: bool = False
) -> None:
    """`live`: the room knows the session started (its record may not say so yet).

    Raises:
        SessionNotOpen: a booked session, not live, before its window opens."""
    if live or view.state == S.live:
        return
    check_can_start(view, now=now, lobby_lead=lobby_lead)


# --- reads -----------------------------------------------------------------------------------


async def _row(session: AsyncSession, session_id: int, *, lock: bool = False) -> CallSession:
    row = await session.get(CallSession, session_id, with_for_update=lock or None)
    if row is None:
        raise SessionNotFound(f"no session {session_id}")
    return row


async def get_session(session: AsyncSession, *, room_id: str) -> SessionView:
    row = await session.scalar(select(CallSession).where(CallSession.room_id == room_id))
    if row is None:
        raise SessionNotFound(f"no session for room {room_id}")
    return SessionView.from_row(row)


async def get_session_by_id(session: AsyncSession, *, session_id: int) -> SessionView:
    return SessionView.from_row(await _row(session, session_id))


async def sessions_created_by(
    session: AsyncSession,
    *,
    staff_id: int,
    since: datetime,
    until: datetime | None = None,
    limit: int = 50,
) -> list[SessionView]:
    """Sessions the staff member created in [since, until), newest first."""
    query = select(CallSession).where(
        CallSession.created_by_id == staff_id, CallSession.created_at >= since
    )
    if until is not None:
        query = query.where(CallSession.created_at < until)
    rows = await session.scalars(query.order_by(CallSession.id.desc()).limit(limit))
    return [SessionView.from_row(r) for r in rows]


async def sessions_of_day(
    session: AsyncSession, *, staff_id: int, start: datetime, end: datetime, limit: int = 20
) -> list[SessionView]:
    """A staff member's sessions of one day [start, end): the booked ones they take part in
    (host, mediator, invited staff) planned to start that day, and the rooms they opened that
    day; earliest first, cancelled bookings left out."""
    booked = (
        select(SessionParticipant.session_id)
        .where(SessionParticipant.staff_id == staff_id)
        .scalar_subquery()
    )
    rows = await session.scalars(
        select(CallSession)
        .where(
            or_(
                and_(
                    CallSession.id.in_(booked),
                    CallSession.planned_start >= start,
                    CallSession.planned_start < end,
                ),
                and_(
                    CallSession.created_by_id == staff_id,
                    CallSession.created_at >= start,
                    CallSession.created_at < end,
                ),
            ),
            CallSession.state != S.cancelled,
        )
        .order_by(func.coalesce(CallSession.planned_start, CallSession.created_at))
        .limit(limit)
    )
    return [SessionView.from_row(r) for r in rows]


async def active_sessions(session: AsyncSession, *, limit: int = 200) -> list[SessionView]:
    """Sessions in the lobby or live, newest first (the supervisor's overview)."""
    rows = await session.scalars(
        select(CallSession)
        .where(CallSession.state.in_((S.lobby, S.live)))
        .order_by(CallSession.id.desc())
        .limit(limit)
    )
    return [SessionView.from_row(r) for r in rows]


async def live_overview(session: AsyncSession, *, limit: int = 200) -> list[SessionLine]:
    """Every session in the lobby or live, newest first, with its host site's name (the
    supervisor's overview on the home page)."""
    active = await active_sessions(session, limit=limit)
    names = await org.site_names(
        session, site_ids={s.host_site_id for s in active if s.host_site_id is not None}
    )
    return [
        SessionLine(
            id=s.id,
            room_id=s.room_id,
            title=s.title,
            state=s.state,
            site_name=names.get(s.host_site_id) if s.host_site_id is not None else None,
        )
        for s in active
    ]


async def participants(session: AsyncSession, *, session_id: int) -> list[ParticipantView]:
    """Every participant row of the session (server.sessions.participants.participants_of)."""
    return await participant_rows.participants_of(session, session_id=session_id)


async def planned_sessions_of(
    session: AsyncSession, *, staff_id: int, since: datetime, limit: int = 100
) -> list[SessionView]:
    """Planned sessions the staff member takes part in, ending from `since` on, earliest first."""
    rows = await session.scalars(
        select(CallSession)
        .join(SessionParticipant, SessionParticipant.session_id == CallSession.id)
        .where(
            SessionParticipant.staff_id == staff_id,
            CallSession.planned_end.is_not(None),
            CallSession.planned_end >= since,
        )
        .order_by(CallSession.planned_start)
        .limit(limit)
    )
    return [SessionView.from_row(r) for r in rows]


# --- lifecycle -------------------------------------------------------------------------------


async def create_session(
    session: AsyncSession,
    *,
    kind: SessionKind,
    title: str,
    case_id: int | None,
    host_site_id: int | None,
    created_by_id: int | None,
    now: datetime,
    capacity: int = 8,
    recording_allowed: bool = False,
    mode: SessionMode = SessionMode.video,
    planned_start: datetime | None = None,
    planned_end: datetime | None = None,
    ical_uid: str | None = None,
) -> SessionView:
    """A new session in state `scheduled`, with a fresh room id."""
    if (planned_start is None) != (planned_end is None):
        raise InvalidInput("a planned session needs both start and end", field="planned_end")
    if planned_start is not None and planned_end is not None and planned_end <= planned_start:
        raise InvalidInput("the end must be after the start", field="planned_end")
    row = CallSession(
        room_id=new_room_id(),
        case_id=case_id,
        kind=kind,
        mode=mode,
        state=SessionState.scheduled,
        title=title,
        host_site_id=host_site_id,
        created_by_id=created_by_id,
        capacity=capacity,
        recording_allowed=recording_allowed,
        planned_start=planned_start,
        planned_end=planned_end,
        ical_uid=ical_uid,
        ical_sequence=0,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return SessionView.from_row(row)


async def _move(session: AsyncSession, session_id: int, target: SessionState) -> CallSession:
    row = await _row(session, session_id, lock=True)
    check_transition(row.state, target)
    row.state = target
    return row


async def open_lobby(session: AsyncSession, *, session_id: int) -> SessionView:
    """scheduled → lobby (the scheduled room opens before its start)."""
    row = await _move(session, session_id, S.lobby)
    await session.flush()
    return SessionView.from_row(row)


async def go_live(
    session: AsyncSession, *, session_id: int, now: datetime, deadlines: DeadlineClock
) -> SessionView:
    """scheduled/lobby → live; the first start is kept as `actual_start` (and starts a
    mediation's 调解期限, by `deadlines`)."""
    row = await _move(session, session_id, S.live)
    first = row.actual_start is None
    row.actual_start = row.actual_start or now
    if first:
        await casefile.started(session, row, now, deadlines=deadlines)
    await session.flush()
    return SessionView.from_row(row)


async def end(session: AsyncSession, *, session_id: int, now: datetime) -> SessionView:
    row = await _move(session, session_id, S.ended)
    row.actual_end = now
    await casefile.note(session, row, "session_ended", now)
    await session.flush()
    return SessionView.from_row(row)


async def end_from_room(session: AsyncSession, *, session_id: int, now: datetime) -> SessionView:
    """The session's room ended: the session is `ended` (already closed: left as it is).
    Signaling calls it before it lets an ended room go, so that a join or resume read after
    it finds the session closed (the journal's `session.ended` event may come later)."""
    row = await _row(session, session_id, lock=True)
    if row.state == S.no_show and not await _a_party_came(session, row.id):
        row.actual_end = row.actual_end or now  # staff alone closed it: still a no-show
        await session.flush()
    elif can_transition(row.state, S.ended):
        row.state = S.ended
        row.actual_end = now
        await casefile.note(session, row, "session_ended", now)
        await session.flush()
    return SessionView.from_row(row)


async def _a_party_came(session: AsyncSession, session_id: int) -> bool:
    people = await participant_rows.participants_of(session, session_id=session_id)
    return any(p.required_party and p.joined_at is not None for p in people)


async def cancel(session: AsyncSession, *, session_id: int) -> SessionView:
    """scheduled → cancelled; the invite's SEQUENCE goes up (METHOD:CANCEL follows)."""
    row = await _move(session, session_id, S.cancelled)
    row.ical_sequence += 1
    await session.flush()
    return SessionView.from_row(row)


async def mark_no_show(
    session: AsyncSession, *, session_id: int, now: datetime | None = None
) -> SessionView:
    """scheduled/lobby/live → no_show (every party stayed away, whoever of the staff came);
    a live session a party came to is no no-show (IllegalSessionTransition)."""
    row = await _row(session, session_id, lock=True)
    if row.state == S.live and await _a_party_came(session, session_id):
        raise IllegalSessionTransition(
            "a party came: the session is no no-show", state=row.state.value, target="no_show"
        )
    row = await _move(session, session_id, S.no_show)
    await casefile.note(session, row, "session_no_show", now or utcnow())
    await session.flush()
    return SessionView.from_row(row)


async def record_outcome(
    session: AsyncSession, *, session_id: int, outcome: SessionOutcome, now: datetime | None = None
) -> SessionView:
    row = await _row(session, session_id, lock=True)
    if row.state not in OUTCOME_STATES:
        raise IllegalSessionTransition(
            f"a {row.state.value} session has no outcome yet",
            state=row.state.value,
            target="outcome",
        )
    row.outcome = outcome
    await casefile.note(session, row, "session_outcome", now or utcnow())
    await session.flush()
    return SessionView.from_row(row)


async def require_scheduled(session: AsyncSession, *, session_id: int) -> SessionView:
    """Lock the session and check it has not started (or been closed) yet: what moving or
    cancelling a booking needs before it touches anything."""
    row = await _row(session, session_id, lock=True)
    if row.state != S.scheduled:
        raise IllegalSessionTransition(
            f"the session is already {row.state}", state=row.state.value, target="scheduled"
        )
    return SessionView.from_row(row)


async def reschedule(
    session: AsyncSession, *, session_id: int, start: datetime, end: datetime
) -> SessionView:
    """New planned times for a session still `scheduled`; SEQUENCE + 1 for the update."""
    if end <= start:
        raise InvalidInput("the end must be after the start", field="end")
    await require_scheduled(session, session_id=session_id)
    row = await _row(session, session_id)
    row.planned_start, row.planned_end = start, end
    row.ical_sequence += 1
    await session.flush()
    return SessionView.from_row(row)


async def attach_case(
    session: AsyncSession, *, session_id: int, case_id: int, deadlines: DeadlineClock
) -> SessionView:
    """File the session under a case (the desk does it when a call is answered)."""
    row = await _row(session, session_id, lock=True)
    row.case_id = case_id
    if row.actual_start is not None:  # it started before it was filed: the case says so
        await casefile.started(session, row, row.actual_start, deadlines=deadlines)
    await session.flush()
    return SessionView.from_row(row)


# --- join tokens -----------------------------------------------------------------------------


async def issue_join_token(
    session: AsyncSession,
    *,
    secret: bytes,
    session_id: int,
    role: Role,
    display_name: str,
    not_before: datetime,
    expires_at: datetime,
    issued_by_id: int | None,
    site_id: int | None = None,
    identity: str | None = None,
) -> IssuedJoinToken:
    """Sign a join token for a guest role and record it, so it can be listed and revoked.
    `identity` defaults to `guest:<jti>`."""
    if role not in GUEST_ROLES:
        raise InvalidInput(f"a join link cannot carry the role {role}", field="role")
    view = await get_session_by_id(session, session_id=session_id)
    jti = new_jti()
    grant = JoinGrant(
        jti=jti,
        room_id=view.room_id,
        identity=identity or f"guest:{jti}",
        display_name=display_name,
        role=role,
        permissions=ROLE_PERMISSIONS[role],
        not_before=not_before,
        expires_at=expires_at,
        site_id=site_id,
    )
    token = sign_join_token(secret, grant)
    session.add(
        JoinToken(
            jti=jti,
            session_id=view.id,
            role=ParticipantRole(role),
            display_name=display_name,
            issued_by_id=issued_by_id,
            not_before=not_before,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return IssuedJoinToken(
        jti=jti,
        token=token,
        session_id=view.id,
        room_id=view.room_id,
        not_before=not_before,
        expires_at=expires_at,
    )


async def check_join_token(session: AsyncSession, *, jti: str, session_id: int) -> None:
    """Raises TokenRevoked for a revoked token, TokenInvalid for one we never issued."""
    row = await session.get(JoinToken, jti)
    if row is None or row.session_id != session_id:
        raise TokenInvalid("the link is not valid")
    if row.revoked_at is not None:
        raise TokenRevoked("the link has been revoked")


@dataclass(frozen=True, slots=True)
class Admission:
    grant: JoinGrant
    session: SessionView


async def admit_join_token(
    session: AsyncSession, *, secret: bytes, token: str, now: datetime
) -> Admission:
    """Everything a join link must pass: signature and time window, a session that exists,
    a token we issued and did not revoke, a session not yet closed.

    Raises:
        TokenInvalid, TokenExpired, TokenRevoked, SessionNotFound, SessionClosed
    """
    grant = verify_join_token(secret, token, now=now)
    view = await get_session(session, room_id=grant.room_id)
    await check_join_token(session, jti=grant.jti, session_id=view.id)
    if not view.open:
        raise SessionClosed("the session has ended")
    return Admission(grant, view)


async def revoke_join_token(session: AsyncSession, *, jti: str, now: datetime) -> int:
    """Returns the session id of the revoked token (revoking twice is harmless)."""
    row = await session.get(JoinToken, jti)
    if row is None:
        raise JoinTokenNotFound(f"no join token {jti}")
    if row.revoked_at is None:
        row.revoked_at = now
    return row.session_id


@dataclass(frozen=True, slots=True)
class JoinLinks:
    """Join links for scheduled sessions: staff open /rooms/{room_id} signed in; guests get a
    recorded join token (scheduling.reminders.JoinLinkIssuer)."""

    secret: bytes
    base_url: str

    async def __call__(
        self,
        session: AsyncSession,
        *,
        call: SessionView,
        participant: ParticipantView,
        not_before: datetime,
        expires_at: datetime,
    ) -> str:
        if participant.staff_id is not None:
            return f"{self.base_url}/rooms/{call.room_id}"
        role: Role = "party"
        for candidate in GUEST_ROLES:
            if candidate == participant.role.value:
                role = candidate
        issued = await issue_join_token(
            session,
            secret=self.secret,
            session_id=call.id,
            role=role,
            display_name=participant.display_name,
            not_before=not_before,
            expires_at=expires_at,
            issued_by_id=call.created_by_id,
            site_id=participant.site_id,
            identity=participant.identity,
        )
        return f"{self.base_url}/join/{issued.token}"


# --- the session file, written by signaling's journal ----------------------------------------


def public_payload(payload: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in payload.items() if k not in PRIVATE_KEYS}


async def write_records(
    session: AsyncSession, records: Sequence[SessionRecordOp], *, deadlines: DeadlineClock
) -> None:
    """Chat lines go in one executemany (no ORM unit of work on the event loop); the rest, in
    order, one by one (`deadlines`: a started mediation starts its 调解期限)."""
    chats = [
        {
            "session_id": r.session_id,
            "sender": r.sender,
            "display_name": r.display_name,
            "text": r.text,
            "at": r.at,
        }
        for r in records
        if isinstance(r, ChatRecord)
    ]
    if chats:
        await session.execute(insert(ChatMessage), chats)
    for r in records:
        if not isinstance(r, ChatRecord):
            await write_record(session, r, deadlines=deadlines)


async def write_record(
    session: AsyncSession, record: SessionRecordOp, *, deadlines: DeadlineClock
) -> None:
    if isinstance(record, ChatRecord):
        session.add(
            ChatMessage(
                session_id=record.session_id,
                sender=record.sender,
                display_name=record.display_name,
                text=record.text,
                at=record.at,
            )
        )
        return
    if isinstance(record, RecordingRecord):
        for f in record.files:
            session.add(
                Recording(
                    session_id=record.session_id,
                    identity=f.identity,
                    kind=f.kind,
                    storage_uri=f.storage_uri,
                    sha256=f.sha256,
                    size_bytes=f.size_bytes,
                    started_at=f.started_at,
                    duration_s=f.duration_s,
                    interrupted=record.interrupted,
                )
            )
        await hooks.emit_recording(session, record)
        return
    await _write_event(session, record, deadlines=deadlines)


async def _write_event(session: AsyncSession, ev: EventRecord, *, deadlines: DeadlineClock) -> None:
    public = public_payload(dict(ev.payload))
    session.add(
        SessionEvent(
            session_id=ev.session_id, type=ev.type, actor=ev.actor, payload=public, at=ev.at
        )
    )
    await hooks.emit_journal(session, ev.session_id, ev.type, ev.payload, ev.at)
    await audit(
        session,
        actor=ev.actor,
        action=f"signaling.{ev.type}",
        object_type="call_session",
        object_id=str(ev.session_id),
        detail=public,
        at=ev.at,
    )
    if ev.type.startswith(("participant.", "recording.")):
        await participant_rows.follow_event(session, ev)
    elif ev.type in ("session.started", "session.ended"):
        await _follow_room(session, ev, deadlines=deadlines)
    await session.flush()


async def _follow_room(session: AsyncSession, ev: EventRecord, *, deadlines: DeadlineClock) -> None:
    """The room started or ended: the session follows where its state allows. A room on a
    session already live (a rebuilt room) or already closed leaves the state alone."""
    row = await session.get(CallSession, ev.session_id)
    if row is None:
        return
    target = S.live if ev.type == "session.started" else S.ended
    if row.state == S.no_show and not await _a_party_came(session, row.id):
        logger.info("session %s stays no_show on %s (no party came)", ev.session_id, ev.type)
        return
    if not can_transition(row.state, target):
        logger.info("session %s stays %s on %s", ev.session_id, row.state.value, ev.type)
        return
    if target == S.live:
        await go_live(session, session_id=row.id, now=ev.at, deadlines=deadlines)
    else:
        await end(session, session_id=row.id, now=ev.at)
