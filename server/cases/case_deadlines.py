"""Deadline actions as a staff member takes them on a case (REST API and case page alike):
the case must be visible to them, and an extension tells the petitioner by SMS. The rules
themselves are server.cases.deadline_clock's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.permissions import StaffIdentity
from server.cases import deadline_clock
from server.cases.access import check_visible
from server.cases.outbox import ResidentPhone
from server.cases.queries import petitioner_phone
from server.kernel.crypto import PiiCipher


async def extend(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    days: int,
    reason: str,
    now: datetime,
    deadlines: deadline_clock.DeadlineClock,
    pii: PiiCipher,
) -> deadline_clock.DeadlineState:
    """延期 (deadline_clock.extend_deadline), the petitioner told the reason by SMS."""
    await check_visible(session, staff=staff, case_id=case_id)
    phone = await petitioner_phone(session, pii=pii, case_id=case_id)
    return await deadline_clock.extend_deadline(
        session,
        staff=staff,
        case_id=case_id,
        kind=kind,
        days=days,
        reason=reason,
        now=now,
        deadlines=deadlines,
        petitioner_phone=ResidentPhone(phone, pii) if phone else None,
    )


async def pause(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    reason: str,
    now: datetime,
) -> deadline_clock.DeadlineState:
    await check_visible(session, staff=staff, case_id=case_id)
    return await deadline_clock.pause_deadline(
        session, staff=staff, case_id=case_id, kind=kind, reason=reason, now=now
    )


async def resume(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    now: datetime,
    deadlines: deadline_clock.DeadlineClock,
) -> deadline_clock.DeadlineState:
    await check_visible(session, staff=staff, case_id=case_id)
    return await deadline_clock.resume_deadline(
        session, staff=staff, case_id=case_id, kind=kind, now=now, deadlines=deadlines
    )
