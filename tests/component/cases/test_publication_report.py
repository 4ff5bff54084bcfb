"""The publication report (《今日拱墅》, #17 finding 7): only a unit's own delays count (never
a petitioner's unused 复查 window or the parties' 司法确认 window), no case numbers (they name
the community), and its drafter may not approve it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import deadline_service, evaluation
from server.cases.evaluation import DrafterMayNotApprove
from server.cases.models import CaseDeadline, PetitionCase
from server.kernel.crypto import PiiCipher
from tests.fakes import RecordingNotifier

from .conftest import NOW, who
from .test_lifecycle import fire, register


async def test_only_units_delays_no_case_numbers_and_another_supervisor_approves(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    # closed on time: replied at once, the petitioner never asked for 复查
    on_time = await register(db, pii)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("accept", {}),
        ("start_handling", {}),
        ("reply", {"reply": "已答复"}),
        ("revisit", {"note": "已解决"}),
        ("close", {}),
    ]
    for name, fields in steps:
        await fire(db, "handler01", on_time, name, **fields)
    # late: accepted, never replied
    late = await register(db, pii)
    await fire(db, "handler01", late, "accept")
    await deadline_service.run_deadline_sweep(
        db, now=NOW + timedelta(days=70), notifier=RecordingNotifier()
    )
    async with db() as s:
        kinds = {
            (row.case_id, row.kind, row.status)
            for row in await s.scalars(select(CaseDeadline).where(CaseDeadline.status == "overdue"))
        }
        case_nos = set(await s.scalars(select(PetitionCase.case_no)))
    assert (late, "handling", "overdue") in kinds
    # the sweep marks the petitioner's lapsed 复查 window too; the report must not count it
    assert (on_time, "review_request", "overdue") in kinds
    async with db.begin() as s:
        drafter = await who(s, "supervisor01")
        report_id = await evaluation.draft_publication_report(
            s,
            staff=drafter,
            since=NOW,
            until=NOW + timedelta(days=90),
            now=NOW + timedelta(days=70),
        )
    async with db.begin() as s:
        with pytest.raises(DrafterMayNotApprove):
            await evaluation.approve_publication_report(
                s, staff=drafter, report_id=report_id, now=NOW + timedelta(days=70)
            )
    async with db.begin() as s:
        await evaluation.approve_publication_report(
            s, staff=await who(s, "supervisor02"), report_id=report_id, now=NOW + timedelta(days=71)
        )
    async with db() as s:
        published = await evaluation.published_report(s, report_id=report_id)
    items = published["items"]
    assert [(i["problem"], i["kind"]) for i in items] == [("overdue", "handling")]
    assert not any(no in str(published) for no in case_nos)  # no case number anywhere
