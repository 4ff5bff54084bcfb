"""Every signed token the server hands out, under one key derivation.

    deployment secret ──HKDF(SHA-256, info = "onedoor-signing-v1:" + purpose)──► key
    key + claims + aud=purpose + exp ──HS256 (PyJWT)──► token

Each purpose gets its own derived key *and* its own audience, so a token made for one purpose
never verifies for another (a recording grant is no CSRF token). Every token expires; `verify`
checks the window against the `now` it is given, so tests move time instead of sleeping.

Secrets from ONEDOOR_PREVIOUS_SECRET_KEYS are tried only by a signer built with `previous`:
callers pass them where they were accepted before (recording grants).

Formats in use before this module (each purpose had its own HMAC construction) are still
accepted through a `Legacy` fallback, each until a date after which no old token can be valid;
the fallbacks live next to their purpose and name that date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from server.kernel.crypto import derive_key as kernel_hkdf
from server.kernel.errors import AppError

Purpose = Literal[
    "join",  # signaling join links
    "resume",  # signaling resume tokens
    "pending_2fa",  # between password and TOTP code
    "recording_grant",  # playback after a stated reason
    "evaluation_link",  # 双评 SMS links
    "follow_link",  # kiosk QR code to follow a case
    "csrf",  # double-submit cookie
    "agreement_sign",  # one party's link to sign one mediation agreement
    "minutes_confirm",  # one party's link to confirm a session's 笔录
]

ALGORITHM = "HS256"
SALT = b"onedoor-signing-v1"
#: Claims the signer sets itself; callers may not pass them.
RESERVED = frozenset({"aud", "exp", "nbf", "iat"})


class SignatureInvalid(AppError):
    """Forged, tampered, made for another purpose, malformed, or not valid yet."""

    code, http_status, message_zh = "token_invalid", 400, "链接无效"


class SignatureExpired(SignatureInvalid):
    code, http_status, message_zh = "token_expired", 410, "链接已过期"


def derive_key(secret: bytes, purpose: Purpose) -> bytes:
    """The purpose's signing key: the kernel's one HKDF (`server.kernel.crypto.derive_key`), with the
    signing salt folded into the info so these keys never equal another purpose's."""
    return kernel_hkdf(secret, SALT + b":" + purpose.encode())


@dataclass(frozen=True, slots=True)
class Legacy:
    """An older format of one purpose, still accepted until `until`.

    `verify(token, now)` returns the claims in the new format's shape, or raises
    SignatureInvalid / SignatureExpired. It is tried only for tokens the new format rejects as
    invalid (not for expired new tokens) and only before `until`.
    """

    until: datetime
    verify: Callable[[str, datetime], dict[str, Any]]


class Signer:
    """Sign and verify tokens for one deployment secret (and, optionally, older ones)."""

    def __init__(self, secret: bytes, *, previous: tuple[bytes, ...] = ()) -> None:
        if not secret:
            raise ValueError("a signer needs a non-empty secret")
        self._secrets = (secret, *(s for s in previous if s))
        self._keys: dict[Purpose, tuple[bytes, ...]] = {}

    def _keys_for(self, purpose: Purpose) -> tuple[bytes, ...]:
        keys = self._keys.get(purpose)
        if keys is None:
            keys = self._keys[purpose] = tuple(derive_key(s, purpose) for s in self._secrets)
        return keys

    def key_ids(self, purpose: Purpose) -> tuple[str, ...]:
        """Short ids of the purpose's keys, current first (shown to the security administrator;
        an id reveals nothing of its key)."""
        return tuple(hashlib.sha256(k).hexdigest()[:8] for k in self._keys_for(purpose))

    def sign(
        self,
        purpose: Purpose,
        claims: Mapping[str, Any],
        *,
        expires_at: datetime,
        not_before: datetime | None = None,
    ) -> str:
        """A token for `purpose` carrying `claims`, valid until `expires_at` (whole seconds)."""
        reserved = RESERVED & claims.keys()
        if reserved:
            raise ValueError(f"claims {sorted(reserved)} are set by the signer")
        body: dict[str, Any] = {**claims, "aud": purpose, "exp": int(expires_at.timestamp())}
        if not_before is not None:
            if not_before >= expires_at:
                raise ValueError("a token must expire after it becomes valid")
            body["nbf"] = int(not_before.timestamp())
        # No "typ" header: these tokens travel in SMS and QR codes, where length counts.
        return jwt.encode(
            body, self._keys_for(purpose)[0], algorithm=ALGORITHM, headers={"typ": None}
        )

    def verify(
        self,
        purpose: Purpose,
        token: str | None,
        *,
        now: datetime,
        leeway: timedelta = timedelta(0),
        legacy: Legacy | None = None,
    ) -> dict[str, Any]:
        """The claims of a token signed for `purpose`, without the signer's own claims except
        `exp` (and `nbf` when set).

        Raises:
            SignatureExpired: well signed, but `now` is past its expiry (plus `leeway`).
            SignatureInvalid: anything else wrong with it.
        """
        try:
            return self._verify(purpose, token or "", now=now, leeway=leeway)
        except SignatureExpired:
            raise
        except SignatureInvalid:
            if legacy is None or now >= legacy.until or not token:
                raise
        return legacy.verify(token, now)

    def _verify(
        self, purpose: Purpose, token: str, *, now: datetime, leeway: timedelta
    ) -> dict[str, Any]:
        claims: dict[str, Any] | None = None
        for key in self._keys_for(purpose):
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=purpose,
                    options={
                        "require": ["exp", "aud"],
                        "verify_exp": False,  # checked below against `now`
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise SignatureInvalid(f"not a valid {purpose} token") from None
        if claims is None:
            raise SignatureInvalid(f"{purpose} token signature does not match")
        try:
            exp = int(claims["exp"])
            nbf = int(claims["nbf"]) if "nbf" in claims else None
        except (TypeError, ValueError):
            raise SignatureInvalid(f"{purpose} token has a malformed time window") from None
        t, slack = now.timestamp(), leeway.total_seconds()
        if t > exp + slack:
            raise SignatureExpired(f"the {purpose} token has expired")
        if nbf is not None and t < nbf - slack:
            raise SignatureInvalid(f"the {purpose} token is not valid yet")
        claims.pop("aud", None)
        return claims
