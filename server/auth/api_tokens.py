"""Personal API tokens for integrators (`Authorization: Bearer <token>`).

A token belongs to one staff member (a person, or a service account a sys_admin created) and
acts as them, narrowed to its scopes: each scope is an Action the owner's roles allow
(server/auth/permissions.py decides; a token never widens it). The token is shown once; only
its SHA-256 is stored. It expires, can be revoked, and every use is audited with its id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.models import ApiToken
from server.auth.permissions import Action, StaffIdentity, allowed
from server.auth.service import identity_of
from server.kernel.errors import AppError, InvalidInput, NotFound
from server.org.models import Staff

#: Every token starts so (secret scanners and people recognise it).
TOKEN_PREFIX = "odt_"
MAX_LIFETIME = timedelta(days=366)
MAX_NAME = 80
#: last_used_at is rewritten at most this often.
TOUCH_INTERVAL = timedelta(seconds=60)
#: Actions no token carries: a token never makes more tokens.
NEVER_SCOPES = frozenset({Action.api_token_manage})


class ApiTokenInvalid(AppError):
    """The bearer token is unknown (or its owner is no longer active)."""

    code, http_status, message_zh = "api_token_invalid", 401, "访问令牌无效"


class ApiTokenExpired(AppError):
    code, http_status, message_zh = "api_token_expired", 401, "访问令牌已过期"


class ApiTokenRevoked(AppError):
    code, http_status, message_zh = "api_token_revoked", 401, "访问令牌已撤销"


class TokenScopeNotAllowed(AppError):
    """A requested scope is an Action the owner's roles do not allow."""

    code, http_status, message_zh = "token_scope_not_allowed", 422, "令牌权限超出了账号角色的权限"


@dataclass(frozen=True, slots=True)
class TokenView:
    id: int
    name: str
    prefix: str
    staff_id: int
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    #: The owner's username.
    owner: str = ""

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _view(row: ApiToken, owner: str = "") -> TokenView:
    return TokenView(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        staff_id=row.staff_id,
        scopes=tuple(s for s in row.scopes.split(",") if s),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        owner=owner,
    )


def parse_scopes(values: list[str]) -> frozenset[Action]:
    """Scopes as the client typed them (Action values such as `case.view`).

    Raises:
        InvalidInput: empty, or an unknown action.
    """
    try:
        scopes = frozenset(Action(v.strip()) for v in values if v.strip())
    except ValueError:
        raise InvalidInput(
            "unknown scope", fields=[{"field": "scopes", "message": "unknown action"}]
        ) from None
    if not scopes:
        raise InvalidInput(
            "a token needs at least one scope",
            fields=[{"field": "scopes", "message": "choose at least one"}],
        )
    return scopes


def grantable(identity: StaffIdentity) -> list[Action]:
    """The scopes `identity`'s roles allow, in the table's order."""
    return [a for a in Action if allowed(identity.roles, a) and a not in NEVER_SCOPES]


async def create_token(
    session: AsyncSession,
    *,
    staff_id: int,
    name: str,
    scopes: frozenset[Action],
    expires_at: datetime,
    now: datetime,
    created_by: str,
    ip: str = "",
) -> tuple[str, TokenView]:
    """A new token for staff `staff_id`; returns the token (shown once) and its view.

    Raises:
        NotFound: no such active staff member.
        InvalidInput: no name, or an expiry in the past or more than a year ahead.
        TokenScopeNotAllowed: a scope the owner's roles do not allow.
    """
    staff = await session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise NotFound("no such staff member")
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(
            "a token needs a name", fields=[{"field": "name", "message": "1-80 characters"}]
        )
    if not now < expires_at <= now + MAX_LIFETIME:
        raise InvalidInput(
            "the expiry must be in the future and at most a year ahead",
            fields=[{"field": "expires_at", "message": "between now and a year from now"}],
        )
    denied = sorted(str(a) for a in scopes if a in NEVER_SCOPES or not allowed(staff.role_set, a))
    if denied:
        raise TokenScopeNotAllowed(
            f"the owner's roles do not allow {', '.join(denied)}", scopes=denied
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=_hash(token),
        prefix=token[:12],
        staff_id=staff.id,
        name=name,
        scopes=",".join(sorted(str(a) for a in scopes)),
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        actor=created_by,
        action="auth.token_create",
        object_type="api_token",
        object_id=str(row.id),
        ip=ip,
        detail={"owner": staff.id, "name": name, "scopes": row.scopes.split(",")},
    )
    return token, _view(row, staff.username)


async def list_tokens(session: AsyncSession, *, staff_id: int | None = None) -> list[TokenView]:
    """Tokens of one staff member (or every token), newest first."""
    query = (
        select(ApiToken, Staff.username)
        .join(Staff, Staff.id == ApiToken.staff_id)
        .order_by(ApiToken.id.desc())
    )
    if staff_id is not None:
        query = query.where(ApiToken.staff_id == staff_id)
    return [_view(r, username) for r, username in (await session.execute(query)).all()]


async def staff_id_by_username(session: AsyncSession, username: str) -> int | None:
    """The active staff member a sys_admin names as a token's owner (a service account)."""
    staff_id: int | None = await session.scalar(
        select(Staff.id).where(Staff.username == username.strip(), Staff.active.is_(True))
    )
    return staff_id


async def revoke_token(
    session: AsyncSession,
    *,
    token_id: int,
    now: datetime,
    actor: str,
    owner_id: int | None = None,
    ip: str = "",
) -> TokenView:
    """Revoke a token (again: no change). With `owner_id`, only that staff member's token.

    Raises:
        NotFound: no such token (or not the owner's).
    """
    row = await session.get(ApiToken, token_id)
    if row is None or (owner_id is not None and row.staff_id != owner_id):
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = now
        await record(
            session,
            actor=actor,
            action="auth.token_revoke",
            object_type="api_token",
            object_id=str(row.id),
            ip=ip,
            detail={"owner": row.staff_id},
        )
    return _view(row)


async def authenticate(
    session: AsyncSession, *, token: str, now: datetime, ip: str, method: str, path: str
) -> StaffIdentity:
    """The identity a bearer token acts as (narrowed to its scopes); the use is audited.

    Raises:
        ApiTokenInvalid, ApiTokenExpired, ApiTokenRevoked (all 401).
    """
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None:
        raise ApiTokenInvalid("unknown API token")
    if row.revoked_at is not None:
        raise ApiTokenRevoked("the API token was revoked")
    if row.expires_at <= now:
        raise ApiTokenExpired("the API token has expired")
    staff = await session.get(Staff, row.staff_id)
    if staff is None or not staff.active:
        raise ApiTokenInvalid("the API token's owner is not active")
    if row.last_used_at is None or now - row.last_used_at > TOUCH_INTERVAL:
        row.last_used_at = now
    await record(
        session,
        actor=f"staff:{staff.id}",
        action="auth.token_use",
        object_type="api_token",
        object_id=str(row.id),
        ip=ip,
        detail={"method": method, "path": path[:200]},
    )
    scopes = frozenset(Action(s) for s in row.scopes.split(",") if s in Action._value2member_map_)
    base = identity_of(staff)
    return StaffIdentity(
        staff_id=base.staff_id,
        username=base.username,
        display_name=base.display_name,
        site_id=base.site_id,
        department_id=base.department_id,
        roles=base.roles,
        scopes=scopes,
        token_id=row.id,
        must_change_password=base.must_change_password,
    )
