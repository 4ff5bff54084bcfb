"""The session record: what signaling reads from and writes to the database.

Reads (session lookup, token revocation, site names) happen at join time. Writes go through
`Journal`, a write-behind queue drained by one task in batches (one transaction per batch), so a
busy room never waits for the database and rows keep the order of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import server.models  # noqa: F401  (every mapper, so foreign keys resolve in any process)
from media.interfaces import RecordingFile
from server.audit.service import record as audit
from server.cases.models import PetitionCase
from server.org.models import Site
from server.sessions.models import (
    CallSession,
    ChatMessage,
    JoinToken,
    ParticipantRole,
    Recording,
    SessionEvent,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from server.tasks import cancel_and_wait
from signaling import errors
from signaling.bus import RoomEvent
from signaling.protocol import ChatOut

logger = logging.getLogger(__name__)

MAX_JOURNAL = 100_000
JOURNAL_BATCH = 500
#: Never written to the event table or the audit log (PII stays in SessionParticipant).
_PRIVATE_KEYS = ("display_name",)


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    room_id: str
    kind: SessionKind
    title: str
    capacity: int
    recording_allowed: bool
    state: SessionState
    case_id: int | None

    @property
    def open(self) -> bool:
        return self.state not in (SessionState.ended, SessionState.cancelled)

    @classmethod
    def from_row(cls, row: CallSession) -> SessionView:
        return cls(
            id=row.id,
            room_id=row.room_id,
            kind=row.kind,
            title=row.title,
            capacity=row.capacity,
            recording_allowed=row.recording_allowed,
            state=row.state,
            case_id=row.case_id,
        )


def new_room_id() -> str:
    return "r-" + secrets.token_urlsafe(9).replace("_", "x").replace("-", "y")


async def create_session(
    session: AsyncSession,
    *,
    kind: SessionKind,
    title: str,
    case_id: int | None,
    capacity: int,
    host_site_id: int | None,
    created_by_id: int | None,
    recording_allowed: bool,
    now: datetime,
) -> SessionView:
    row = CallSession(
        room_id=new_room_id(),
        case_id=case_id,
        kind=kind,
        mode=SessionMode.video,
        state=SessionState.scheduled,
        title=title,
        host_site_id=host_site_id,
        created_by_id=created_by_id,
        capacity=capacity,
        recording_allowed=recording_allowed,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return SessionView.from_row(row)


async def get_session(session: AsyncSession, *, room_id: str) -> SessionView:
    row = await session.scalar(select(CallSession).where(CallSession.room_id == room_id))
    if row is None:
        raise errors.RoomNotFound(f"no session for room {room_id}")
    return SessionView.from_row(row)


async def get_session_by_id(session: AsyncSession, *, session_id: int) -> SessionView:
    row = await session.get(CallSession, session_id)
    if row is None:
        raise errors.RoomNotFound(f"no session {session_id}")
    return SessionView.from_row(row)


async def record_join_token(
    session: AsyncSession,
    *,
    jti: str,
    session_id: int,
    role: str,
    display_name: str,
    issued_by_id: int | None,
    not_before: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        JoinToken(
            jti=jti,
            session_id=session_id,
            role=ParticipantRole(role),
            display_name=display_name,
            issued_by_id=issued_by_id,
            not_before=not_before,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def check_join_token(session: AsyncSession, *, jti: str, session_id: int) -> None:
    """Raises TokenRevoked for a revoked token, TokenInvalid for one we never issued."""
    row = await session.get(JoinToken, jti)
    if row is None or row.session_id != session_id:
        raise errors.TokenInvalid("the link is not valid")
    if row.revoked_at is not None:
        raise errors.TokenRevoked("the link has been revoked")


async def revoke_join_token(session: AsyncSession, *, jti: str, now: datetime) -> int:
    """Returns the session id of the revoked token."""
    row = await session.get(JoinToken, jti)
    if row is None:
        raise errors.PeerNotFound(f"no join token {jti}")
    if row.revoked_at is None:
        row.revoked_at = now
    return row.session_id


async def case_exists(session: AsyncSession, *, case_id: int) -> bool:
    return await session.get(PetitionCase, case_id) is not None


async def site_name(session: AsyncSession, *, site_id: int | None) -> str:
    if site_id is None:
        return ""
    name = await session.scalar(select(Site.name).where(Site.id == site_id))
    return name or ""


# ----------------------------------------------------------------------------- journal


@dataclass(frozen=True, slots=True)
class _EventOp:
    event: RoomEvent


@dataclass(frozen=True, slots=True)
class _ChatOp:
    session_id: int
    sender: str
    chat: ChatOut


@dataclass(frozen=True, slots=True)
class _RecordingOp:
    session_id: int
    identities: dict[str, str]
    files: tuple[RecordingFile, ...]
    interrupted: bool


_Op = _EventOp | _ChatOp | _RecordingOp


class Journal:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self._db = db
        self._queue: asyncio.Queue[_Op] = asyncio.Queue(maxsize=MAX_JOURNAL)
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.failed_batches = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="signaling-journal")

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.flush()
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def flush(self) -> None:
        await self._idle.wait()

    def _put(self, op: _Op) -> None:
        try:
            self._queue.put_nowait(op)
            self._idle.clear()
        except asyncio.QueueFull:
            logger.error("session journal full; dropped a %s", type(op).__name__)

    def event(self, event: RoomEvent) -> None:
        self._put(_EventOp(event))

    def chat(self, session_id: int, sender: str, chat: ChatOut) -> None:
        self._put(_ChatOp(session_id, sender, chat))

    def recording(
        self,
        session_id: int,
        identities: dict[str, str],
        files: tuple[RecordingFile, ...],
        interrupted: bool,
    ) -> None:
        self._put(_RecordingOp(session_id, identities, files, interrupted))

    async def _one_by_one(self, batch: list[_Op]) -> None:
        """A bad record must not take its batch with it."""
        for op in batch:
            try:
                async with self._db.begin() as session:
                    await _apply(session, op)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.dropped += 1
                logger.exception("dropped a %s session record", type(op).__name__)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < JOURNAL_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self._db.begin() as session:
                    await _apply_batch(session, batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed_batches += 1
                logger.exception(
                    "writing %d session records failed; retrying one by one", len(batch)
                )
                await self._one_by_one(batch)
            if self._queue.empty():
                self._idle.set()


def _staff_id(identity: str) -> int | None:
    if identity.startswith("staff:"):
        with contextlib.suppress(ValueError):
            return int(identity[6:])
    return None


async def _open_participant(
    session: AsyncSession, session_id: int, identity: str
) -> SessionParticipant | None:
    row: SessionParticipant | None = await session.scalar(
        select(SessionParticipant)
        .where(
            SessionParticipant.session_id == session_id,
            SessionParticipant.identity == identity,
        )
        .order_by(SessionParticipant.id.desc())
        .limit(1)
    )
    return row


async def _apply_batch(session: AsyncSession, batch: list[_Op]) -> None:
    """Chat lines go in one executemany (no ORM unit of work on the event loop); the rest, in
    order, through `_apply`."""
    chats = [
        {
            "session_id": op.session_id,
            "sender": op.sender,
            "display_name": op.chat.display_name,
            "text": op.chat.text,
            "at": op.chat.at,
        }
        for op in batch
        if isinstance(op, _ChatOp)
    ]
    if chats:
        await session.execute(insert(ChatMessage), chats)
    for op in batch:
        if not isinstance(op, _ChatOp):
            await _apply(session, op)


async def _apply(session: AsyncSession, op: _Op) -> None:
    if isinstance(op, _ChatOp):
        session.add(
            ChatMessage(
                session_id=op.session_id,
                sender=op.sender,
                display_name=op.chat.display_name,
                text=op.chat.text,
                at=op.chat.at,
            )
        )
        return
    if isinstance(op, _RecordingOp):
        for f in op.files:
            session.add(
                Recording(
                    session_id=op.session_id,
                    identity=op.identities.get(f.peer_id, f.peer_id),
                    kind=f.kind,
                    storage_uri=str(f.path),
                    sha256=f.sha256,
                    size_bytes=f.size_bytes,
                    started_at=datetime.fromtimestamp(f.started_at_unix, tz=UTC),
                    duration_s=f.duration_s,
                    interrupted=op.interrupted,
                )
            )
        return
    ev = op.event
    public = {k: v for k, v in ev.payload.items() if k not in _PRIVATE_KEYS}
    session.add(
        SessionEvent(
            session_id=ev.session_id, type=ev.type, actor=ev.actor, payload=public, at=ev.at
        )
    )
    await audit(
        session,
        actor=ev.actor,
        action=f"signaling.{ev.type}",
        object_type="call_session",
        object_id=str(ev.session_id),
        detail=public,
        at=ev.at,
    )
    identity = str(ev.payload.get("identity", ""))
    if ev.type in ("participant.joined", "participant.resumed") and identity:
        row = await _open_participant(session, ev.session_id, identity)
        if row is None or row.left_at is not None:
            session.add(
                SessionParticipant(
                    session_id=ev.session_id,
                    identity=identity,
                    role=ParticipantRole(ev.payload["role"]),
                    staff_id=_staff_id(identity),
                    display_name=str(ev.payload.get("display_name", ""))[:64],
                    site_id=ev.payload.get("site_id"),
                    invite_status="joined",
                    joined_at=ev.at,
                )
            )
        elif row.joined_at is None:
            row.joined_at = ev.at
    elif ev.type in ("participant.left", "participant.removed") and identity:
        row = await _open_participant(session, ev.session_id, identity)
        if row is not None and row.left_at is None and row.joined_at is not None:
            row.left_at = ev.at
    elif ev.type in ("recording.consent", "recording.refused") and identity:
        row = await _open_participant(session, ev.session_id, identity)
        if row is None or row.left_at is not None:
            row = SessionParticipant(
                session_id=ev.session_id,
                identity=identity,
                role=ParticipantRole(ev.payload["role"]),
                staff_id=_staff_id(identity),
                display_name=str(ev.payload.get("display_name", ""))[:64],
                site_id=ev.payload.get("site_id"),
                invite_status="lobby",
            )
            session.add(row)
        if ev.type == "recording.consent":
            row.recording_consent_at = ev.at
        else:
            row.recording_refused_at = ev.at
    elif ev.type == "session.started":
        cs = await session.get(CallSession, ev.session_id)
        if cs is not None and cs.state in (SessionState.scheduled, SessionState.lobby):
            cs.state = SessionState.live
            cs.actual_start = cs.actual_start or ev.at
    elif ev.type == "session.ended":
        cs = await session.get(CallSession, ev.session_id)
        if cs is not None:
            cs.state = SessionState.ended
            cs.actual_end = ev.at
    elif ev.type == "recording.refused":
        pass
    await session.flush()


def resume_ttl(grace_s: float) -> timedelta:
    """Resume tokens outlive a long session; a new one comes with every welcome."""
    return timedelta(hours=12) + timedelta(seconds=grace_s)


def event_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in _PRIVATE_KEYS}
