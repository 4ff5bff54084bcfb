"""Retention (保存期限): a periodic job (server.kernel.jobs.Periodic) deletes a session's
recorded files once the retention period of its kind has passed since it ended; the signed
manifest is kept (made first if the session has none), the deletion audited per file.

Due: the session ended (state ended/cancelled/no_show) at `actual_end` (else the recording's
own start) plus the kind's days (ONEDOOR_RETENTION_DAYS_RECEPTION / _MEDIATION; 0 = forever),
or the recording's own `retention_until` if set; never a recording under `legal_hold`.

A session's composite MP4 (server.sessions.composite_jobs) is made from its originals and
never outlives them: it is deleted, audited the same way, once every original it was made from
has been deleted (so a legal hold or a later `retention_until` on any original keeps it too).

Several nodes may run it: a file is claimed by `UPDATE … SET deleted_at WHERE deleted_at IS
NULL` in the transaction that unlinks it and writes the audit entry, so each is deleted once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record as audit
from server.kernel.errors import AppError
from server.sessions.evidence.service import (
    FINISHED,
    EvidenceContext,
    composite_name,
    ensure_manifest,
    original_name,
)
from server.sessions.models import CallSession, Recording, SessionComposite, SessionKind
from server.sessions.recordings import RecordingNotFound, resolve_path

logger = logging.getLogger(__name__)

EVERY = timedelta(hours=1)
BATCH = 200


@dataclass(slots=True)
class RetentionReport:
    deleted: list[int] = field(default_factory=list)
    #: Sessions whose composite MP4 was deleted.
    composites_deleted: list[int] = field(default_factory=list)
    #: Sessions whose manifest could not be made (tampered file, TSA down): retried next run.
    skipped_sessions: list[int] = field(default_factory=list)


def _due(rec: Recording, call: CallSession, days: dict[SessionKind, int], now: datetime) -> bool:
    if rec.legal_hold:
        return False
    if rec.retention_until is not None:
        return rec.retention_until <= now
    keep = days.get(call.kind, 0)
    if keep <= 0:
        return False
    ended = call.actual_end or rec.started_at
    return ended + timedelta(days=keep) <= now


async def _candidates(
    session: AsyncSession, days: dict[SessionKind, int], now: datetime
) -> dict[int, list[int]]:
    """Recording ids due for deletion, by session (at most BATCH)."""
    due_now = [Recording.retention_until <= now]
    for kind, keep in days.items():
        if keep > 0:
            ended = func.coalesce(CallSession.actual_end, Recording.started_at)
            due_now.append(
                Recording.retention_until.is_(None)
                & (CallSession.kind == kind)
                & (ended <= now - timedelta(days=keep))
            )
    rows = await session.execute(
        select(Recording, CallSession)
        .join(CallSession, CallSession.id == Recording.session_id)
        .where(
            Recording.deleted_at.is_(None),
            Recording.legal_hold.is_(False),
            CallSession.state.in_(FINISHED),
            or_(*due_now),
        )
        .order_by(Recording.id)
        .limit(BATCH)
    )
    due: dict[int, list[int]] = {}
    for rec, call in rows.tuples():
        if _due(rec, call, days, now):  # the same rule, in Python: the SQL only narrows
            due.setdefault(call.id, []).append(rec.id)
    return due


_Stored = Recording | SessionComposite


async def _delete_file(
    db: async_sessionmaker[AsyncSession],
    ctx: EvidenceContext,
    model: type[Recording] | type[SessionComposite],
    row_id: int,
    now: datetime,
) -> _Stored | None:
    """Claim one stored file's row (`deleted_at`), unlink the file and audit it, in one
    transaction; the row, or None if another node claimed it first."""
    async with db.begin() as session:
        claimed = await session.execute(
            update(model)
            .where(model.id == row_id, model.deleted_at.is_(None))
            .values(deleted_at=now)
            .execution_options(synchronize_session=False)
        )
        if cast("CursorResult[Any]", claimed).rowcount != 1:
            return None  # another node deleted it
        row: _Stored | None = await session.get(model, row_id)
        assert row is not None
        try:
            path = resolve_path(ctx.recordings_dir, row.storage_uri)
        except RecordingNotFound:
            path = None  # gone already: record the deletion all the same
        if path is not None:
            await asyncio.to_thread(path.unlink)
        if isinstance(row, Recording):
            what = ("recording.retention_delete", "recording", row.id, original_name(row))
        else:
            what = (
                "composite.retention_delete",
                "call_session",
                row.session_id,
                composite_name(row),
            )
        await audit(
            session,
            actor="system",
            action=what[0],
            object_type=what[1],
            object_id=str(what[2]),
            detail={
                "session_id": row.session_id,
                "file": what[3],
                "sha256": row.sha256,
                "size_bytes": row.size_bytes,
                "file_was_present": path is not None,
            },
            at=now,
        )
        return row


async def _composites_due(session: AsyncSession) -> list[int]:
    """Composite ids whose every original has been deleted (at most BATCH)."""
    of_session = Recording.session_id == SessionComposite.session_id
    rows = await session.scalars(
        select(SessionComposite.id)
        .where(
            SessionComposite.deleted_at.is_(None),
            SessionComposite.storage_uri != "",
            exists().where(of_session, Recording.deleted_at.is_not(None)),
            ~exists().where(of_session, Recording.deleted_at.is_(None)),
        )
        .order_by(SessionComposite.id)
        .limit(BATCH)
    )
    return list(rows)


async def run_retention(
    db: async_sessionmaker[AsyncSession],
    *,
    ctx: EvidenceContext,
    days: dict[SessionKind, int],
    now: datetime,
) -> RetentionReport:
    """Delete every recorded file past its retention period (one batch), manifest first; then
    every composite whose originals are all gone."""
    report = RetentionReport()
    async with db() as session:
        due = await _candidates(session, days, now)
    for session_id, recording_ids in due.items():
        try:
            await ensure_manifest(db, session_id=session_id, ctx=ctx, now=now)
        except AppError as e:
            logger.warning("retention: session %s keeps its files: no manifest (%s)", session_id, e)
            report.skipped_sessions.append(session_id)
            continue
        for rid in recording_ids:
            if await _delete_file(db, ctx, Recording, rid, now) is not None:
                report.deleted.append(rid)
    async with db() as session:
        composites = await _composites_due(session)
    for cid in composites:
        row = await _delete_file(db, ctx, SessionComposite, cid, now)
        if row is not None:
            report.composites_deleted.append(row.session_id)
    return report


def days_from(reception: int, mediation: int) -> dict[SessionKind, int]:
    return {SessionKind.reception: reception, SessionKind.mediation: mediation}
