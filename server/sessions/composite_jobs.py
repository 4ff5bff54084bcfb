"""The composite job: after a session with recordings has ended, one MP4 of it is made
(server.sessions.composite) by the job runner (server.kernel.jobs), never during the call.

    Periodic "composite_scan" ─► a `session_composite` row (pending) for each finished session
                                 with recordings (none deleted) and no composite yet
    JobHandler "composites"   ─► claim ─► compose in a thread (progress and lease refreshed
                                 every few seconds) ─► digests stored ─► `sent` (done)
                                 a track that cannot be read ─► `failed` with the reason

The originals are only read; the composite goes beside them as `composite-<session>.mp4`.
States shown to staff (CompositeView.state): pending, running (percent), done, failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.permissions import StaffIdentity
from server.kernel.errors import NotFound
from server.kernel.jobs import PENDING, SENT, GiveUp, Periodic
from server.sessions import composite as comp
from server.sessions.evidence.manifest import digest_file
from server.sessions.models import (
    CallSession,
    Recording,
    SessionComposite,
    SessionParticipant,
    SessionState,
)
from server.sessions.recordings import (
    RecordingNotFound,
    RecordingTampered,
    load_session,
    resolve_path,
    verify_file,
)
from server.sessions.speech import SpeechMeter

SCAN_EVERY = timedelta(minutes=1)


class CompositeNotFound(NotFound):
    code, message_zh = "composite_not_found", "合成录像不存在或尚未完成"


HEARTBEAT_S = 5.0
LEASE = timedelta(minutes=5)
ENDED = (SessionState.ended,)

State = Literal["pending", "running", "done", "failed", "deleted"]


@dataclass(frozen=True, slots=True)
class CompositeView:
    state: State
    percent: int
    reason: str
    duration_s: float
    size_bytes: int
    sha256: str


def view(row: SessionComposite, *, now: datetime) -> CompositeView:
    state: State
    if row.deleted_at is not None:
        state = "deleted"  # by the retention job (server.sessions.evidence.retention)
    elif row.status == SENT:
        state = "done"
    elif row.status != PENDING:
        state = "failed"
    elif row.locked_until is not None and row.locked_until > now:
        state = "running"
    else:
        state = "pending"
    return CompositeView(
        state=state,
        percent=100 if state == "done" else row.progress,
        reason=row.last_error if state == "failed" else "",
        duration_s=row.duration_s,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
    )


async def get(session: AsyncSession, *, session_id: int) -> SessionComposite | None:
    row: SessionComposite | None = await session.scalar(
        select(SessionComposite).where(SessionComposite.session_id == session_id)
    )
    return row


async def get_many(session: AsyncSession, *, session_ids: list[int]) -> dict[int, SessionComposite]:
    """The composite jobs of `session_ids` (one query), by session id."""
    if not session_ids:
        return {}
    rows = await session.scalars(
        select(SessionComposite).where(SessionComposite.session_id.in_(session_ids))
    )
    return {r.session_id: r for r in rows}


async def enqueue(session: AsyncSession, *, session_id: int, now: datetime) -> bool:
    """A pending composite job for the session unless it has one (True if one was added)."""
    if await get(session, session_id=session_id) is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(SessionComposite(session_id=session_id, created_at=now, due_at=now))
    except IntegrityError:  # another node queued it first
        return False
    return True


async def scan(db: async_sessionmaker[AsyncSession], *, now: datetime) -> int:
    """Queue a composite for every ended session with recordings, none of them deleted by
    retention, and no composite row yet. Returns how many were queued."""
    has_recording = exists().where(Recording.session_id == CallSession.id)
    has_deleted = exists().where(
        Recording.session_id == CallSession.id, Recording.deleted_at.is_not(None)
    )
    has_composite = exists().where(SessionComposite.session_id == CallSession.id)
    async with db.begin() as session:
        ids = (
            await session.scalars(
                select(CallSession.id)
                .where(CallSession.state.in_(ENDED), has_recording, ~has_deleted, ~has_composite)
                .order_by(CallSession.id)
                .limit(100)
            )
        ).all()
        n = 0
        for sid in ids:
            n += await enqueue(session, session_id=sid, now=now)
    return n


def periodic(db: async_sessionmaker[AsyncSession], *, every: timedelta = SCAN_EVERY) -> Periodic:
    async def run(now: datetime) -> None:
        await scan(db, now=now)

    return Periodic("composite_scan", every=every, run=run)


def _inputs(
    root: Path, recs: list[Recording], parts: list[SessionParticipant]
) -> tuple[list[comp.Track], list[comp.Person]]:
    """The tracks (each checked against its recorded size and SHA-256) and the people."""
    tracks = []
    for r in recs:
        path = resolve_path(root, r.storage_uri)
        verify_file(path, sha256=r.sha256, size_bytes=r.size_bytes)
        kind = "audio" if r.kind == "audio" else "video"
        tracks.append(comp.Track(path, r.identity, kind, r.started_at, r.duration_s))
    people: dict[str, comp.Person] = {}
    with_tracks = {r.identity for r in recs}
    for p in parts:
        if p.identity in with_tracks and p.identity not in people:
            people[p.identity] = comp.Person(p.identity, p.display_name or p.identity, p.role.value)
    return tracks, list(people.values())


class CompositeJobs:
    """JobHandler of `session_composite` (server.kernel.jobs)."""

    name = "composites"
    model = SessionComposite

    def __init__(
        self,
        *,
        recordings_dir: Path,
        tz: str,
        heartbeat_s: float = HEARTBEAT_S,
        lease: timedelta = LEASE,
    ) -> None:
        self.recordings_dir = recordings_dir
        self.tz = ZoneInfo(tz)
        self.heartbeat_s = heartbeat_s
        self.lease = lease

    async def perform(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, *, now: datetime
    ) -> None:
        async with sessionmaker.begin() as session:
            job = await session.get(SessionComposite, job_id)
            if job is None:
                raise GiveUp("composite job vanished")
            session_id = job.session_id
            job.started_at, job.progress = now, 0
            recs = list(
                await session.scalars(
                    select(Recording)
                    .where(Recording.session_id == session_id)
                    .order_by(Recording.started_at, Recording.id)
                )
            )
            parts = list(
                await session.scalars(
                    select(SessionParticipant)
                    .where(SessionParticipant.session_id == session_id)
                    .order_by(SessionParticipant.id)
                )
            )
        if not recs:
            raise GiveUp("会话没有录像")
        if any(r.deleted_at is not None for r in recs):
            raise GiveUp("录像已按保存期限删除")
        try:
            tracks, people = await asyncio.to_thread(_inputs, self.recordings_dir, recs, parts)
        except (RecordingNotFound, RecordingTampered) as e:
            raise GiveUp(f"原始录像不可用：{e}", status="failed") from None
        out = comp.output_path(tracks[0].path.parent, session_id)
        done = 0.0
        stop = threading.Event()

        def progress(fraction: float) -> None:
            nonlocal done
            done = fraction
            if stop.is_set():  # the runner is stopping: end the thread too (no output left)
                raise comp.CompositeCancelled("composite cancelled")

        meter = SpeechMeter()
        task = asyncio.create_task(
            asyncio.to_thread(
                comp.compose, tracks, people, out, tz=self.tz, progress=progress, speech=meter
            )
        )
        try:
            while not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), self.heartbeat_s)
                if not task.done():
                    await self._heartbeat(sessionmaker, job_id, int(done * 100))
            duration = task.result()
        except comp.CompositeError as e:
            raise GiveUp(f"原始录像无法解码：{e}", status="failed") from None
        finally:
            stop.set()
        digests = await asyncio.to_thread(digest_file, out)
        root = self.recordings_dir.resolve()
        uri = (
            str(out.resolve().relative_to(root)) if out.resolve().is_relative_to(root) else str(out)
        )
        async with sessionmaker.begin() as session:
            await session.execute(
                update(SessionComposite)
                .where(SessionComposite.id == job_id)
                .values(
                    storage_uri=uri,
                    sha256=digests.sha256,
                    size_bytes=digests.size,
                    duration_s=round(duration, 3),
                    progress=100,
                    speakers={
                        # output time 0 is the earliest track's start
                        "origin": min(t.started_at for t in tracks).isoformat(),
                        "tracks": {k: [list(i) for i in v] for k, v in meter.intervals().items()},
                    },
                )
            )

    async def _heartbeat(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, percent: int
    ) -> None:
        """Record the progress and keep the lease while composing (a long session takes longer
        than one lease)."""
        async with sessionmaker.begin() as session:
            await session.execute(
                update(SessionComposite)
                .where(SessionComposite.id == job_id, SessionComposite.status == PENDING)
                .values(progress=percent, locked_until=datetime.now(UTC) + self.lease)
            )

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        """Nothing depends on a composite's status (the session page reads the row)."""


