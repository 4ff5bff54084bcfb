"""CSRF protection: a signed double-submit token.

The token (a random nonce signed for the `csrf` purpose, see server.kernel.signing) lives in a
cookie and must come back in the `X-CSRF-Token` header or the `_csrf` form field of every
state-changing request. The signature stops an attacker who can set cookies on a sibling domain
from planting one. It expires after TTL; the next page load then sets a fresh one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from server.kernel.signing import Legacy, SignatureInvalid, Signer

COOKIE = "od_csrf"
HEADER = "X-CSRF-Token"
FORM_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A form left open longer than this is refused once (the reload sets a fresh token).
TTL = timedelta(days=7)

# LEGACY: tokens from before server.kernel.signing (`<nonce>.<hmac(secret, "csrf:"+nonce)>`,
# no expiry). Any page load replaces such a cookie; only a form rendered before the upgrade and
# submitted after it still carries one. Remove `_legacy` and LEGACY_UNTIL after 2026-12-10.
LEGACY_UNTIL = datetime(2026, 12, 10, tzinfo=UTC)


def _legacy(secret: bytes) -> Legacy:
    def verify(token: str, now: datetime) -> dict[str, Any]:
        nonce, _, sig = token.partition(".")
        good = hmac.new(secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]
        if token.count(".") != 1 or not hmac.compare_digest(sig, good):
            raise SignatureInvalid("not a CSRF token")
        return {"n": nonce, "legacy": True}

    return Legacy(until=LEGACY_UNTIL, verify=verify)


def new_token(secret: bytes, *, now: datetime) -> str:
    return Signer(secret).sign("csrf", {"n": secrets.token_urlsafe(18)}, expires_at=now + TTL)


def well_formed(
    secret: bytes, token: str | None, *, now: datetime, accept_legacy: bool = False
) -> bool:
    """Signed by us for CSRF and unexpired. An old-format token counts only with
    `accept_legacy` (state-changing requests), so a page load replaces it."""
    try:
        claims = Signer(secret).verify("csrf", token, now=now, legacy=_legacy(secret))
    except SignatureInvalid:
        return False
    return accept_legacy or not claims.get("legacy")


def matches(secret: bytes, cookie: str | None, submitted: str | None, *, now: datetime) -> bool:
    return (
        well_formed(secret, cookie, now=now, accept_legacy=True)
        and submitted is not None
        and hmac.compare_digest((cookie or "").encode(), submitted.encode())
    )
