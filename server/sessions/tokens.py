"""Join tokens: a signed, expiring, single-room grant (like LiveKit's). Pure functions; the
service (server/sessions/service.py) records every issued token and checks revocation.

Join and resume tokens are signed by `server.kernel.signing` (one derived key and audience per
purpose), so a resume token (signaling's, built on `decode_claims` here) can never pass as a
join token or a CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast, get_args

import jwt

from server.kernel.signing import Legacy, Purpose, SignatureExpired, SignatureInvalid, Signer
from server.sessions.errors import TokenExpired, TokenInvalid
from server.sessions.schemas import Permission, Role

JOIN_AUDIENCE: Purpose = "join"
ISSUER = "onedoor"
LEEWAY_S = 5

# LEGACY: join and resume tokens signed before server.kernel.signing (HMAC sub-key per
# "onedoor:<audience>", iss "onedoor"). Remove `_legacy` and LEGACY_UNTIL after 2027-06-01, or
# earlier once `SELECT max(expires_at) FROM join_token WHERE issued_at < '2026-12-03'` is past
# (join links are the only long-lived ones; resume tokens live for the signaling grace).
LEGACY_UNTIL = datetime(2027, 6, 1, tzinfo=UTC)


def legacy_verifier(secret: bytes, audience: Purpose) -> Legacy:
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


def decode_claims(secret: bytes, token: str, audience: Purpose, now: datetime) -> dict[str, Any]:
    """Signature, purpose and time window (against `now`, testable) by the signer; also used
    by signaling for resume tokens.

    Raises:
        TokenInvalid, TokenExpired
    """
    try:
        claims = Signer(secret).verify(
            audience,
            token,
            now=now,
            leeway=timedelta(seconds=LEEWAY_S),
            legacy=legacy_verifier(secret, audience),
        )
        if claims.get("iss") != ISSUER or not all(k in claims for k in ("nbf", "jti", "sub")):
            raise SignatureInvalid("missing claims")
        nbf = int(claims["nbf"])
    except SignatureExpired:
        raise TokenExpired("the link has expired") from None
    except (SignatureInvalid, TypeError, ValueError):
        raise TokenInvalid("the link is not valid") from None
    if now.timestamp() < nbf - LEEWAY_S:
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
