"""The session record (会话记录): one reception or mediation as its case file keeps it — the
case, kind, planned and actual times, room and host site, host and mediator, every participant
with role, site, identity kind, attendance and consent answers, the recordings with their
SHA-256 and playback link, the chat transcript and the outcome.

Who may read it is the case's rule (server.cases.access: the same 404 as for a missing case,
so nothing of a confidential case leaks to the unit it accuses), and the session's own host
and mediator (outside the accused unit); a session without a case is read by those who took
part, created it, or see every case. Every read is audited like a read of case content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record as audit
from server.auth.permissions import Action, StaffIdentity
from server.cases import access as cases_access
from server.cases import agreements
from server.cases import queries as cases
from server.kernel.db import utcnow
from server.org import service as org
from server.sessions import composite_jobs
from server.sessions import participants as participant_rows
from server.sessions.errors import SessionNotFound
from server.sessions.models import (
    CallSession,
    ChatMessage,
    ParticipantRole,
    Recording,
    SessionComposite,
    SessionKind,
    SessionOutcome,
    SessionParticipant,
    SessionState,
)
from server.sessions.recordings import may_play, ran_session

#: A session whose files no longer change: its evidence package may be made.
_OVER = frozenset({SessionState.ended, SessionState.cancelled, SessionState.no_show})

#: `identity_kind`: a staff account, or a guest admitted by a verified (signed, recorded,
#: unrevoked) join link.
IdentityKind = Literal["staff", "guest"]


class LinkSummary(BaseModel, frozen=True):
    """How a participant's downlink was (the SFU's samples, docs/api.md#session-record)."""

    grade: Literal["good", "fair", "poor"]
    seconds: float
    median_kbps: int | None = None
    min_kbps: int | None = None
    loss_pct: float | None = None
    max_loss_pct: float | None = None
    video_paused_s: float = 0.0


class ParticipantEntry(BaseModel, frozen=True):
    identity: str
    identity_kind: IdentityKind
    display_name: str
    role: ParticipantRole
    #: A party's or agent's side in a mediation ("applicant" / "respondent").
    side: str | None = None
    staff_id: int | None = None
    site_id: int | None = None
    site_name: str | None = None
    invite_status: str = "none"
    #: First time in the room and last time out (None: still in, or never came).
    joined_at: datetime | None = None
    left_at: datetime | None = None
    no_show: bool = False
    recording_consent_at: datetime | None = None
    recording_refused_at: datetime | None = None
    #: The participant's link while in the room (media.quality.LinkQuality merged over its
    #: connections): grade good/fair/poor, median estimate, loss, video paused time.
    quality: LinkSummary | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def consent(self) -> Literal["given", "refused", "none"]:
        """The participant's last answer to the recording question."""
        given, refused = self.recording_consent_at, self.recording_refused_at
        if given is not None and (refused is None or given >= refused):
            return "given"
        return "refused" if refused is not None else "none"


class RecordingEntry(BaseModel, frozen=True):
    id: int
    identity: str
    display_name: str
    kind: str
    started_at: datetime
    duration_s: float
    size_bytes: int
    sha256: str
    interrupted: bool
    #: The playback page (reason and audit first); None for a reader who may not play it.
    playback_url: str | None = None
    #: When the retention job deleted the file (its digest and the manifest are kept).
    deleted_at: datetime | None = None


class CompositeEntry(BaseModel, frozen=True):
    """The session's composite MP4 (server.sessions.composite_jobs): its job's progress."""

    state: Literal["pending", "running", "done", "failed", "deleted"]
    percent: int = 0
    #: Why it failed (Chinese, from the job), "" otherwise.
    reason: str = ""
    duration_s: float = 0.0
    size_bytes: int = 0
    sha256: str = ""
    #: The playback page (reason and audit first) where it plays and downloads; None for a
    #: reader who may not play recordings or before it is done.
    playback_url: str | None = None


class ChatLine(BaseModel, frozen=True):
    at: datetime
    display_name: str
    text: str


class SessionRecord(BaseModel, frozen=True):
    session_id: int
    case_id: int | None = None
    case_no: str | None = None
    kind: SessionKind
    state: SessionState
    title: str
    room_id: str
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    #: actual_end - actual_start, once both are known.
    duration_s: float | None = None
    host_site_id: int | None = None
    host_site_name: str | None = None
    host_names: list[str] = Field(default_factory=list)
    mediator_names: list[str] = Field(default_factory=list)
    participants: list[ParticipantEntry] = Field(default_factory=list)
    recording_allowed: bool = False
    recordings: list[RecordingEntry] = Field(default_factory=list)
    #: The playback page of all the session's recordings, for a reader who may play them.
    recordings_url: str | None = None
    #: Every recorded file was deleted at the end of its retention period (manifest kept).
    recordings_deleted: bool = False
    #: The composite MP4 and its job, once one was queued (after the session ended).
    composite: CompositeEntry | None = None
    #: The evidence package download (POST with a reason), for a reader who may play the
    #: recordings of a session that is over.
    evidence_url: str | None = None
    chat_count: int = 0
    #: The transcript, on the session's own page (None in the case's list).
    chat: list[ChatLine] | None = None
    outcome: SessionOutcome | None = None
    #: The mediation agreements filed under the session (the outcome "agreement" names them).
    agreement_ids: list[int] = Field(default_factory=list)
    record_url: str


