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
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.permissions import StaffIdentity
from server.cases.service import visible_case
from server.errors import Conflict, NotFound, PermissionDenied
from server.sessions.models import CallSession, Recording, SessionParticipant

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


async def load_session(
    session: AsyncSession, *, staff: StaffIdentity, session_id: int
) -> CallSession:
    """The call session, if it exists and its case (if any) is within the staff member's scope;
    otherwise the same 404."""
    row = await session.get(CallSession, session_id)
    if row is None:
        raise NotFound(f"session {session_id} does not exist")
    if row.case_id is not None:
        await visible_case(session, staff=staff, case_id=row.case_id)
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


def _sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, b"recording-grant:" + body, hashlib.sha256).hexdigest()


def issue_grant(secret: bytes, *, staff_id: int, session_id: int, now: float | None = None) -> str:
    body = json.dumps(
        {"s": staff_id, "c": session_id, "x": int((now or time.time()) + GRANT_TTL_S)},
        separators=(",", ":"),
    ).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + _sign(secret, body)


def read_grant(
    secrets: tuple[bytes, ...],
    token: str | None,
    *,
    staff_id: int,
    session_id: int,
    now: float | None = None,
) -> Grant:
    """The grant in `token` if it is signed by one of `secrets`, unexpired, and names this staff
    member and session.

    Raises:
        ReasonRequired: anything else (no reason stated recently for this session).
    """
    try:
        b64, sig = (token or "").rsplit(".", 1)
        body = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    except ValueError:
        raise ReasonRequired("no playback grant: state a reason first") from None
    if not any(hmac.compare_digest(sig.encode(), _sign(s, body).encode()) for s in secrets):
        raise ReasonRequired("invalid playback grant")
    try:
        data = json.loads(body)
        grant = Grant(staff_id=int(data["s"]), session_id=int(data["c"]), expires_at=int(data["x"]))
    except (ValueError, KeyError, TypeError):
        raise ReasonRequired("malformed playback grant") from None
    if grant.expires_at < (now or time.time()):
        raise ReasonRequired("playback grant expired: state the reason again")
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
