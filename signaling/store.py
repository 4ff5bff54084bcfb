"""The session record as signaling sees it: lookups at join time and a write-behind journal,
both through the sessions domain (server/sessions/service.py); no ORM row here.

Writes go through `Journal`, a write-behind queue drained by one task in batches (one
transaction per batch), so a busy room never waits for the database and rows keep the order of
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media.interfaces import RecordingFile
from server.cases.deadline_clock import DeadlineClock
from server.kernel.tasks import cancel_and_wait
from server.org import service as org
from server.sessions import service as sessions
from server.sessions.schemas import (
    ChatRecord,
    EventRecord,
    RecordedFile,
    RecordingRecord,
    SessionRecordOp,
)
from server.sessions.schemas import SessionView as SessionView
from signaling.bus import RoomEvent
from signaling.protocol import ChatOut

logger = logging.getLogger(__name__)

MAX_JOURNAL = 100_000
JOURNAL_BATCH = 500


async def get_session(session: AsyncSession, *, room_id: str) -> SessionView:
    """Raises RoomNotFound (server.sessions.errors.SessionNotFound)."""
    return await sessions.get_session(session, room_id=room_id)


async def check_join_token(session: AsyncSession, *, jti: str, session_id: int) -> None:
    """Raises TokenRevoked for a revoked token, TokenInvalid for one we never issued."""
    await sessions.check_join_token(session, jti=jti, session_id=session_id)


async def seal_ended(session: AsyncSession, *, session_id: int, now: datetime) -> None:
    """The room ended: the session is `ended` from now on (nothing if it already is)."""
    await sessions.end_from_room(session, session_id=session_id, now=now)


async def site_name(session: AsyncSession, *, site_id: int | None) -> str:
    return await org.site_name(session, site_id=site_id)


# ----------------------------------------------------------------------------- journal


class Journal:
    def __init__(self, db: async_sessionmaker[AsyncSession], deadlines: DeadlineClock) -> None:
        self._db = db
        #: A started mediation session starts its case's 调解期限 by the deployment's rules.
        self._deadlines = deadlines
        self._queue: asyncio.Queue[SessionRecordOp] = asyncio.Queue(maxsize=MAX_JOURNAL)
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

    def _put(self, op: SessionRecordOp) -> None:
        try:
            self._queue.put_nowait(op)
            self._idle.clear()
        except asyncio.QueueFull:
            logger.error("session journal full; dropped a %s", type(op).__name__)

    def event(self, event: RoomEvent) -> None:
        self._put(
            EventRecord(
                session_id=event.session_id,
                type=event.type,
                actor=event.actor,
                payload=event.payload,
                at=event.at,
            )
        )

    def chat(self, session_id: int, sender: str, chat: ChatOut) -> None:
        self._put(
            ChatRecord(
                session_id=session_id,
                sender=sender,
                display_name=chat.display_name,
                text=chat.text,
                at=chat.at,
            )
        )

    def recording(
        self,
        session_id: int,
        identities: dict[str, str],
        files: tuple[RecordingFile, ...],
        interrupted: bool,
    ) -> None:
        recorded = tuple(
            RecordedFile(
                identity=identities.get(f.peer_id, f.peer_id),
                kind=f.kind,
                storage_uri=str(f.path),
                sha256=f.sha256,
                size_bytes=f.size_bytes,
                started_at=datetime.fromtimestamp(f.started_at_unix, tz=UTC),
                duration_s=f.duration_s,
            )
            for f in files
        )
        self._put(RecordingRecord(session_id, recorded, interrupted))

    async def _one_by_one(self, batch: list[SessionRecordOp]) -> None:
        """A bad record must not take its batch with it."""
        for op in batch:
            try:
                async with self._db.begin() as session:
                    await sessions.write_record(session, op, deadlines=self._deadlines)
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
                    await sessions.write_records(session, batch, deadlines=self._deadlines)
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


def resume_ttl(grace_s: float) -> timedelta:
    """Resume tokens outlive a long session; a new one comes with every welcome."""
    return timedelta(hours=12) + timedelta(seconds=grace_s)


def event_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in sessions.PRIVATE_KEYS}