async def _visible_row(
    session: AsyncSession, *, viewer: StaffIdentity, session_id: int
) -> CallSession:
    """The session, if the viewer may see its case; the same 404 for missing and hidden."""
    row = await session.get(CallSession, session_id)
    if row is None:
        raise SessionNotFound(f"no session {session_id}")
    if row.case_id is not None:
        try:
            await cases_access.check_visible(session, staff=viewer, case_id=row.case_id)
        except cases_access.CaseNotFound:
            # the session's own mediator or host reads its record (and records its outcome)
            # as they play its recordings, unless they belong to the unit the case accuses
            parts = list(
                await session.scalars(
                    select(SessionParticipant).where(SessionParticipant.session_id == row.id)
                )
            )
            if not ran_session(viewer, row, parts):
                raise SessionNotFound(f"no session {session_id}") from None
            try:
                await cases_access.check_not_accused_unit(
                    session, staff=viewer, case_id=row.case_id
                )
            except cases_access.CaseNotFound:
                raise SessionNotFound(f"no session {session_id}") from None
    return row


async def _took_part(session: AsyncSession, row: CallSession, viewer: StaffIdentity) -> bool:
    """A session filed under no case: its record (chat included) is for those who created it
    or took part, and for supervisors who see every case."""
    if viewer.can(Action.case_view_all) or row.created_by_id == viewer.staff_id:
        return True
    found = await session.scalar(
        select(SessionParticipant.id)
        .where(
            SessionParticipant.session_id == row.id,
            SessionParticipant.staff_id == viewer.staff_id,
        )
        .limit(1)
    )
    return found is not None


async def _guests_in_clear(
    session: AsyncSession,
    row: CallSession,
    viewer: StaffIdentity,
    parts: list[SessionParticipant] | None = None,
    petitioner_in_clear: dict[int, bool] | None = None,
) -> bool:
    """Whether the viewer may read the names residents (guests) gave in the session: those
    who may know the case's petitioner (for an accusation, the accuser: first receiver, named
    handlers, supervisors), and whoever ran the session (they met the guests; never one of
    the accused unit, who gets a 404 first); a session under no case, those who may read it.
    `parts`: the session's participants if already loaded; `petitioner_in_clear`: the answer
    per case, kept across the sessions of one list."""
    if row.case_id is None:
        return True
    if parts is None:
        parts = list(
            await session.scalars(
                select(SessionParticipant).where(SessionParticipant.session_id == row.id)
            )
        )
    if ran_session(viewer, row, parts):
        return True
    known = petitioner_in_clear if petitioner_in_clear is not None else {}
    if row.case_id not in known:
        known[row.case_id] = await cases_access.petitioner_in_clear(
            session, staff=viewer, case_id=row.case_id
        )
    return known[row.case_id]


async def check_visible(session: AsyncSession, *, viewer: StaffIdentity, session_id: int) -> bool:
    """Raise SessionNotFound (404 `room_not_found`) unless the viewer may see the session's
    case: for the scheduling API and pages, which show a session's title and guests. Returns
    whether the guests' names may be shown in clear (else `cases_access.masked_name`)."""
    row = await _visible_row(session, viewer=viewer, session_id=session_id)
    return await _guests_in_clear(session, row, viewer)


async def hidden_sessions(
    session: AsyncSession, *, viewer: StaffIdentity, session_ids: Iterable[int]
) -> set[int]:
    """Of these sessions, the ones whose case the viewer may not see (a calendar shows them
    as busy time, without title or link)."""
    ids = set(session_ids)
    if not ids:
        return set()
    rows = await session.execute(
        select(CallSession.id, CallSession.case_id).where(
            CallSession.id.in_(ids), CallSession.case_id.is_not(None)
        )
    )
    visible: dict[int, bool] = {}
    hidden = set()
    for session_id, case_id in rows:
        if case_id not in visible:
            try:
                await cases_access.check_visible(session, staff=viewer, case_id=case_id)
                visible[case_id] = True
            except cases_access.CaseNotFound:
                visible[case_id] = False
        if not visible[case_id]:
            hidden.add(session_id)
    return hidden


