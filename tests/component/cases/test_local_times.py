"""Deadline warnings are texted in the district's clock (issue #15): a deadline ends at local
midnight, so its SMS says "00:00" of the Beijing day, not 16:00 "（UTC）" the day before."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import deadline_service as dls
from server.cases.models import CaseDeadline, CaseNotification
from server.kernel import clock
from server.kernel.crypto import PiiCipher
from server.org.models import Staff

from .conftest import NOW, who
from .test_deadlines_and_evaluation import handling_case


async def test_deadline_warning_sms_shows_the_beijing_due_time(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await handling_case(db, pii)
    async with db.begin() as s:
        staff = await s.get(Staff, (await who(s, "handler02")).staff_id)
        assert staff is not None
        staff.phone = "13900000002"
    # Without a notifier the messages stay in the outbox, where the test reads them.
    report = await dls.run_deadline_sweep(db, now=NOW + timedelta(days=65), notifier=None)
    assert report.warnings >= 1
    async with db() as s:
        due = await s.scalar(
            select(CaseDeadline.due_at).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "handling"
            )
        )
        bodies = list(
            await s.scalars(
                select(CaseNotification.body).where(
                    CaseNotification.case_id == case_id,
                    CaseNotification.subject == "黄色预警：办理期限",
                )
            )
        )
    assert due is not None and bodies
    local = clock.to_local(due)
    assert (local.hour, local.minute) == (0, 0)  # deadlines end at Beijing midnight
    for body in bodies:
        assert f"将于{local:%Y-%m-%d} 00:00到期" in body, body
        assert "UTC" not in body and f"{due:%Y-%m-%d %H:%M}" not in body
