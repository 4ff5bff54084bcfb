"""The petitioner's signed link to follow a case (`/follow/{token}`), and its QR code: printed
by the kiosk, shown at the end of a video reception and sent by SMS."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import segno
from aiohttp import web

from server.http import keys
from server.kernel.db import utcnow
from server.kernel.errors import NotFound
from server.kernel.ids import parse_id
from server.kernel.signing import Legacy, SignatureInvalid, Signer

#: How long the QR code printed at the kiosk lets the petitioner follow the case.
FOLLOW_TTL = timedelta(days=365)

# LEGACY: follow links from before server.kernel.signing (`<case id>.<hmac(secret,
# "onedoor-follow:<id>")[:12]>`, no expiry). They are treated as issued at the upgrade and live
# as long as a new one: remove `_legacy_follow` and LEGACY_FOLLOW_UNTIL after 2027-12-03.
LEGACY_FOLLOW_UNTIL = datetime(2027, 12, 3, tzinfo=UTC)


def _legacy_follow(secret: bytes) -> Legacy:
    def verify(token: str, now: datetime) -> dict[str, Any]:
        case_part, _, mac = token.partition(".")
        case_id = parse_id(case_part)
        if case_id is None:
            raise SignatureInvalid("not a follow link")
        good = hmac.new(secret, f"onedoor-follow:{case_part}".encode(), hashlib.sha256)
        if not hmac.compare_digest(
            base64.urlsafe_b64encode(good.digest()[:12]).decode().rstrip("="), mac
        ):
            raise SignatureInvalid("follow link signature does not match")
        return {"c": case_id}

    return Legacy(until=LEGACY_FOLLOW_UNTIL, verify=verify)


def follow_token(secret: bytes, case_id: int, *, now: datetime) -> str:
    return Signer(secret).sign("follow_link", {"c": case_id}, expires_at=now + FOLLOW_TTL)


def follow_link(request: web.Request, case_id: int) -> tuple[str, str]:
    """The petitioner's link to follow `case_id` and its QR code (an SVG data URI): on the
    deployment's public address when one is set (it goes out by SMS), else this request's."""
    settings = request.app[keys.settings]
    token = follow_token(settings.secret_bytes(), case_id, now=utcnow())
    base = (settings.public_url or str(request.url.origin())).rstrip("/")
    url = f"{base}/follow/{token}"
    return url, segno.make(url, error="m").svg_data_uri(scale=6, border=2)


def check_follow_token(secret: bytes, token: str, *, now: datetime) -> int:
    try:
        claims = Signer(secret).verify("follow_link", token, now=now, legacy=_legacy_follow(secret))
        return int(claims["c"])
    except (SignatureInvalid, KeyError, TypeError, ValueError):
        raise NotFound("no such follow link") from None