def _participants(
    rows: list[SessionParticipant], site_names: dict[int, str]
) -> list[ParticipantEntry]:
    """One entry per identity: a reconnect writes a new row, the record shows the person once
    (first in, last out; the latest consent answer)."""
    grouped: dict[str, list[SessionParticipant]] = {}
    for r in rows:
        grouped.setdefault(r.identity, []).append(r)
    out = []
    for identity, group in grouped.items():
        first = group[0]
        joins = [g.joined_at for g in group if g.joined_at is not None]
        still_in = any(g.joined_at is not None and g.left_at is None for g in group)
        lefts = [g.left_at for g in group if g.left_at is not None]
        consents = [g.recording_consent_at for g in group if g.recording_consent_at]
        refusals = [g.recording_refused_at for g in group if g.recording_refused_at]
        quality: dict[str, Any] | None = None
        for g in group:
            if g.quality:
                quality = participant_rows.merge_quality(quality, g.quality)
        out.append(
            ParticipantEntry(
                identity=identity,
                identity_kind="staff" if first.staff_id is not None else "guest",
                display_name=next((g.display_name for g in group if g.display_name), identity),
                role=first.role,
                side=next((g.side for g in group if g.side), None),
                staff_id=first.staff_id,
                site_id=first.site_id,
                site_name=site_names.get(first.site_id) if first.site_id else None,
                invite_status=group[-1].invite_status,
                joined_at=min(joins, default=None),
                left_at=None if still_in else max(lefts, default=None),
                no_show=any(g.no_show for g in group) and not joins,
                recording_consent_at=max(consents, default=None),
                recording_refused_at=max(refusals, default=None),
                quality=LinkSummary.model_validate(quality) if quality else None,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What `_build` reads beyond the session rows, loaded once for all of them: a case's list
    made about nine queries per session, and took 5.2 s for a case with some 70 sessions on a
    loaded PostgreSQL (the long fuzz run, #21)."""

    parts: dict[int, list[SessionParticipant]]
    recordings: dict[int, list[Recording]]
    chat_counts: dict[int, int]
    jobs: dict[int, SessionComposite]
    site_names: dict[int, str]
    agreement_ids: dict[int, list[int]]
    petitioner_in_clear: dict[int, bool] = field(default_factory=dict)


async def _load(session: AsyncSession, rows: list[CallSession]) -> _Loaded:
    ids = [r.id for r in rows]
    parts: dict[int, list[SessionParticipant]] = {i: [] for i in ids}
    recordings: dict[int, list[Recording]] = {i: [] for i in ids}
    counts: dict[int, int] = {}
    if ids:
        for p in await session.scalars(
            select(SessionParticipant)
            .where(SessionParticipant.session_id.in_(ids))
            .order_by(SessionParticipant.id)
        ):
            parts[p.session_id].append(p)
        for r in await session.scalars(
            select(Recording)
            .where(Recording.session_id.in_(ids))
            .order_by(Recording.started_at, Recording.id)
        ):
            recordings[r.session_id].append(r)
        for session_id, n in await session.execute(
            select(ChatMessage.session_id, func.count())
            .where(ChatMessage.session_id.in_(ids))
            .group_by(ChatMessage.session_id)
        ):
            counts[session_id] = int(n)
    site_ids = {p.site_id for group in parts.values() for p in group if p.site_id is not None}
    site_ids |= {r.host_site_id for r in rows if r.host_site_id is not None}
    return _Loaded(
        parts=parts,
        recordings=recordings,
        chat_counts=counts,
        jobs=await composite_jobs.get_many(session, session_ids=ids),
        site_names=await org.site_names(session, site_ids=site_ids),
        agreement_ids=await agreements.sessions_agreement_ids(session, session_ids=ids),
    )


async def _build(
    session: AsyncSession,
    row: CallSession,
    *,
    viewer: StaffIdentity,
    case_no: str | None,
    with_chat: bool,
    loaded: _Loaded,
) -> SessionRecord:
    parts = loaded.parts[row.id]
    entries = _participants(parts, loaded.site_names)
    #: guests (residents) by identity, when the viewer may not know who they are
    guests = (
        set()
        if await _guests_in_clear(session, row, viewer, parts, loaded.petitioner_in_clear)
        else {p.identity for p in parts if p.staff_id is None}
    )
    if guests:
        entries = [
            e.model_copy(update={"display_name": cases_access.masked_name(e.display_name)})
            if e.identity in guests
            else e
            for e in entries
        ]
    names = {e.identity: e.display_name for e in entries}
    hosts = [e.display_name for e in entries if e.role == ParticipantRole.host]
    if not hosts and row.created_by_id is not None:
        creator = await org.staff_name(session, staff_id=row.created_by_id)
        hosts = [creator] if creator else []
    playable = may_play(viewer, row, parts)
    recordings = [
        RecordingEntry(
            id=r.id,
            identity=r.identity,
            display_name=names.get(r.identity, r.identity),
            kind=r.kind,
            started_at=r.started_at,
            duration_s=r.duration_s,
            size_bytes=r.size_bytes,
            sha256=r.sha256,
            interrupted=r.interrupted,
            playback_url=f"/sessions/{row.id}/recordings" if playable else None,
            deleted_at=r.deleted_at,
        )
        for r in loaded.recordings[row.id]
    ]
    composite = None
    job = loaded.jobs.get(row.id)
    if job is not None:
        cv = composite_jobs.view(job, now=utcnow())
        composite = CompositeEntry(
            state=cv.state,
            percent=cv.percent,
            reason=cv.reason,
            duration_s=cv.duration_s,
            size_bytes=cv.size_bytes,
            sha256=cv.sha256,
            playback_url=f"/sessions/{row.id}/recordings#composite"
            if playable and cv.state == "done"
            else None,
        )
    chat_count = loaded.chat_counts.get(row.id, 0)
    chat = None
    if with_chat:
        chat = [
            ChatLine(
                at=c.at,
                display_name=cases_access.masked_name(c.display_name)
                if c.sender in guests
                else c.display_name,
                text=c.text,
            )
            for c in await session.scalars(
                select(ChatMessage)
                .where(ChatMessage.session_id == row.id)
                .order_by(ChatMessage.at, ChatMessage.id)
            )
        ]
    duration = (
        (row.actual_end - row.actual_start).total_seconds()
        if row.actual_start is not None and row.actual_end is not None
        else None
    )
    return SessionRecord(
        session_id=row.id,
        case_id=row.case_id,
        case_no=case_no,
        kind=row.kind,
        state=row.state,
        title=row.title,
        room_id=row.room_id,
        scheduled_start=row.planned_start,
        scheduled_end=row.planned_end,
        actual_start=row.actual_start,
        actual_end=row.actual_end,
        duration_s=duration,
        host_site_id=row.host_site_id,
        host_site_name=loaded.site_names.get(row.host_site_id) if row.host_site_id else None,
        host_names=hosts,
        mediator_names=[e.display_name for e in entries if e.role == ParticipantRole.mediator],
        participants=entries,
        recording_allowed=row.recording_allowed,
        recordings=recordings,
        recordings_url=f"/sessions/{row.id}/recordings" if playable and recordings else None,
        recordings_deleted=bool(recordings) and all(r.deleted_at for r in recordings),
        composite=composite,
        evidence_url=f"/sessions/{row.id}/evidence" if playable and row.state in _OVER else None,
        chat_count=chat_count,
        chat=chat,
        outcome=row.outcome,
        agreement_ids=loaded.agreement_ids[row.id],
        record_url=f"/sessions/{row.id}/record",
    )


async def record(
    session: AsyncSession, *, session_id: int, viewer: StaffIdentity, ip: str = ""
) -> SessionRecord:
    """One session's full record, chat transcript included; the read is audited.

    Raises:
        SessionNotFound: no such session, or its case is hidden from the viewer.
    """
    row = await _visible_row(session, viewer=viewer, session_id=session_id)
    if row.case_id is None and not await _took_part(session, row, viewer):
        raise SessionNotFound(f"no session {session_id}")
    case_no = (
        await cases.case_number(session, case_id=row.case_id) if row.case_id is not None else None
    )
    await audit(
        session,
        actor=viewer.actor,
        action="session.record_view",
        object_type="call_session",
        object_id=str(session_id),
        ip=ip,
        detail={"case_id": row.case_id},
    )
    return await _build(
        session,
        row,
        viewer=viewer,
        case_no=case_no or None,
        with_chat=True,
        loaded=await _load(session, [row]),
    )


async def records_for_case(
    session: AsyncSession, *, case_id: int, viewer: StaffIdentity, ip: str = ""
) -> list[SessionRecord]:
    """Every session of the case, earliest first (without the chat transcripts); the read is
    audited like a read of the case file.

    Raises:
        CaseNotFound: no such case, or the viewer may not see it (the same 404).
    """
    await cases_access.check_visible(session, staff=viewer, case_id=case_id)
    await audit(
        session,
        actor=viewer.actor,
        action="case.sessions_view",
        object_type="case",
        object_id=str(case_id),
        ip=ip,
    )
    case_no = await cases.case_number(session, case_id=case_id)
    rows = list(
        await session.scalars(
            select(CallSession).where(CallSession.case_id == case_id).order_by(CallSession.id)
        )
    )
    loaded = await _load(session, rows)
    return [
        await _build(
            session, r, viewer=viewer, case_no=case_no or None, with_chat=False, loaded=loaded
        )
        for r in rows
    ]
