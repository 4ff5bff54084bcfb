"""导入法定途径 hand-over (#17 finding 12): redirecting a case to a statutory route hands it over
to the centre's room for that route (its officers may then open it), the timeline records which
room and why, and the 导入法定途径告知书 names the room. A route with no room at the centre
(公安机关报案) hands over to nobody and the notice names the organ only."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import access, notices, queries
from server.cases.models import CaseEvent, CaseHandler
from server.kernel.crypto import PiiCipher
from server.org.models import Department, LegalRoute, Staff

from .conftest import who
from .test_lifecycle import fire, register


async def room_officer(db: async_sessionmaker[AsyncSession], route: LegalRoute) -> tuple[int, str]:
    async with db() as s:
        dept = await s.scalar(select(Department).where(Department.legal_route == route))
        assert dept is not None
        username = await s.scalar(
            select(Staff.username)
            .where(Staff.department_id == dept.id, Staff.username.like("handler%"))
            .limit(1)
        )
        assert username is not None
        return dept.id, username


async def test_redirect_hands_the_case_to_the_route_room_and_the_notice_names_it(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    room_dept, officer = await room_officer(db, LegalRoute.arbitration)
    async with db() as s:  # before the hand-over the room's officer may not open the case
        with pytest.raises(access.CaseNotFound):
            await queries.case_detail(s, staff=await who(s, officer), case_id=case_id)
    await fire(
        db,
        "window01",
        case_id,
        "redirect_legal",
        legal_route="arbitration",
        reason="属于劳动争议，应当申请劳动人事争议仲裁",
    )
    async with db() as s:
        [handover] = (
            await s.scalars(
                select(CaseHandler).where(
                    CaseHandler.case_id == case_id, CaseHandler.role == "legal_route"
                )
            )
        ).all()
        assert handover.department_id == room_dept and handover.active
        event = await s.scalar(
            select(CaseEvent).where(
                CaseEvent.case_id == case_id, CaseEvent.type == "redirect_legal"
            )
        )
        assert event is not None
        assert event.payload["room_department_id"] == room_dept
        assert event.payload["room"].endswith("接谈室")
        assert event.payload["reason"].startswith("属于劳动争议")
        detail = await queries.case_detail(s, staff=await who(s, officer), case_id=case_id)
        assert detail.legal_route == "arbitration"
    async with db.begin() as s:
        facts = await notices.notice_facts(
            s, staff=await who(s, officer), case_id=case_id, kind="legal_route", pii=pii
        )
    assert facts.room == event.payload["room"]
    assert facts.legal_route == "arbitration"


async def test_a_route_with_no_room_hands_over_to_nobody(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    await fire(
        db, "window01", case_id, "redirect_legal", legal_route="police", reason="涉嫌诈骗，应当报案"
    )
    async with db() as s:
        handovers = (
            await s.scalars(
                select(CaseHandler).where(
                    CaseHandler.case_id == case_id, CaseHandler.role == "legal_route"
                )
            )
        ).all()
        assert handovers == []
        event = await s.scalar(
            select(CaseEvent).where(
                CaseEvent.case_id == case_id, CaseEvent.type == "redirect_legal"
            )
        )
        assert event is not None and "room" not in event.payload
