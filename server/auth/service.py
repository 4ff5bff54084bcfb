"""Sign-in, sign-out and session lookup. No aiohttp here: views pass what they read."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.models import WebSession
from server.auth.passwords import check_password_policy, hash_password, verify_password
from server.auth.permissions import StaffIdentity, check_role_combination
from server.kernel.errors import AppError, Conflict, InvalidCredentials, InvalidInput, NotFound
from server.org.models import ADMIN_ROLES, Role, Staff, StaffRole

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
        must_change_password=staff.must_change_password,
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


class PasswordChangeRequired(AppError):
    """Signed in with a password an administrator set: nothing but /account/password and
    sign-out answers until the staff member chooses their own."""

    code, http_status, message_zh = (
        "password_change_required",
        403,
        "请先修改初始密码（管理员设置的密码须在首次登录时修改）",
    )


class CurrentPasswordWrong(AppError):
    code, http_status, message_zh = "current_password_wrong", 422, "当前密码不正确"


class PasswordUnchanged(AppError):
    code, http_status, message_zh = (
        "password_unchanged",
        422,
        "新密码不能与当前密码相同",
    )


async def change_password(
    session: AsyncSession, *, staff_id: int, current: str, new: str, ip: str
) -> None:
    """The staff member chooses their own password (required after an administrator set one:
    `must_change_password` is cleared). The current password is checked again, the new one
    must meet the policy and differ from the current one.

    Raises:
        CurrentPasswordWrong, PasswordUnchanged, InvalidInput (policy, field "new_password").
    """
    staff = await session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise NotFound(f"staff {staff_id} does not exist")
    if not await verify_password(staff.password_hash, current):
        await record(
            session, actor=f"staff:{staff_id}", action="auth.password_change_failed", ip=ip
        )
        raise CurrentPasswordWrong("the current password is wrong")
    try:
        check_password_policy(new)
    except ValueError as e:
        raise InvalidInput(str(e), field="new_password") from e
    if new == current:
        raise PasswordUnchanged("the new password is the current one")
    forced = staff.must_change_password
    staff.password_hash = await hash_password(new)
    staff.must_change_password = False
    await session.flush()
    await record(
        session,
        actor=f"staff:{staff_id}",
        action="auth.password_changed",
        object_type="staff",
        object_id=str(staff_id),
        ip=ip,
        detail={"forced": forced},
    )


# --- security administration (sec_admin: roles.manage) -------------------------------------


class RoleCombinationRefused(Conflict):
    """Two admin roles, or an admin role beside a business role (三员分立)."""

    code, http_status, message_zh = (
        "role_combination_refused",
        409,
        "角色组合不允许：管理员角色不能兼任，也不能与业务角色同时持有",
    )


class RoleNotGrantable(AppError):
    code, http_status, message_zh = (
        "role_not_grantable",
        422,
        "安全管理员只能授予或收回业务角色",
    )


@dataclass(frozen=True, slots=True)
class StaffAccount:
    """A staff account as the security administrator sees it (never a secret)."""

    staff_id: int
    username: str
    display_name: str
    active: bool
    roles: frozenset[Role]
    totp_enrolled: bool
    last_login_at: datetime | None


def _account(staff: Staff) -> StaffAccount:
    return StaffAccount(
        staff_id=staff.id,
        username=staff.username,
        display_name=staff.display_name,
        active=staff.active,
        roles=staff.role_set,
        totp_enrolled=staff.totp_secret_enc is not None,
        last_login_at=staff.last_login_at,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def find_accounts(
    session: AsyncSession, *, query: str, limit: int = 30
) -> list[StaffAccount]:
    """Accounts whose username or display name contains `query` (all when it is empty)."""
    stmt = select(Staff).order_by(Staff.username).limit(limit)
    query = query.strip()
    if query:
        pattern = f"%{_escape_like(query)}%"
        stmt = stmt.where(
            or_(
                Staff.username.ilike(pattern, escape="\\"),
                Staff.display_name.ilike(pattern, escape="\\"),
            )
        )
    return [_account(s) for s in (await session.scalars(stmt)).all()]


async def account(session: AsyncSession, *, staff_id: int) -> StaffAccount:
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    return _account(staff)


async def staff_names(session: AsyncSession, staff_ids: set[int]) -> dict[int, tuple[str, str]]:
    """staff id → (display name, username), for showing who did something."""
    if not staff_ids:
        return {}
    rows = await session.execute(
        select(Staff.id, Staff.display_name, Staff.username).where(Staff.id.in_(staff_ids))
    )
    return {i: (d, u) for i, d, u in rows.all()}


async def staff_id_named(session: AsyncSession, username: str) -> int | None:
    staff_id: int | None = await session.scalar(
        select(Staff.id).where(Staff.username == username.strip())
    )
    return staff_id


async def _change_role(
    session: AsyncSession, *, staff_id: int, role: Role, grant: bool, actor: str, ip: str
) -> StaffAccount:
    if role in ADMIN_ROLES:
        raise RoleNotGrantable(f"{role} is an admin role")
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    current = staff.role_set
    if grant == (role in current):  # nothing to do (a repeated form): no audit entry either
        return _account(staff)
    if grant:
        try:
            check_role_combination(current | {role})
        except ValueError as e:
            raise RoleCombinationRefused(str(e)) from None
        staff.roles.append(StaffRole(role=role))
    else:
        staff.roles = [r for r in staff.roles if r.role != role]
    await session.flush()
    await record(
        session,
        actor=actor,
        action="role.grant" if grant else "role.revoke",
        object_type="staff",
        object_id=str(staff.id),
        ip=ip,
        detail={"role": str(role)},
    )
    return _account(staff)


async def grant_role(
    session: AsyncSession, *, staff_id: int, role: Role, actor: str, ip: str = ""
) -> StaffAccount:
    """Give a staff member one more business role (check_role_combination applies).

    Raises:
        RoleNotGrantable: an admin role (those are set up with the account, not here).
        RoleCombinationRefused: the account holds an admin role.
        NotFound: no such account.
    """
    return await _change_role(session, staff_id=staff_id, role=role, grant=True, actor=actor, ip=ip)


async def revoke_role(
    session: AsyncSession, *, staff_id: int, role: Role, actor: str, ip: str = ""
) -> StaffAccount:
    """Take a business role away from a staff member."""
    return await _change_role(
        session, staff_id=staff_id, role=role, grant=False, actor=actor, ip=ip
    )


async def reset_totp(session: AsyncSession, *, staff_id: int, actor: str, ip: str = "") -> None:
    """Forget a staff member's second factor: the next sign-in enrols a new authenticator."""
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    staff.totp_secret_enc = None
    staff.totp_last_step = None
    await record(
        session,
        actor=actor,
        action="auth.totp_reset",
        object_type="staff",
        object_id=str(staff.id),
        ip=ip,
    )


