"""Join tokens (a signed, expiring, single-room grant, like LiveKit's), resume tokens, the QR
code for a join link, and short-lived TURN credentials (coturn `use-auth-secret`).

Join and resume tokens are HS256 JWTs keyed by a sub-key of the app secret per audience, so a
resume token can never pass as a join token or a CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast, get_args

import jwt
import segno

from signaling import errors
from signaling.protocol import IceServerInfo, Permission, Role

JOIN_AUDIENCE = "onedoor:join"
RESUME_AUDIENCE = "onedoor:resume"
ISSUER = "onedoor"
LEEWAY_S = 5


def _key(secret: bytes, audience: str) -> bytes:
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
    return jwt.encode(claims, _key(secret, JOIN_AUDIENCE), algorithm="HS256")


def _decode(secret: bytes, token: str, audience: str, now: datetime) -> dict[str, Any]:
    """Signature, audience and issuer by PyJWT; the time window against `now` (testable)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _key(secret, audience),
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
        raise errors.TokenInvalid("the link is not valid") from None
    t = now.timestamp()
    if t > exp + LEEWAY_S:
        raise errors.TokenExpired("the link has expired")
    if t < nbf - LEEWAY_S:
        raise errors.TokenInvalid("the link is not valid yet")
    return claims


def verify_join_token(secret: bytes, token: str, *, now: datetime) -> JoinGrant:
    """Check signature, audience, time window and shape. Revocation is checked by the caller
    against the JoinToken table.

    Raises:
        TokenInvalid, TokenExpired
    """
    claims = _decode(secret, token, JOIN_AUDIENCE, now)
    try:
        role = claims["role"]
        perms = frozenset(claims.get("perms", []))
        if role not in get_args(Role) or not perms <= set(get_args(Permission)):
            raise errors.TokenInvalid("the link carries an unknown role")
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
        raise errors.TokenInvalid("the link is malformed") from None


@dataclass(frozen=True, slots=True)
class ResumeClaim:
    """Enough to take one's place back on any node, even one that never saw the room."""

    room_id: str
    peer_id: str
    identity: str
    display_name: str
    role: Role
    permissions: frozenset[Permission]
    is_staff: bool
    status: Literal["lobby", "joined"]
    site_id: int | None
    site_name: str
    staff_id: int | None
    jti: str | None


def issue_resume_token(secret: bytes, claim: ResumeClaim, *, now: datetime, ttl: timedelta) -> str:
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": RESUME_AUDIENCE,
        "jti": secrets.token_urlsafe(8),
        "sub": claim.identity,
        "room": claim.room_id,
        "peer": claim.peer_id,
        "name": claim.display_name,
        "role": claim.role,
        "perms": sorted(claim.permissions),
        "staff": claim.is_staff,
        "status": claim.status,
        "site": claim.site_id,
        "site_name": claim.site_name,
        "staff_id": claim.staff_id,
        "join_jti": claim.jti,
        "nbf": int(now.timestamp()) - 1,
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(body, _key(secret, RESUME_AUDIENCE), algorithm="HS256")


def verify_resume_token(secret: bytes, token: str, *, now: datetime) -> ResumeClaim:
    try:
        c = _decode(secret, token, RESUME_AUDIENCE, now)
    except errors.TokenExpired:
        raise errors.ResumeFailed("the resume token has expired") from None
    except errors.TokenInvalid:
        raise errors.ResumeFailed("the resume token is not valid") from None
    try:
        return ResumeClaim(
            room_id=str(c["room"]),
            peer_id=str(c["peer"]),
            identity=str(c["sub"]),
            display_name=str(c["name"]),
            role=c["role"],
            permissions=frozenset(c["perms"]),
            is_staff=bool(c["staff"]),
            status=c["status"],
            site_id=c.get("site"),
            site_name=str(c.get("site_name") or ""),
            staff_id=c.get("staff_id"),
            jti=c.get("join_jti"),
        )
    except (KeyError, TypeError, ValueError):
        raise errors.ResumeFailed("the resume token is malformed") from None


def join_link_qr_png(url: str, *, scale: int = 6) -> bytes:
    """A PNG QR code for a join link (error correction M, quiet zone 4)."""
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def turn_credentials(
    *,
    secret: bytes,
    identity: str,
    now: datetime,
    ttl_s: int,
    stun_urls: list[str],
    turn_urls: list[str],
) -> list[IceServerInfo]:
    """ICE servers for one join: STUN as configured; TURN with coturn REST credentials
    (username `"<unix expiry>:<identity>"`, credential base64(HMAC-SHA1(secret, username))).
    Never a public default: nothing configured means an empty list."""
    servers: list[IceServerInfo] = []
    if stun_urls:
        servers.append(IceServerInfo(urls=list(stun_urls)))
    if turn_urls and secret:
        username = f"{int(now.timestamp()) + ttl_s}:{identity}"
        digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
        servers.append(
            IceServerInfo(
                urls=list(turn_urls),
                username=username,
                credential=base64.b64encode(digest).decode(),
            )
        )
    return servers
