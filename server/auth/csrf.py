"""CSRF protection: a signed double-submit token.

The token (random value + HMAC under the deployment secret) lives in a cookie and must come
back in the `X-CSRF-Token` header or the `_csrf` form field of every state-changing request.
The signature stops an attacker who can set cookies on a sibling domain from planting one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "od_csrf"
HEADER = "X-CSRF-Token"
FORM_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _sign(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]


def new_token(secret: bytes) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(secret, nonce)}"


def well_formed(secret: bytes, token: str | None) -> bool:
    if not token or token.count(".") != 1:
        return False
    nonce, sig = token.split(".")
    return hmac.compare_digest(sig.encode(), _sign(secret, nonce).encode())


def matches(secret: bytes, cookie: str | None, submitted: str | None) -> bool:
    return (
        well_formed(secret, cookie)
        and submitted is not None
        and hmac.compare_digest((cookie or "").encode(), submitted.encode())
    )