@dataclass(frozen=True, slots=True)
class SessionView:
    """A signed-in browser session. `handle` is the stored hash (not usable as a cookie)."""

    handle: str
    staff_id: int
    display_name: str
    username: str
    created_at: datetime
    last_seen_at: datetime
    ip: str


async def list_web_sessions(
    session: AsyncSession, *, staff_id: int | None = None, limit: int = 200
) -> list[SessionView]:
    stmt = (
        select(WebSession, Staff.display_name, Staff.username)
        .join(Staff, Staff.id == WebSession.staff_id)
        .order_by(WebSession.last_seen_at.desc())
        .limit(limit)
    )
    if staff_id is not None:
        stmt = stmt.where(WebSession.staff_id == staff_id)
    return [
        SessionView(w.id_hash, w.staff_id, d, u, w.created_at, w.last_seen_at, w.ip)
        for w, d, u in (await session.execute(stmt)).all()
    ]


async def end_web_session(session: AsyncSession, *, handle: str, actor: str, ip: str = "") -> None:
    """Sign a browser session out from the security page (its next request needs a sign-in)."""
    row = await session.get(WebSession, handle)
    if row is None:
        raise NotFound("no such session")
    await record(
        session,
        actor=actor,
        action="auth.session_ended",
        object_type="staff",
        object_id=str(row.staff_id),
        ip=ip,
        detail={"session": handle[:12]},
    )
    await session.execute(delete(WebSession).where(WebSession.id_hash == handle))
