"""Join tokens: a signed, expiring, single-room grant (like LiveKit's). Pure functions; the
service (server/sessions/service.py) records every issued token and checks revocation.

Tokens are HS256 JWTs keyed by a sub-key of the app secret per audience, so a resume token
(signaling's, built on `token_key`/`decode_claims` here) can never pass as a join token or a
CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast, get_args

import jwt

from server.sessions.errors import TokenExpired, TokenInvalid
from server.sessions.schemas import Permission, Role

JOIN_AUDIENCE = "onedoor:join"
ISSUER = "onedoor"
LEEWAY_S = 5


def token_key(secret: bytes, audience: str) -> bytes:
    return hmac.new(secret, f"onedoor-signaling:{audience}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class JoinGrant:
    """What a join token allows: one identity, one room, one role."""

    jti: str
    room_id: str
    identity: str
    display_name: str
    role: Role
    permissions: frozenset[Permission]
    not_before: datetime
    expires_at: datetime
    site_id: int | None = None

    def __post_init__(self) -> None:
        if self.expires_at <= self.not_before:
            raise ValueError("a join token must expire after it becomes valid")
        if not self.display_name.strip():
            raise ValueError("display name must not be empty")


def new_jti() -> str:
    return secrets.token_urlsafe(16)


def issue_join_token(secret: bytes, grant: JoinGrant) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": JOIN_AUDIENCE,
        "jti": grant.jti,
        "sub": grant.identity,
        "room": grant.room_id,
        "name": grant.display_name,
        "role": grant.role,
        "perms": sorted(grant.permissions),
        "nbf": int(grant.not_before.timestamp()),
        "exp": int(grant.expires_at.timestamp()),
    }
    if grant.site_id is not None:
        claims["site"] = grant.site_id
    return jwt.encode(claims, token_key(secret, JOIN_AUDIENCE), algorithm="HS256")


def decode_claims(secret: bytes, token: str, audience: str, now: datetime) -> dict[str, Any]:
    """Signature, audience and issuer by PyJWT; the time window against `now` (testable).

    Raises:
        TokenInvalid, TokenExpired
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            token_key(secret, audience),
            algorithms=["HS256"],
            audience=audience,
            issuer=ISSUER,
            options={
                "require": ["exp", "nbf", "jti", "sub"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        exp, nbf = int(claims["exp"]), int(claims["nbf"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        raise TokenInvalid("the link is not valid") from None
    t = now.timestamp()
    if t > exp + LEEWAY_S:
        raise TokenExpired("the link has expired")
    if t < nbf - LEEWAY_S:
        raise TokenInvalid("the link is not valid yet")
    return claims


def verify_join_token(secret: bytes, token: str, *, now: datetime) -> JoinGrant:
    """Check signature, audience, time window and shape. Revocation is checked by the service
    against the JoinToken table (`service.check_join_token`).

    Raises:
        TokenInvalid, TokenExpired
    """
    claims = decode_claims(secret, token, JOIN_AUDIENCE, now)
    try:
        role = claims["role"]
        perms = frozenset(claims.get("perms", []))
        if role not in get_args(Role) or not perms <= set(get_args(Permission)):
            raise TokenInvalid("the link carries an unknown role")
        return JoinGrant(
            jti=str(claims["jti"]),
            room_id=str(claims["room"]),
            identity=str(claims["sub"]),
            display_name=str(claims["name"]),
            role=role,
            permissions=cast(frozenset[Permission], perms),
            not_before=datetime.fromtimestamp(int(claims["nbf"]), tz=now.tzinfo),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo),
            site_id=int(claims["site"]) if claims.get("site") is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid("the link is malformed") from None
