"""A session's evidence manifest in the database: build it from the session record and the
files on disk, sign it, timestamp it, store it; and the package download (who may, audit).

When: the first time a package is asked for (after the session ended), and by the retention
job before it deletes a file, whichever comes first. The stored bytes are what later packages
carry; a new manifest (next `seq`) is made only when the session has files the newest one does
not list (a composite or 笔录 added later), never once a file has been deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record as audit
from server.auth.permissions import StaffIdentity
from server.cases import queries as cases
from server.kernel.errors import Conflict
from server.kernel.settings import Settings
from server.kernel.tsa import TsaConfig, request_timestamp
from server.org import service as org
from server.sessions import minutes
from server.sessions.evidence import manifest as mf
from server.sessions.evidence.keys import EvidenceKeys, public_pem
from server.sessions.models import (
    CallSession,
    ChatMessage,
    EvidenceManifest,
    Recording,
    SessionComposite,
    SessionParticipant,
    SessionState,
)
from server.sessions.record import _participants
from server.sessions.recordings import (
    RecordingTampered,
    clean_reason,
    load_session,
    resolve_path,
)

#: A manifest is made only once the session is over: its files no longer change.
FINISHED = frozenset({SessionState.ended, SessionState.cancelled, SessionState.no_show})


class SessionNotFinished(Conflict):
    code, message_zh = "evidence_session_not_finished", "会话尚未结束，不能生成证据包"


class EvidenceUnavailable(Conflict):
    code, message_zh = "evidence_unavailable", "录像已删除且没有保留清单，无法生成证据包"


@dataclass(frozen=True, slots=True)
class EvidenceContext:
    """What building a manifest needs from the deployment."""

    keys: EvidenceKeys
    recordings_dir: Path
    tz: str
    tsa: TsaConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EvidenceContext:
        tsa = None
        if settings.tsa_url and settings.tsa_cert is not None:
            tsa = TsaConfig(url=settings.tsa_url, certs_pem=settings.tsa_cert.read_bytes())
        return cls(
            keys=EvidenceKeys(settings.secret_bytes(), previous=settings.previous_secret_bytes()),
            recordings_dir=settings.effective_recordings_dir,
            tz=settings.timezone,
            tsa=tsa,
        )


@dataclass(frozen=True, slots=True)
class StoredManifest:
    session_id: int
    seq: int
    manifest: bytes
    signature: bytes
    key_id: str
    timestamp_token: bytes | None
    inline_files: dict[str, str]

    @property
    def files(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = mf.parse(self.manifest)["files"]
        return files


@dataclass(frozen=True, slots=True)
class PackagePlan:
    """Everything the package ZIP holds: the stored manifest and where each file comes from."""

    stored: StoredManifest
    public_key_pem: bytes
    tsa_certs_pem: bytes | None
    #: name -> the file on disk (originals, later composites and PDFs)
    paths: dict[str, Path] = field(default_factory=dict)
    #: name -> the bytes of a file kept in the database (the chat transcript)
    inline: dict[str, bytes] = field(default_factory=dict)
    #: Files the manifest lists that the retention job has deleted.
    deleted: list[str] = field(default_factory=list)
    #: The signed deletion record (deletions.json, deletions.sig) when files were deleted, and
    #: the public key that signed it if it is not the manifest's (after a key rotation).
    deletions: bytes | None = None
    deletions_signature: bytes | None = None
    deletions_key_pem: bytes | None = None


def _stored(row: EvidenceManifest) -> StoredManifest:
    return StoredManifest(
        session_id=row.session_id,
        seq=row.seq,
        manifest=bytes(row.manifest),
        signature=bytes(row.signature),
        key_id=row.key_id,
        timestamp_token=bytes(row.timestamp_token) if row.timestamp_token is not None else None,
        inline_files={str(k): str(v) for k, v in (row.inline_files or {}).items()},
    )


async def latest(session: AsyncSession, *, session_id: int) -> StoredManifest | None:
    row = await session.scalar(
        select(EvidenceManifest)
        .where(EvidenceManifest.session_id == session_id)
        .order_by(EvidenceManifest.seq.desc())
        .limit(1)
    )
    return _stored(row) if row is not None else None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def original_name(rec: Recording) -> str:
    """The package member name of a recording: unique per session, no path from the disk."""
    base = _UNSAFE.sub("_", Path(rec.storage_uri).name) or f"{rec.kind}.webm"
    return f"{mf.FileKind.original.folder}/{rec.id}-{base}"


CHAT_NAME = f"{mf.FileKind.chat.folder}/chat.json"


def chat_json(call: CallSession, messages: list[ChatMessage], tz: str) -> bytes:
    """The chat transcript as a UTF-8 JSON file (readable: indented, one key order)."""
    body = {
        "session_id": call.id,
        "room_id": call.room_id,
        "messages": [
            {
                "at": mf.when(m.at, tz),
                "sender": m.sender,
                "display_name": m.display_name,
                "text": m.text,
            }
            for m in messages
        ],
    }
    return (json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


async def _facts(session: AsyncSession, call: CallSession, tz: str) -> dict[str, Any]:
    parts = list(
        await session.scalars(
            select(SessionParticipant)
            .where(SessionParticipant.session_id == call.id)
            .order_by(SessionParticipant.id)
        )
    )
    site_ids = {p.site_id for p in parts if p.site_id is not None}
    if call.host_site_id is not None:
        site_ids.add(call.host_site_id)
    sites = await org.site_names(session, site_ids=site_ids)
    case_no = (
        await cases.case_number(session, case_id=call.case_id) if call.case_id is not None else None
    )
    return {
        "id": call.id,
        "room_id": call.room_id,
        "case_no": case_no or None,
        "kind": call.kind.value,
        "mode": call.mode.value,
        "title": call.title,
        "state": call.state.value,
        "outcome": call.outcome.value if call.outcome is not None else None,
        "recording_allowed": call.recording_allowed,
        "host_site": sites.get(call.host_site_id) if call.host_site_id else None,
        "times": {
            "scheduled_start": mf.when(call.planned_start, tz),
            "scheduled_end": mf.when(call.planned_end, tz),
            "actual_start": mf.when(call.actual_start, tz),
            "actual_end": mf.when(call.actual_end, tz),
        },
        "participants": [
            {
                "identity": p.identity,
                "identity_kind": p.identity_kind,
                "display_name": p.display_name,
                "role": p.role.value,
                "site": p.site_name,
                "joined_at": mf.when(p.joined_at, tz),
                "left_at": mf.when(p.left_at, tz),
                "no_show": p.no_show,
                "consent": p.consent,
                "consent_at": mf.when(p.recording_consent_at, tz),
                "refused_at": mf.when(p.recording_refused_at, tz),
            }
            for p in _participants(parts, sites)
        ],
    }


async def _recordings(session: AsyncSession, session_id: int) -> list[Recording]:
    return list(
        await session.scalars(
            select(Recording)
            .where(Recording.session_id == session_id)
            .order_by(Recording.started_at, Recording.id)
        )
    )


def _digest_original(root: Path, rec: Recording) -> mf.Digests:
    """The file's digests, after checking it is the file that was recorded (size, SHA-256)."""
    digests = mf.digest_file(resolve_path(root, rec.storage_uri))
    if digests.size != rec.size_bytes or digests.sha256 != rec.sha256.lower():
        raise RecordingTampered(f"recording {rec.id} differs from what was recorded")
    return digests


