"""Playback of session recordings: list them, grant playback once a reason is stated, find the
file safely and check it has not changed since it was recorded.

DOMAIN §12: every playback is logged (who, when, why). The reason is stated once per visit; it
yields a short-lived grant, signed with the app secret and bound to the staff member and the
session, that the media URLs carry. Each media request is checked against it and audited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.permissions import Action, StaffIdentity
from server.cases.access import check_not_accused_unit, visible_case
from server.kernel.errors import Conflict, NotFound, PermissionDenied
from server.kernel.signing import Legacy, SignatureExpired, SignatureInvalid, Signer
from server.sessions.models import CallSession, ParticipantRole, Recording, SessionParticipant

GRANT_TTL_S = 30 * 60
REASON_MAX = 200
_HASH_CHUNK = 1 << 20
_CACHE_MAX = 1024


class RecordingNotFound(NotFound):
    code, message_zh = "recording_not_found", "录像不存在"


class ReasonRequired(PermissionDenied):
    code, message_zh = "recording_reason_required", "请先说明调阅原因"


class RecordingTampered(Conflict):
    code, message_zh = "recording_tampered", "录像文件校验失败，可能已被篡改，已记录审计"


@dataclass(frozen=True, slots=True)
class RecordingView:
    id: int
    identity: str
    display_name: str
    kind: str
    started_at: datetime
    duration_s: float
    size_bytes: int
    interrupted: bool
    sha256: str
    #: Seconds after the earliest recording of the session started (the player's t=0).
    offset_s: float

    @property
    def sha256_short(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True, slots=True)
class Grant:
    staff_id: int
    session_id: int
    expires_at: int


#: Who ran a session: their own session's recordings are theirs to play back.
RUNNING_ROLES = frozenset({ParticipantRole.host, ParticipantRole.mediator})


def ran_session(
    staff: StaffIdentity, call: CallSession, participants: list[SessionParticipant]
) -> bool:
    """The staff member created the session or took part in it as host or mediator."""
    return call.created_by_id == staff.staff_id or any(
        p.staff_id == staff.staff_id and p.role in RUNNING_ROLES for p in participants
    )


def may_play(
    staff: StaffIdentity, call: CallSession, participants: list[SessionParticipant]
) -> bool:
    """Playback scope, for a staff member who may already see the session: holders of
    `recording.play` (supervisors, department leaders, mediators), and the session's own host
    and mediator whatever their roles."""
    return staff.can(Action.recording_play) or ran_session(staff, call, participants)


async def load_session(
    session: AsyncSession, *, staff: StaffIdentity, session_id: int
) -> CallSession:
    """The call session, if it exists and the staff member may play its recordings: the
    session's own host or mediator (never in the unit a confidential case accuses), or a
    holder of `recording.play` within the case's scope. Otherwise 404 (no session, or its case
    is out of scope) or 403 (neither the session's own nor a holder of `recording.play`)."""
    row = await session.get(CallSession, session_id)
    if row is None:
        raise NotFound(f"session {session_id} does not exist")
    participants = list(
        await session.scalars(
            select(SessionParticipant).where(SessionParticipant.session_id == session_id)
        )
    )
    if ran_session(staff, row, participants):
        if row.case_id is not None:
            await check_not_accused_unit(session, staff=staff, case_id=row.case_id)
        return row
    if row.case_id is not None:  # out of the case's scope: 404 before any role check
        await visible_case(session, staff=staff, case_id=row.case_id)
    if not staff.can(Action.recording_play):
        raise PermissionDenied("only supervisors and the session's host or mediator may play it")
    return row


async def list_recordings(
    session: AsyncSession, *, staff: StaffIdentity, session_id: int
) -> tuple[CallSession, list[RecordingView]]:
    call = await load_session(session, staff=staff, session_id=session_id)
    rows = (
        await session.scalars(
            select(Recording)
            .where(Recording.session_id == session_id)
            .order_by(Recording.started_at, Recording.id)
        )
    ).all()
    names: dict[str, str] = {}
    for p in (
        await session.scalars(
            select(SessionParticipant)
            .where(SessionParticipant.session_id == session_id)
            .order_by(SessionParticipant.id)
        )
    ).all():
        if p.display_name and p.identity not in names:
            names[p.identity] = p.display_name
    t0 = min((r.started_at for r in rows), default=None)
    views = [
        RecordingView(
            id=r.id,
            identity=r.identity,
            display_name=names.get(r.identity, r.identity),
            kind=r.kind,
            started_at=r.started_at,
            duration_s=r.duration_s,
            size_bytes=r.size_bytes,
            interrupted=r.interrupted,
            sha256=r.sha256,
            offset_s=(r.started_at - t0).total_seconds() if t0 is not None else 0.0,
        )
        for r in rows
    ]
    return call, views


async def load_recording(
    session: AsyncSession, *, staff: StaffIdentity, recording_id: int
) -> Recording:
    row = await session.get(Recording, recording_id)
    if row is None:
        raise RecordingNotFound(f"recording {recording_id} does not exist")
    await load_session(session, staff=staff, session_id=row.session_id)
    return row


def clean_reason(raw: str) -> str:
    """The stated reason, one line, at most REASON_MAX characters ("" if none was given)."""
    return " ".join(raw.split())[:REASON_MAX]


# -- grants -----------------------------------------------------------------------------------


# LEGACY: grants from before server.kernel.signing (base64 JSON + HMAC(secret,
# "recording-grant:"+body), valid GRANT_TTL_S). Remove `_legacy` and LEGACY_UNTIL after
# 2026-12-04 (half an hour after the upgrade would do).
LEGACY_UNTIL = datetime(2026, 12, 4, tzinfo=UTC)


def _legacy(secrets: tuple[bytes, ...]) -> Legacy:
    def verify(token: str, now: datetime) -> dict[str, Any]:
        try:
            b64, sig = token.rsplit(".", 1)
            body = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except ValueError:
            raise SignatureInvalid("not a playback grant") from None
        if not any(
            hmac.compare_digest(
                sig, hmac.new(s, b"recording-grant:" + body, hashlib.sha256).hexdigest()
            )
            for s in secrets
        ):
            raise SignatureInvalid("invalid playback grant")
        try:
            data = json.loads(body)
            claims = {"s": int(data["s"]), "c": int(data["c"]), "exp": int(data["x"])}
        except (ValueError, KeyError, TypeError):
            raise SignatureInvalid("malformed playback grant") from None
        if claims["exp"] < now.timestamp():
            raise SignatureExpired("playback grant expired")
        return claims

    return Legacy(until=LEGACY_UNTIL, verify=verify)


def issue_grant(secret: bytes, *, staff_id: int, session_id: int, now: datetime) -> str:
    return Signer(secret).sign(
        "recording_grant",
        {"s": staff_id, "c": session_id},
        expires_at=now + timedelta(seconds=GRANT_TTL_S),
    )


def read_grant(
    secrets: tuple[bytes, ...],
    token: str | None,
    *,
    staff_id: int,
    session_id: int,
    now: datetime,
) -> Grant:
    """The grant in `token` if it is signed by one of `secrets` (the current one first),
    unexpired, and names this staff member and session.

    Raises:
        ReasonRequired: anything else (no reason stated recently for this session).
    """
    signer = Signer(secrets[0], previous=secrets[1:])
    try:
        data = signer.verify("recording_grant", token, now=now, legacy=_legacy(secrets))
    except SignatureExpired:
        raise ReasonRequired("playback grant expired: state the reason again") from None
    except SignatureInvalid:
        raise ReasonRequired("invalid playback grant") from None
    try:
        grant = Grant(
            staff_id=int(data["s"]), session_id=int(data["c"]), expires_at=int(data["exp"])
        )
    except (ValueError, KeyError, TypeError):
        raise ReasonRequired("malformed playback grant") from None
    if grant.staff_id != staff_id or grant.session_id != session_id:
        raise ReasonRequired("playback grant is for another staff member or session")
    return grant


# -- files ------------------------------------------------------------------------------------


def resolve_path(root: Path, storage_uri: str) -> Path:
    """The recording's file, only if it resolves (symlinks followed) to a regular file inside
    `root`. The stored value comes from the recorder, never from the request, but is checked
    all the same.

    Raises:
        RecordingNotFound: missing, not a file, or outside `root`.
    """
    base = root.resolve()
    try:
        candidate = Path(storage_uri)
        if not candidate.is_absolute():
            candidate = base / candidate
        path = candidate.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise RecordingNotFound("recording file is missing") from None
    if not path.is_relative_to(base) or not path.is_file():
        raise RecordingNotFound("recording file is outside the recordings directory")
    return path


_verified: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, *, sha256: str, size_bytes: int) -> None:
    """Check the file still has the recorded size and SHA-256 (blocking: run it in a thread).

    The digest is cached per (path, inode, size, mtime), so the many Range requests of one
    playback hash a large file once; any write to the file changes the key.

    Raises:
        RecordingTampered: the file differs from what was recorded.
    """
    st = os.stat(path)
    if st.st_size != size_bytes:
        raise RecordingTampered("recording size differs from the recorded size")
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    actual = _verified.get(key)
    if actual is None:
        actual = _sha256_file(path)
        _verified[key] = actual
        while len(_verified) > _CACHE_MAX:
            _verified.popitem(last=False)
    else:
        _verified.move_to_end(key)
    if not hmac.compare_digest(actual, sha256.lower()):
        raise RecordingTampered("recording SHA-256 differs from the recorded digest")


def content_type(kind: str) -> str:
    return "audio/webm" if kind == "audio" else "video/webm"