def file_path(recordings_dir: Path, row: SessionComposite) -> Path:
    """The composite's file (checked to be inside the recordings directory)."""
    return resolve_path(recordings_dir, row.storage_uri)


async def current(session: AsyncSession, *, session_id: int, now: datetime) -> CompositeView | None:
    """The session's composite job as staff see it (None before one was queued)."""
    row = await get(session, session_id=session_id)
    return None if row is None else view(row, now=now)


@dataclass(frozen=True, slots=True)
class CompositeFile:
    session_id: int
    path: Path
    sha256: str
    size_bytes: int


async def playable_file(
    session: AsyncSession, *, staff: StaffIdentity, session_id: int, recordings_dir: Path
) -> CompositeFile:
    """The finished composite, for a staff member who may play the session's recordings (the
    same rule and errors as recordings.load_session).

    Raises:
        NotFound / PermissionDenied: as for playback.
        CompositeNotFound: no finished composite (or its file is missing).
    """
    await load_session(session, staff=staff, session_id=session_id)
    row = await get(session, session_id=session_id)
    if row is None or row.status != SENT or not row.storage_uri or row.deleted_at is not None:
        raise CompositeNotFound(f"session {session_id} has no finished composite")
    try:
        path = resolve_path(recordings_dir, row.storage_uri)
    except RecordingNotFound:
        raise CompositeNotFound(f"session {session_id}: composite file missing") from None
    return CompositeFile(session_id, path, row.sha256, row.size_bytes)


async def speaker_timeline(
    session: AsyncSession, *, session_id: int
) -> tuple[datetime, dict[str, list[tuple[float, float]]]] | None:
    """Who spoke when, as the composite job measured it: (when output second 0 was, identity
    → [(start s, end s)]); None before a composite was made."""
    row = await get(session, session_id=session_id)
    if row is None or not row.speakers:
        return None
    origin = datetime.fromisoformat(str(row.speakers["origin"]))
    tracks = {
        str(k): [(float(a), float(b)) for a, b in v] for k, v in row.speakers["tracks"].items()
    }
    return origin, tracks
