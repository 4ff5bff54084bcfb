"""Supervision in the browser (issue #15, item 5): a walk-in is registered, the clock moves on
past its acceptance deadline (the deadline sweep runs with a later `now`), the centre's
supervisor finds it on the overdue board and issues a 督办, the lead department's handler
answers from the case page (the 督办 waits on their home page), the supervisor records the
verdict, and the 督办领导 told by 三级抄告 at level 2 finds it on their home page and opens it.
Every page is screenshot at 1280 and 390 px into artifacts/e2e/ and checked by axe-core."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.cases.deadline_service import run_deadline_sweep
from server.cases.models import CaseDeadline, CaseEvent, PetitionCase
from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.kernel.settings import Settings
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.test_case_workbench import act

pytestmark = pytest.mark.e2e

SHOT = "supervision"


async def registered_days_ago(server: Server, case_id: int, days: int) -> None:
    """Move the case back in time as if it had been registered `days` ago (its registration,
    timeline and deadlines), then run the deadline sweep now: warnings, overdue, 三级抄告."""
    engine = make_engine(Settings(data_dir=server.data_dir).effective_database_url)
    sessionmaker = make_sessionmaker(engine)
    shift = timedelta(days=days)
    try:
        async with sessionmaker.begin() as session:
            case = await session.get(PetitionCase, case_id)
            assert case is not None
            case.registered_at -= shift
            for d in await session.scalars(
                select(CaseDeadline).where(CaseDeadline.case_id == case_id)
            ):
                d.start_at -= shift
                d.base_due_at -= shift
                d.due_at -= shift
                if d.next_action_at is not None:
                    d.next_action_at -= shift
            for e in await session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id)):
                e.at -= shift
        report = await run_deadline_sweep(sessionmaker, now=utcnow(), notifier=None)
        assert report.escalations >= 2, report
    finally:
        await engine.dispose()


async def test_overdue_case_supervised_answered_judged_and_opened_by_the_leader(
    server: Server,
    as_user: Any,
) -> None:
    window = await as_user("window01")
    await window.goto(server.base_url + "/cases/new")
    await window.fill("#i-name", "钱桂英")
    await window.fill("#i-phone", "13812345678")
    await window.select_option("#i-matter", "elderly_care")
    await window.fill("#i-summary", "养老院收费不透明，要求公开收费明细并退还多收费用")
    await window.click("#intake-form button[type=submit]")
    await window.wait_for_selector("#flash")
    match = re.search(r"/cases/(\d+)", window.url)
    assert match
    case_id = match.group(1)
    case_url = f"{server.base_url}/cases/{case_id}"

    # 15 days to accept, then 抄告 at 0, 3 and 7 days over (level 2: the 督办领导)
    await registered_days_ago(server, int(case_id), days=25)

    supervisor = await as_user("supervisor01")
    await shoot(supervisor, f"{SHOT}-01-home-supervisor")
    await supervisor.click("a.menu-tile[href='/cases/board']")
    row = supervisor.locator(f"#board tr[data-case='{case_id}']")
    await row.wait_for()
    assert "已超期" in (await row.text_content() or "")
    await shoot(supervisor, f"{SHOT}-02-board")
    await supervisor.goto(server.base_url + "/cases?deadline=overdue")
    assert "共 1 件" in (await supervisor.text_content("#case-total") or "")
    await shoot(supervisor, f"{SHOT}-03-list-overdue")
    await supervisor.goto(server.base_url + "/cases/board")
    await row.locator(f"a[href='/cases/{case_id}?open=supervise#action-supervise']").click()
    await supervisor.wait_for_selector("#action-supervise[open]")  # the form is open
    await supervisor.fill("#f-supervise-note", "已超期，请三日内报告办理情况")
    await shoot(supervisor, f"{SHOT}-04-supervise-form")
    await supervisor.click("#action-supervise button[type=submit]")
    await supervisor.wait_for_selector("#flash")
    await shoot(supervisor, f"{SHOT}-05-supervised")

    handler = await as_user("handler05")
    supervisions = handler.locator("#supervision-list")
    await supervisions.wait_for()
    assert f"/cases/{case_id}" in (await supervisions.inner_html())
    await shoot(handler, f"{SHOT}-06-home-handler")
    await supervisions.locator(f"a[href='/cases/{case_id}']").click()
    await handler.wait_for_selector("#action-respond_supervision")
    await act(handler, "respond_supervision", {"#f-respond_supervision-response": ""})
    await handler.wait_for_selector("#f-respond_supervision-response-err")
    await shoot(handler, f"{SHOT}-07-response-error")
    await handler.fill(
        "#f-respond_supervision-response", "已约谈养老院负责人，收费明细已公示，多收费用本周退还"
    )
    await handler.click("#action-respond_supervision button[type=submit]")
    await handler.wait_for_selector("#flash")
    await shoot(handler, f"{SHOT}-08-responded")

    await supervisor.goto(case_url)
    await act(
        supervisor,
        "close_supervision",
        {"select:#f-close_supervision-verdict": "满意", "#f-close_supervision-comment": "措施到位"},
    )
    await supervisor.wait_for_selector("#flash")
    timeline = await supervisor.text_content("#timeline") or ""
    for words in ("督办", "督办答复：已约谈养老院负责人", "督办评议：满意"):
        assert words in timeline, words
    await shoot(supervisor, f"{SHOT}-09-verdict")

    leader = await as_user("dleader01")
    escalated = leader.locator("#escalated-list")
    await escalated.wait_for()
    await shoot(leader, f"{SHOT}-10-home-supervising-leader")
    await escalated.locator(f"a[href='/cases/{case_id}']").click()
    await leader.wait_for_selector("#timeline")
    assert "三级抄告" in (await leader.text_content("#timeline") or "")
    await shoot(leader, f"{SHOT}-11-leader-case")
