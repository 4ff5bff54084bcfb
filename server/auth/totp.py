"""Second factor for staff: TOTP (RFC 6238) codes from an authenticator app.

Between the password and the code the browser holds only a short-lived signed "pending"
token naming the staff member; the real session is created after the code is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.kernel.crypto import PiiCipher
from server.kernel.errors import AppError, NotFound
from server.kernel.signing import Legacy, SignatureExpired, SignatureInvalid, Signer
from server.org.models import Staff

PENDING_TTL_S = 300
ISSUER = "onedoor 信访超市"


class InvalidCode(AppError):
    code, http_status, message_zh = "invalid_totp", 401, "动态验证码错误或已使用"


class PendingExpired(AppError):
    code, http_status, message_zh = "sign_in_expired", 401, "登录已超时，请重新输入密码"


@dataclass(frozen=True, slots=True)
class Pending:
    staff_id: int
    enrol_secret: str | None  # set while enrolling: the secret shown as a QR code


# LEGACY: pending tokens from before server.kernel.signing (base64 JSON + HMAC(secret,
# "pending-2fa:"+body), expiring within PENDING_TTL_S). Remove `_legacy` and LEGACY_UNTIL after
# 2026-12-04 (five minutes after the upgrade would do; a day leaves room for a late deploy).
LEGACY_UNTIL = datetime(2026, 12, 4, tzinfo=UTC)


def _legacy(secret: bytes) -> Legacy:
    def verify(token: str, now: datetime) -> dict[str, Any]:
        try:
            b64, sig = token.rsplit(".", 1)
            body = base64.urlsafe_b64decode(b64)
            good = hmac.new(secret, b"pending-2fa:" + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sig, good):
                raise ValueError("bad signature")
            data = json.loads(body)
            if data["x"] < now.timestamp():
                raise SignatureExpired("the sign-in step expired")
            return {"s": data["s"], "e": data["e"]}
        except (ValueError, KeyError, TypeError):
            raise SignatureInvalid("not a pending sign-in token") from None

    return Legacy(until=LEGACY_UNTIL, verify=verify)


def pending_token(secret: bytes, pending: Pending, *, now: datetime) -> str:
    return Signer(secret).sign(
        "pending_2fa",
        {"s": pending.staff_id, "e": pending.enrol_secret},
        expires_at=now + timedelta(seconds=PENDING_TTL_S),
    )


def read_pending(secret: bytes, token: str | None, *, now: datetime) -> Pending:
    try:
        data = Signer(secret).verify("pending_2fa", token, now=now, legacy=_legacy(secret))
        enrol = data["e"]
        if enrol is not None and not isinstance(enrol, str):
            raise TypeError("enrol secret")
        return Pending(staff_id=int(data["s"]), enrol_secret=enrol)
    except (SignatureInvalid, KeyError, TypeError, ValueError) as e:
        raise PendingExpired("the sign-in step expired or was tampered with") from e


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


async def verify_code(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    staff_id: int,
    code: str,
    now: float,
    enrol_secret: str | None = None,
    ip: str = "",
) -> Staff:
    """Accept a code once. While enrolling, the code proves the app holds `enrol_secret`,
    which is then stored (encrypted)."""
    staff = await session.get(Staff, staff_id)
    if staff is None or not staff.active:
        raise NotFound("no such staff member")
    secret = enrol_secret or (pii.decrypt(staff.totp_secret_enc) if staff.totp_secret_enc else None)
    if secret is None:
        raise PendingExpired("no second factor is enrolled")
    totp = pyotp.TOTP(secret)
    code = code.strip().replace(" ", "")
    step = int(now // totp.interval)
    matched = None
    for offset in (0, -1, 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.at(now + offset * totp.interval).encode(), code.encode()):
            matched = step + offset
            break
    if matched is None or (staff.totp_last_step is not None and matched <= staff.totp_last_step):
        await record(session, actor=f"staff:{staff.id}", action="auth.totp_failed", ip=ip)
        raise InvalidCode("wrong or reused code")
    staff.totp_last_step = matched
    if enrol_secret:
        staff.totp_secret_enc = pii.encrypt(enrol_secret)
        await record(session, actor=f"staff:{staff.id}", action="auth.totp_enrolled", ip=ip)
    return staff
