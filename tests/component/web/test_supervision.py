"""Supervision (issue #15, item 5): a case overdue long enough for the sweep's 三级抄告 level 2
can be opened by the 督办领导 who was told (the escalation contact), but a confidential one
never by the accused unit; a 督办 is answered by the lead department's handler on the case
page and the supervisor records the verdict, each writing the timeline and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.cases.deadline_service import run_deadline_sweep
from server.cases.models import CaseDeadline, CaseEscalation, EscalationContact, PetitionCase
from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.org.models import Role, Staff, StaffRole
from tests.component.web.test_case_workbench import (
    act,
    as_user,
    counts,
    dept_id,
    register,
    text_of,
)
from tests.conftest import make_settings

Client = TestClient[Any, Any]


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def client(tmp_path: Path, demo_db_url: str) -> AsyncIterator[Client]:
    app = create_app(make_settings(tmp_path, demo_db_url))
    async with TestClient(TestServer(app)) as c:
        yield c


async def make_overdue(db: async_sessionmaker[AsyncSession], case_id: int, days: int = 10) -> None:
    """The case's acceptance deadline fell due `days` ago; the sweep then warns, marks it
    overdue and escalates (levels 1-3 at 0, 3 and 7 days over)."""
    past = utcnow() - timedelta(days=days)
    async with db.begin() as s:
        await s.execute(
            update(CaseDeadline)
            .where(CaseDeadline.case_id == case_id)
            .values(due_at=past, next_action_at=past)
        )
    await run_deadline_sweep(db, now=utcnow(), notifier=None)


async def test_the_escalated_leader_opens_the_case_and_finds_it_in_the_list(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    await as_user(client, "dleader01")
    assert (await client.get(f"/cases/{case_id}")).status == 404
    await make_overdue(db, case_id)
    page = await client.get(f"/cases/{case_id}")
    assert page.status == 200
    assert "三级抄告" in text_of(await page.text())
    listing = await (await client.get("/cases")).text()
    assert f'href="/cases/{case_id}"' in listing


async def test_a_confidential_case_stays_hidden_from_the_accused_unit_after_escalation(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    urban = await dept_id(db, "urban")
    case_id = await register(
        client,
        matter_type="official_misconduct",
        summary="举报某执法人员收受好处",
        accused_department=str(urban),
        **{"attr-official_misconduct-accused": "区城管局某中队"},
    )
    async with db.begin() as s:
        # the accused unit's leader is also a level-2 contact: still never shown the case
        leader = await s.scalar(select(Staff).where(Staff.username == "leader03"))
        assert leader is not None and leader.department_id == urban
        s.add(
            EscalationContact(department_id=None, level=2, staff_id=leader.id, created_at=utcnow())
        )
    await make_overdue(db, case_id)
    await as_user(client, "leader03")
    assert (await client.get(f"/cases/{case_id}")).status == 404
    assert f'href="/cases/{case_id}"' not in await (await client.get("/cases")).text()


async def test_the_unit_answers_a_supervision_and_the_supervisor_records_the_verdict(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)  # 养老服务: led by 区民政局 (handler05, leader05)
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "supervise", type="supervision",
                     note="请于七日内报告办理进展", due_days="7")  # fmt: skip
    assert resp.status == 303
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="action-close_supervision"' not in html  # nothing to judge yet

    token = await as_user(client, "handler05")
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="action-respond_supervision"' in html
    resp = await act(client, token, case_id, "respond_supervision", response="")
    assert resp.status == 422 and "请填写督办答复" in await resp.text()
    before = await counts(db, case_id, "case.supervision_respond")
    resp = await act(client, token, case_id, "respond_supervision",
                     response="已约谈养老院负责人，收费明细已在院内公示")  # fmt: skip
    assert resp.status == 303
    after = await counts(db, case_id, "case.supervision_respond")
    assert after == (before[0] + 1, before[1] + 1)
    async with db() as s:
        esc = await s.scalar(select(CaseEscalation).where(CaseEscalation.case_id == case_id))
        assert esc is not None and esc.response and esc.responded_at is not None
    # answered once: a second answer is refused and changes nothing
    resp = await act(client, token, case_id, "respond_supervision", response="再次答复")
    assert resp.status in (403, 409)

    token = await as_user(client, "supervisor01")
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert "已约谈养老院负责人" in text_of(html)
    resp = await act(client, token, case_id, "close_supervision", verdict="unsatisfied", comment="")
    assert resp.status == 422 and "评议为不满意时请写明理由" in await resp.text()
    resp = await act(client, token, case_id, "close_supervision", verdict="satisfied", comment="")
    assert resp.status == 303
    assert (await counts(db, case_id, "case.supervision_close"))[1] == 1
    words = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "督办评议：满意" in words
    assert "action-close_supervision" not in words


async def test_a_handler_of_another_unit_may_not_answer(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "supervisor01")
    await act(client, token, case_id, "supervise", type="supervision", note="请报告", due_days="7")
    token = await as_user(client, "handler02")
    resp = await act(client, token, case_id, "respond_supervision", response="不是我们的事")
    assert resp.status in (403, 404)


async def test_the_leader_of_the_unit_a_supervision_is_addressed_to_may_open_a_confidential_case(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    urban = await dept_id(db, "urban")
    case_id = await register(
        client,
        matter_type="official_misconduct",
        summary="举报某执法人员收受好处",
        accused_department=str(urban),
        **{"attr-official_misconduct-accused": "区城管局某中队"},
    )
    housing = await dept_id(db, "housing")  # its leader is leader02
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "transfer", target_department_id=str(housing))
    assert resp.status == 303
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and row.confidential and row.lead_dept_id == housing
        leader = await s.scalar(
            select(Staff.username)
            .join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(Staff.department_id == housing, StaffRole.role == Role.dept_leader)
        )
    assert leader is not None
    await as_user(client, leader)
    assert (await client.get(f"/cases/{case_id}")).status == 404  # confidential: named only
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "supervise", type="supervision",
                     note="请核查并报告", due_days="7")  # fmt: skip
    assert resp.status == 303
    await as_user(client, leader)
    page = await client.get(f"/cases/{case_id}")
    assert page.status == 200 and 'id="action-respond_supervision"' in await page.text()
