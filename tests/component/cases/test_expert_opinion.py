"""专家意见 (#17 finding 12): an expert invited to a case records a written opinion; it shows on
the handler row and the timeline, is audited, and only the invited expert may give it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.models import AuditEntry
from server.cases import access, lifecycle, queries
from server.cases.lifecycle import NotInvitedExpert
from server.cases.schemas import HandlerRequest
from server.kernel.crypto import PiiCipher
from server.kernel.errors import IllegalTransition, InvalidInput, PermissionDenied

from .conftest import NOW, who
from .test_lifecycle import fire, register

OPINION = "经审查劳动合同与工资台账，拖欠事实清楚，建议责令用人单位限期足额支付。"


async def invite(db: async_sessionmaker[AsyncSession], case_id: int, username: str) -> None:
    async with db.begin() as s:
        expert = await who(s, username)
        await lifecycle.add_handler(
            s,
            staff=await who(s, "supervisor01"),
            case_id=case_id,
            request=HandlerRequest(staff_id=expert.staff_id, role="expert", task="请出具意见"),
            now=NOW,
        )


async def opine(
    db: async_sessionmaker[AsyncSession], username: str, case_id: int, text: str = OPINION
) -> None:
    async with db.begin() as s:
        await lifecycle.record_expert_opinion(
            s,
            staff=await who(s, username),
            case_id=case_id,
            opinion=text,
            now=NOW + timedelta(days=3),
        )


async def test_invited_expert_records_opinion_on_case_and_timeline(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    await fire(db, "handler01", case_id, "accept")
    async with db() as s:  # not invited yet: the case is out of the expert's scope
        with pytest.raises(access.CaseNotFound):
            await queries.case_detail(s, staff=await who(s, "expert01"), case_id=case_id)
    await invite(db, case_id, "expert01")
    async with db() as s:
        detail = await queries.case_detail(s, staff=await who(s, "expert01"), case_id=case_id)
        assert "expert_opinion" in detail.actions
        other = await queries.case_detail(s, staff=await who(s, "handler01"), case_id=case_id)
        assert "expert_opinion" not in other.actions
    await opine(db, "expert01", case_id)
    async with db() as s:
        detail = await queries.case_detail(s, staff=await who(s, "handler01"), case_id=case_id)
        [expert] = [h for h in detail.handlers if h.role == "expert"]
        assert expert.reply == OPINION
        events = await queries.timeline(s, staff=await who(s, "handler01"), case_id=case_id)
        [event] = [e for e in events if e.type == "expert_opinion"]
        assert event.payload["opinion"] == OPINION
        assert event.at == NOW + timedelta(days=3)
        audit = (
            await s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "case.expert_opinion",
                    AuditEntry.object_id == str(case_id),
                )
            )
        ).all()
        assert len(audit) == 1
        assert OPINION not in str(audit[0].detail)  # the text is on the case, not in the log


async def test_only_an_invited_expert_and_only_on_open_cases(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    await fire(db, "handler01", case_id, "accept")
    await invite(db, case_id, "expert01")
    with pytest.raises(PermissionDenied):  # a handler is not an expert
        await opine(db, "handler01", case_id)
    with pytest.raises(access.CaseNotFound):  # another expert, not invited: nothing disclosed
        await opine(db, "expert02", case_id)
    async with db.begin() as s:  # expert02 named as a co-handler, not as the expert
        expert2 = await who(s, "expert02")
        await lifecycle.add_handler(
            s,
            staff=await who(s, "supervisor01"),
            case_id=case_id,
            request=HandlerRequest(staff_id=expert2.staff_id, role="co"),
            now=NOW,
        )
    with pytest.raises(NotInvitedExpert):
        await opine(db, "expert02", case_id)
    with pytest.raises(InvalidInput):
        await opine(db, "expert01", case_id, "   ")
    await fire(db, "handler01", case_id, "start_handling")
    await fire(db, "handler01", case_id, "reply", reply="已责令补发工资")
    await fire(db, "window01", case_id, "revisit", note="工资已到账")
    await fire(db, "window01", case_id, "close")
    with pytest.raises(IllegalTransition):
        await opine(db, "expert01", case_id)
