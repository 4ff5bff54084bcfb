"""集中交办, 红牌 and the 双评双考 dashboard in the browser (issue #15, item 5): two overdue
walk-ins are ticked on the board and assigned as a batch to the 督办领导 (first with a past
deadline: the message in Chinese next to the field), the supervisor issues a red card to the
lead department, the leader finds the batch on their home page and opens a case, and the
supervisor reads the dashboard over a date range and clicks a figure through to its cases.
Every page is screenshot at 1280 and 390 px into artifacts/e2e/ and checked by axe-core."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.kernel import clock
from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.kernel.settings import Settings
from server.org.models import Staff
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.test_supervision_board import registered_days_ago

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SHOT = "batch"


async def staff_id(server: Server, username: str) -> int:
    engine = make_engine(Settings(data_dir=server.data_dir).effective_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            sid = await session.scalar(select(Staff.id).where(Staff.username == username))
    finally:
        await engine.dispose()
    assert sid is not None
    return int(sid)


async def walk_in(page: Any, server: Server, summary: str) -> int:
    await page.goto(server.base_url + "/cases/new")
    await page.fill("#i-name", "钱桂英")
    await page.fill("#i-phone", "13812345678")
    await page.select_option("#i-matter", "elderly_care")
    await page.fill("#i-summary", summary)
    await page.click("#intake-form button[type=submit]")
    await page.wait_for_selector("#flash")
    match = re.search(r"/cases/(\d+)", page.url)
    assert match
    return int(match.group(1))


async def test_batch_red_card_and_dashboard_drill_down(
    server: Server,
    as_user: Any,
) -> None:
    window = await as_user("window01")
    first = await walk_in(window, server, "养老院收费不透明，要求公开收费明细")
    second = await walk_in(window, server, "养老服务补贴迟迟未发放，要求尽快发放")
    for case_id in (first, second):
        await registered_days_ago(server, case_id, days=25)

    supervisor = await as_user("supervisor01")
    await supervisor.goto(server.base_url + "/cases/board")
    for case_id in (first, second):
        await supervisor.check(f"#pick-{case_id}")
    await shoot(supervisor, f"{SHOT}-01-board-ticked")
    await supervisor.click("#batch-pick button[type=submit]")
    await supervisor.wait_for_selector("#batch-create")
    await supervisor.fill("#b-title", "养老服务突出问题集中交办")
    await supervisor.select_option("#b-leader_id", str(await staff_id(server, "dleader01")))
    await supervisor.fill("#b-due_date", "2020-01-01")
    await supervisor.click("#batch-create button[type=submit]")
    error = await supervisor.wait_for_selector("#b-due_date-err")
    assert (await error.text_content() or "").strip() == "办结期限必须晚于当前时间"
    assert await supervisor.input_value("#b-title") == "养老服务突出问题集中交办"
    await shoot(supervisor, f"{SHOT}-02-form-error")
    due = (clock.local_date(utcnow()) + timedelta(days=5)).isoformat()
    await supervisor.fill("#b-due_date", due)
    await supervisor.click("#batch-create button[type=submit]")
    batch = supervisor.locator("section.batch").first
    await batch.wait_for()
    words = await batch.text_content() or ""
    assert "养老服务突出问题集中交办" in words and "已办结 0 / 2 件" in words
    await shoot(supervisor, f"{SHOT}-03-batches")

    await supervisor.goto(server.base_url + "/cases/red-cards")
    await supervisor.select_option("#r-department_id", label="区民政局")
    await supervisor.fill("#r-reason", "对集中交办事项推诿扯皮，逾期未报告")
    await supervisor.fill("#r-case_id", str(first))
    await supervisor.click("#red-card-create button[type=submit]")
    await supervisor.wait_for_selector("#red-cards td >> text=对集中交办事项推诿扯皮")
    await shoot(supervisor, f"{SHOT}-04-red-cards")

    leader = await as_user("dleader01")
    batches = leader.locator("#home-batches")
    await batches.wait_for()
    assert "养老服务突出问题集中交办" in (await batches.text_content() or "")
    await shoot(leader, f"{SHOT}-05-home-leader")
    await batches.locator(f"a[href='/cases/{first}']").click()
    await leader.wait_for_selector("#timeline")
    assert "集中交办" in (await leader.text_content("#timeline") or "")
    await shoot(leader, f"{SHOT}-06-leader-case")

    await supervisor.goto(server.base_url + "/cases/dashboard?from=2001-01-01&to=2001-01-31")
    await supervisor.wait_for_selector("#dashboard-empty")
    await shoot(supervisor, f"{SHOT}-07-dashboard-empty")
    today = clock.local_date(utcnow())
    await supervisor.fill("#d-from", (today - timedelta(days=40)).isoformat())
    await supervisor.fill("#d-to", (today + timedelta(days=1)).isoformat())
    await supervisor.click("#dashboard-range button[type=submit]")
    await supervisor.wait_for_selector("#dashboard")
    row = supervisor.locator("#dashboard tbody tr", has_text="区民政局")
    assert (await row.locator("td.score").text_content() or "").strip() != ""
    await shoot(supervisor, f"{SHOT}-08-dashboard")
    await row.locator("a[data-drill='overdue']").click()
    await supervisor.wait_for_selector("#assess-filter")
    listing = await supervisor.content()
    assert f"/cases/{first}" in listing and f"/cases/{second}" in listing
    await shoot(supervisor, f"{SHOT}-09-drill-down")