async def _draft(
    session: AsyncSession, call: CallSession, ctx: EvidenceContext, *, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """The canonical manifest of the session as it is now, and its inline files."""
    recs = await _recordings(session, call.id)
    if any(r.deleted_at is not None for r in recs):
        raise EvidenceUnavailable(f"session {call.id}: recordings deleted before any manifest")
    files = []
    for r in recs:
        digests = await asyncio.to_thread(_digest_original, ctx.recordings_dir, r)
        files.append(
            mf.file_entry(
                original_name(r),
                mf.FileKind.original,
                digests,
                recording_id=r.id,
                identity=r.identity,
                track=r.kind,
                started_at=mf.when(r.started_at, ctx.tz),
                duration_s=round(r.duration_s, 3),
                interrupted=r.interrupted,
                recorded_sha256=r.sha256.lower(),
            )
        )
    comp = await _composite(session, call.id)
    if comp is not None:
        digests = await asyncio.to_thread(_digest_composite, ctx.recordings_dir, comp)
        files.append(
            mf.file_entry(
                composite_name(comp),
                mf.FileKind.composite,
                digests,
                duration_s=comp.duration_s,
                made_at=mf.when(comp.sent_at, ctx.tz),
            )
        )
    minutes_pdf = await minutes.closed_pdf(session, call.id)
    if minutes_pdf is not None:
        files.append(
            mf.file_entry(
                minutes.pdf_name(call.id), mf.FileKind.transcript_pdf, mf.digest_bytes(minutes_pdf)
            )
        )
    messages = list(
        await session.scalars(
            select(ChatMessage)
            .where(ChatMessage.session_id == call.id)
            .order_by(ChatMessage.at, ChatMessage.id)
        )
    )
    chat = chat_json(call, messages, ctx.tz)
    files.append(mf.file_entry(CHAT_NAME, mf.FileKind.chat, mf.digest_bytes(chat)))
    body = {
        "format": mf.FORMAT,
        "generated_at": mf.when(now, ctx.tz),
        "timezone": ctx.tz,
        "signing_key_id": ctx.keys.key_id,
        "file_kinds": [k.value for k in mf.FileKind],
        "session": await _facts(session, call, ctx.tz),
        "files": files,
    }
    return mf.canonical(body), {CHAT_NAME: chat.decode()}


async def _composite(session: AsyncSession, session_id: int) -> SessionComposite | None:
    """The session's finished composite MP4 (server.sessions.composite_jobs), if any."""
    row: SessionComposite | None = await session.scalar(
        select(SessionComposite).where(
            SessionComposite.session_id == session_id,
            SessionComposite.status == "sent",
            SessionComposite.storage_uri != "",
        )
    )
    return row


def composite_name(row: SessionComposite) -> str:
    return f"{mf.FileKind.composite.folder}/session-{row.session_id}.mp4"


def _digest_composite(root: Path, row: SessionComposite) -> mf.Digests:
    digests = mf.digest_file(resolve_path(root, row.storage_uri))
    if digests.size != row.size_bytes or digests.sha256 != row.sha256.lower():
        raise RecordingTampered(f"composite of session {row.session_id} differs from what was made")
    return digests


def _listed(stored: StoredManifest) -> set[tuple[str, str]]:
    return {(str(f["name"]), str(f["sha256"])) for f in stored.files}


async def ensure_manifest(
    db: async_sessionmaker[AsyncSession], *, session_id: int, ctx: EvidenceContext, now: datetime
) -> StoredManifest:
    """The session's newest manifest, made (signed, timestamped, stored) if there is none yet
    or the session has files it does not list.

    Raises:
        SessionNotFinished: the session is not over.
        EvidenceUnavailable: files were deleted and no manifest was kept.
        RecordingTampered: a file differs from what was recorded (nothing is signed).
        TimestampFailed: a TSA is configured and gave no verifiable token.
    """
    async with db.begin() as session:
        call = await session.get(CallSession, session_id)
        if call is None:
            raise EvidenceUnavailable(f"no session {session_id}")
        if call.state not in FINISHED:
            raise SessionNotFinished(f"session {session_id} is {call.state.value}")
        stored = await latest(session, session_id=session_id)
        recs = await _recordings(session, session_id)
        wanted = {(original_name(r), r.sha256.lower()) for r in recs}
        comp = await _composite(session, session_id)
        if comp is not None:
            wanted.add((composite_name(comp), comp.sha256.lower()))
        minutes_pdf = await minutes.closed_pdf(session, session_id)
        if minutes_pdf is not None:
            wanted.add((minutes.pdf_name(session_id), hashlib.sha256(minutes_pdf).hexdigest()))
        gone = any(r.deleted_at is not None for r in recs) or (
            comp is not None and comp.deleted_at is not None
        )
        if stored is not None and (gone or wanted <= _listed(stored)):
            return stored
        data, inline = await _draft(session, call, ctx, now=now)
    signature = ctx.keys.sign(data)
    token = await request_timestamp(ctx.tsa, data) if ctx.tsa is not None else None
    try:
        async with db.begin() as session:
            seq = await session.scalar(
                select(func.coalesce(func.max(EvidenceManifest.seq), 0)).where(
                    EvidenceManifest.session_id == session_id
                )
            )
            row = EvidenceManifest(
                session_id=session_id,
                seq=int(seq or 0) + 1,
                manifest=data,
                signature=signature,
                key_id=ctx.keys.key_id,
                timestamp_token=token,
                inline_files=inline,
                created_at=now,
            )
            session.add(row)
            await audit(
                session,
                actor="system",
                action="session.evidence_manifest",
                object_type="call_session",
                object_id=str(session_id),
                detail={"seq": row.seq, "key_id": row.key_id, "timestamped": token is not None},
                at=now,
            )
            await session.flush()
            return _stored(row)
    except IntegrityError:  # another request stored this seq first: use theirs
        async with db.begin() as session:
            found = await latest(session, session_id=session_id)
        if found is None:
            raise
        return found


def _sign_deletions(
    plan: PackagePlan, ctx: EvidenceContext, deleted: list[dict[str, Any]], *, now: datetime
) -> PackagePlan:
    """The plan with the package's signed account of the files retention deleted
    (server.sessions.evidence.retention), bound to its manifest; signed now, current key."""
    stored = plan.stored
    record = mf.deletion_record(
        manifest=stored.manifest,
        session_id=stored.session_id,
        manifest_seq=stored.seq,
        signing_key_id=ctx.keys.key_id,
        made_at=mf.when(now, ctx.tz),
        deleted=deleted,
    )
    return dataclasses.replace(
        plan,
        deletions=record,
        deletions_signature=ctx.keys.sign(record),
        deletions_key_pem=public_pem(ctx.keys.public_key)
        if ctx.keys.key_id != stored.key_id
        else None,
    )


async def plan_download(
    db: async_sessionmaker[AsyncSession],
    *,
    staff: StaffIdentity,
    session_id: int,
    reason: str,
    ctx: EvidenceContext,
    now: datetime,
    ip: str = "",
) -> PackagePlan:
    """The package of a session for a staff member who may play its recordings (the same
    rule: recordings.load_session, 404 out of scope, 403 otherwise); audited as
    `session.evidence_download` with the stated reason.

    Raises:
        NotFound / PermissionDenied: as for playback.
        SessionNotFinished, EvidenceUnavailable, RecordingTampered, TimestampFailed.
    """
    async with db.begin() as session:
        await load_session(session, staff=staff, session_id=session_id)
    try:
        stored = await ensure_manifest(db, session_id=session_id, ctx=ctx, now=now)
    except RecordingTampered as exc:
        async with db.begin() as session:
            await audit(
                session,
                actor=staff.actor,
                action="recording.tampered",
                object_type="call_session",
                object_id=str(session_id),
                ip=ip,
                detail={"why": str(exc), "during": "evidence_download"},
                at=now,
            )
        raise
    async with db.begin() as session:
        recs = {original_name(r): r for r in await _recordings(session, session_id)}
        comp = await _composite(session, session_id)
        plan = PackagePlan(
            stored=stored,
            public_key_pem=public_pem(ctx.keys.public_keys[stored.key_id])
            if stored.key_id in ctx.keys.public_keys
            else public_pem(ctx.keys.public_key),
            tsa_certs_pem=ctx.tsa.certs_pem if ctx.tsa and stored.timestamp_token else None,
        )
        minutes_pdf = await minutes.closed_pdf(session, session_id)
        deleted: list[dict[str, Any]] = []
        for f in stored.files:
            name = str(f["name"])
            if minutes_pdf is not None and name == minutes.pdf_name(session_id):
                plan.inline[name] = minutes_pdf  # kept in the database, never deleted
                continue
            row: Recording | SessionComposite | None = recs.get(name)
            if row is None and comp is not None and name == composite_name(comp):
                row = comp
            if name in stored.inline_files:
                plan.inline[name] = stored.inline_files[name].encode()
            elif row is not None and row.deleted_at is not None:
                plan.deleted.append(name)
                deleted.append(
                    {
                        "name": name,
                        "sha256": str(f["sha256"]),
                        "size": f["size"],
                        "deleted_at": mf.when(row.deleted_at, ctx.tz),
                        "reason": "retention",
                    }
                )
            elif row is not None:
                plan.paths[name] = resolve_path(ctx.recordings_dir, row.storage_uri)
        if deleted:
            plan = _sign_deletions(plan, ctx, deleted, now=now)
        await audit(
            session,
            actor=staff.actor,
            action="session.evidence_download",
            object_type="call_session",
            object_id=str(session_id),
            ip=ip,
            detail={
                "reason": clean_reason(reason),
                "manifest_seq": stored.seq,
                "key_id": stored.key_id,
                "files": len(stored.files),
                "deleted": plan.deleted,
            },
            at=now,
        )
    return plan
