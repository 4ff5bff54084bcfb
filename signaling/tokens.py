"""Signaling's own tokens and credentials: resume tokens, the QR code for a join link, and
short-lived TURN credentials (coturn `use-auth-secret`).

Join tokens are the sessions domain's (server/sessions/tokens.py issues and verifies them).
Resume tokens are signed by `server.kernel.signing` for their own purpose, so a resume token
can never pass as a join token or a CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import segno

from server.kernel.signing import Purpose, Signer
from server.sessions.tokens import ISSUER, decode_claims
from signaling import errors
from signaling.protocol import IceServerInfo, Permission, Role

RESUME_AUDIENCE: Purpose = "resume"


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
        c = decode_claims(secret, token, RESUME_AUDIENCE, now)
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
