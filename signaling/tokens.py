"""Join tokens (a signed, expiring, single-room grant, like LiveKit's), resume tokens, the QR
code for a join link, and short-lived TURN credentials (coturn `use-auth-secret`).

Join and resume tokens are signed by `server.kernel.signing` (one derived key and audience per
purpose), so a resume token can never pass as a join token or a CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import jwt
import segno

from server.kernel.signing import Legacy, Purpose, SignatureExpired, SignatureInvalid, Signer
from signaling import errors
from signaling.protocol import IceServerInfo, Permission, Role

JOIN_AUDIENCE: Purpose = "join"
RESUME_AUDIENCE: Purpose = "resume"
ISSUER = "onedoor"
LEEWAY_S = 5

# LEGACY: join and resume tokens signed before server.kernel.signing (HMAC sub-key per
# "onedoor:<audience>", iss "onedoor"). Remove `_legacy` and LEGACY_UNTIL after 2027-06-01, or
# earlier once `SELECT max(expires_at) FROM join_token WHERE issued_at < '2026-12-03'` is past
# (join links are the only long-lived ones; resume tokens live for the signaling grace).
LEGACY_UNTIL = datetime(2027, 6, 1, tzinfo=UTC)


def _legacy(secret: bytes, audience: Purpose) -> Legacy:
    old_audience = f"onedoor:{audience}"

    def verify(token: str, now: datetime) -> dict[str, Any]:
        key = hmac.new(secret, f"onedoor-signaling:{old_audience}".encode(), hashlib.sha256)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.digest(),
                algorithms=["HS256"],
                audience=old_audience,
                issuer=ISSUER,
                options={"require": ["exp"], "verify_exp": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            raise SignatureInvalid("the link is not valid") from None
        if now.timestamp() > int(claims["exp"]) + LEEWAY_S:
            raise SignatureExpired("the link has expired")
        return claims

    return Legacy(until=LEGACY_UNTIL, verify=verify)


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
        "jti": grant.jti,
        "sub": grant.identity,
        "room": grant.room_id,
        "name": grant.display_name,
        "role": grant.role,
        "perms": sorted(grant.permissions),
    }
    if grant.site_id is not None:
        claims["site"] = grant.site_id
    return Signer(secret).sign(
        JOIN_AUDIENCE, claims, expires_at=grant.expires_at, not_before=grant.not_before
    )


def _decode(secret: bytes, token: str, audience: Purpose, now: datetime) -> dict[str, Any]:
    """Signature, purpose and time window (against `now`, testable) by the signer."""
    try:
        claims = Signer(secret).verify(
            audience,
            token,
            now=now,
            leeway=timedelta(seconds=LEEWAY_S),
            legacy=_legacy(secret, audience),
        )
        if claims.get("iss") != ISSUER or not all(k in claims for k in ("nbf", "jti", "sub")):
            raise SignatureInvalid("missing claims")
        nbf = int(claims["nbf"])
    except SignatureExpired:
        raise errors.TokenExpired("the link has expired") from None
    except (SignatureInvalid, TypeError, ValueError):
        raise errors.TokenInvalid("the link is not valid") from None
    if now.timestamp() < nbf - LEEWAY_S:
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
    }
    return Signer(secret).sign(
        RESUME_AUDIENCE, body, expires_at=now + ttl, not_before=now - timedelta(seconds=1)
    )


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
