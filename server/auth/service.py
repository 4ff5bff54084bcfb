"""Sign-in, sign-out and session lookup. No aiohttp here: views pass what they read."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.models import WebSession
from server.auth.passwords import verify_password
from server.auth.permissions import StaffIdentity
from server.kernel.errors import InvalidCredentials
from server.org.models import Staff

#: last_seen_at is rewritten at most this often (every request would be a write).
TOUCH_INTERVAL = timedelta(seconds=60)


def _hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def identity_of(staff: Staff) -> StaffIdentity:
    return StaffIdentity(
        staff_id=staff.id,
        username=staff.username,
        display_name=staff.display_name,
        site_id=staff.site_id,
        department_id=staff.department_id,
        roles=staff.role_set,
    )


async def check_password(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    ip: str,
) -> Staff:
    """The first factor. An unknown name and a wrong password take the same path and time (the
    hash check runs against a dummy hash); throttling repeated failures is the edge's job, per
    (name, address) pair (server/kernel/throttle.py), never a lock on the account.

    Raises:
        InvalidCredentials: unknown user or wrong password (one message for both).
    """
    staff = await session.scalar(select(Staff).where(Staff.username == username))
    ok = await verify_password(staff.password_hash if staff else None, password)
    if staff is None or not ok or not staff.active:
        await record(
            session,
            actor="anonymous",
            action="auth.sign_in_failed",
            ip=ip,
            detail={"username": username[:64]},
        )
        raise InvalidCredentials("wrong username or password")
    return staff


async def open_session(
    session: AsyncSession, *, staff: Staff, ip: str, now: datetime
) -> tuple[str, StaffIdentity]:
    """A new session with a fresh random id (never one the client offered: no fixation)."""
    staff.failed_logins = 0
    staff.locked_until = None
    staff.last_login_at = now
    session_id = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id_hash=_hash_id(session_id), staff_id=staff.id, created_at=now, last_seen_at=now, ip=ip
        )
    )
    await record(session, actor=f"staff:{staff.id}", action="auth.sign_in", ip=ip)
    return session_id, identity_of(staff)


async def sign_in(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    ip: str,
    now: datetime,
) -> tuple[str, StaffIdentity]:
    """Password-only sign-in (for staff without a second factor)."""
    staff = await check_password(session, username=username, password=password, ip=ip)
    return await open_session(session, staff=staff, ip=ip, now=now)


async def load_session(
    session: AsyncSession, *, session_id: str, now: datetime, idle_timeout: timedelta
) -> StaffIdentity | None:
    """The signed-in staff member, or None when the session is unknown or idle too long."""
    row = await session.get(WebSession, _hash_id(session_id))
    if row is None:
        return None
    if now - row.last_seen_at > idle_timeout:
        await session.delete(row)
        await record(session, actor=f"staff:{row.staff_id}", action="auth.session_expired")
        return None
    staff = await session.get(Staff, row.staff_id)
    if staff is None or not staff.active:
        return None
    if now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
    return identity_of(staff)


async def sign_out(session: AsyncSession, *, session_id: str, ip: str) -> None:
    row = await session.get(WebSession, _hash_id(session_id))
    if row is not None:
        await record(session, actor=f"staff:{row.staff_id}", action="auth.sign_out", ip=ip)
        await session.execute(delete(WebSession).where(WebSession.id_hash == row.id_hash))
