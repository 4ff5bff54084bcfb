"""The notification outbox (CaseNotification): messages are added here in the caller's
transaction, each under a unique dedupe key, and delivered later by
`server.cases.deadline_service.deliver_outbox`, so a message is never sent twice.

A resident's number (a petitioner's, a mediation party's) is personal data: it is passed as a
`ResidentPhone` and kept encrypted with the PII cipher (#17 finding 13), decrypted only by the
sender (`recipient_of`). Staff numbers, which the staff directory holds anyway, are passed as
a `StaffPhone` and kept as they are. The outbox takes no bare string: every caller says whose
number it is, and `stored_recipient` is the one place the `to` column is written. `onedoor pii
rotate` also encrypts residents' numbers queued before this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.models import CaseNotification
from server.kernel.crypto import DecryptionFailed, PiiCipher

#: How an encrypted value starts (`PiiCipher.encrypt`); a phone number never does.
SEALED_PREFIX = "v1:"
#: Dedupe-key prefixes of messages to residents (receipts, extensions, evaluation and signing
#: links): the rows `seal_resident_numbers` encrypts.
RESIDENT_KEYS = ("reception:", "ext:", "eval:", "agreement_link:")


@dataclass(frozen=True, slots=True)
class ResidentPhone:
    """A resident's number for the outbox: stored encrypted with `pii`."""

    number: str
    pii: PiiCipher


@dataclass(frozen=True, slots=True)
class StaffPhone:
    """A staff member's or a 抄告 contact's number (the staff directory holds it): stored as
    it is."""

    number: str


#: Whom an outbox message goes to: a resident (encrypted) or staff (as it is).
Recipient = ResidentPhone | StaffPhone


def stored_recipient(to: Recipient) -> str:
    """The value kept in `case_notification.to`: a resident's number encrypted with the PII
    cipher, a staff number as it is.

    Raises:
        TypeError: a bare string (whose number it is must be said).
    """
    if isinstance(to, ResidentPhone):
        return to.pii.encrypt(to.number)
    if isinstance(to, StaffPhone):
        return to.number
    raise TypeError("the outbox takes a ResidentPhone or a StaffPhone, not a bare number")


def recipient_of(stored: str, pii: PiiCipher | None) -> str:
    """The number to send to: `stored` itself, or decrypted when it was sealed.

    Raises:
        DecryptionFailed: sealed, and no key (or not the right one) was given.
    """
    if not stored.startswith(SEALED_PREFIX):
        return stored
    if pii is None:
        raise DecryptionFailed("a sealed number and no PII key to open it")
    return pii.decrypt(stored)


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    case_id: int | None,
    to: Recipient,
    subject: str,
    body: str,
    now: datetime,
    channel: str = "sms",
) -> bool:
    """Add a message to the outbox unless one with the same key exists (idempotent). A
    `ResidentPhone` is stored encrypted (`stored_recipient`)."""
    exists = await session.scalar(
        select(CaseNotification.id).where(CaseNotification.dedupe_key == key)
    )
    if exists is not None:
        return False
    session.add(
        CaseNotification(
            dedupe_key=key,
            case_id=case_id,
            to=stored_recipient(to),
            channel=channel,
            subject=subject,
            body=body,
            status="pending",
            attempts=0,
            created_at=now,
            due_at=now,
            last_error="",
        )
    )
    return True


async def enqueue_many(session: AsyncSession, messages: list[dict[str, Any]]) -> None:
    """Add messages to the outbox in one statement; a key already there is skipped (the
    unique dedupe key decides, so concurrent or repeated sweeps cannot send twice). Each
    message's "to" is a `Recipient`, stored by `stored_recipient`."""
    if not messages:
        return
    messages = [{**m, "to": stored_recipient(m["to"])} for m in messages]
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        upsert(CaseNotification).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        messages,
    )


async def seal_resident_numbers(session: AsyncSession, *, pii: PiiCipher) -> int:
    """Encrypt residents' numbers that an earlier version queued in the clear, and re-encrypt
    sealed ones still under an old key (part of `onedoor pii rotate`; idempotent). Returns
    how many rows were rewritten."""
    plain = (
        await session.scalars(
            select(CaseNotification).where(
                ~CaseNotification.to.startswith(SEALED_PREFIX),
                or_(*(CaseNotification.dedupe_key.startswith(k) for k in RESIDENT_KEYS)),
            )
        )
    ).all()
    for row in plain:
        row.to = pii.encrypt(row.to)
    old = [
        row
        for row in await session.scalars(
            select(CaseNotification).where(CaseNotification.to.startswith(SEALED_PREFIX))
        )
        if pii.needs_rotation(row.to)
    ]
    for row in old:
        row.to = pii.encrypt(pii.decrypt(row.to))
    await session.flush()
    return len(plain) + len(old)
