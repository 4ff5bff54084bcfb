"""The system administrator's pages in a real Chromium: from the home tile to
/admin/holidays, a refused day stays at its field (typed values kept), a day is added, the provisional 2027 file is
loaded from disk (warning shown); a staff account is created (password shown once) and
disabled; a deadline figure is refused at its field; screenshots at 1280 and 390 px, axe-core clean."""

from __future__ import annotations

from typing import Any

import pytest

from server.cases.holiday_calendar import SHIPPED_DIR
from tests.conftest import DEMO_PASSWORD
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "admin-sys"


async def test_sys_admin_pages(server: Server, browser: Any) -> None:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    try:
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(server.base_url + "/login")
        await page.fill("input[name=username]", "sysadmin")
        await page.fill("input[name=password]", DEMO_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1")
        await shoot(page, f"{SHOT}-01-home")
        await page.click("a[href='/admin/holidays']")
        await page.wait_for_selector("#holiday-add")
        await page.goto(server.base_url + "/admin/holidays?year=2026")
        await page.wait_for_selector("#holidays")
        await shoot(page, f"{SHOT}-02-year-2026", height=1400)
        await page.fill("#holiday-add input[name=day]", "2026-10-01")  # listed already
        await page.fill("#holiday-add input[name=name]", "区级调整")
        await page.click("#holiday-add button[type=submit]")
        await page.wait_for_selector("#err-day")
        assert await page.input_value("#holiday-add input[name=name]") == "区级调整"
        await shoot(page, f"{SHOT}-03-refused")
        await page.fill("#holiday-add input[name=day]", "2026-12-31")
        await page.click("#holiday-add button[type=submit]")
        await page.wait_for_selector("#holidays >> text=区级调整")
        await page.goto(server.base_url + "/admin/holidays?year=2027")
        await page.set_input_files("#holiday-load input[name=file]", str(SHIPPED_DIR / "2027.json"))
        await page.click("#holiday-load button[type=submit]")
        await page.wait_for_selector("#provisional")
        assert "2027-02-05" in await page.content()
        await shoot(page, f"{SHOT}-04-provisional-2027", height=1400)
        # a staff account, with a generated initial password shown once
        await page.goto(server.base_url + "/")
        await page.click("a[href='/admin/staff']")
        await page.wait_for_selector("#staff-create")
        await shoot(page, f"{SHOT}-05-staff")
        await page.fill("#staff-create input[name=username]", "clerk-new")
        await page.fill("#staff-create input[name=display_name]", "新同事")
        await page.select_option("#staff-create select[name=site_id]", index=1)
        await page.click("#staff-create button[type=submit]")
        await page.wait_for_selector("#initial-password")
        await shoot(page, f"{SHOT}-06-staff-created")
        await page.fill("#staff-search input[name=q]", "clerk-new")
        await page.click("#staff-search button[type=submit]")
        await page.click("#accounts a >> text=clerk-new")
        await page.wait_for_selector("#staff-edit")
        await page.click("#staff-active button[type=submit]")
        await page.wait_for_selector("#account-state >> text=已停用")
        await shoot(page, f"{SHOT}-07-staff-disabled")
        # deadline policies
        await page.goto(server.base_url + "/")
        await page.click("a[href='/admin/deadlines']")
        await page.wait_for_selector("#policy-acceptance")
        await page.fill("#policy-acceptance input[name=yellow_days]", "99")
        await page.click("#policy-acceptance button[type=submit]")
        await page.wait_for_selector("#err-acceptance-yellow_days")
        await shoot(page, f"{SHOT}-08-deadlines", height=1400)

        # the organisation: a new mediation room at the centre, then a wrong parent refused
        await page.goto(server.base_url + "/")
        await page.click("a[href='/admin/org']")
        await page.wait_for_selector("#resource-add")
        await page.select_option("#resource-add-type", "mediation_room")
        await page.fill("#resource-add-name", "第九调解室")
        await page.click("#resource-add button[type=submit]")
        await page.wait_for_selector("#flash")
        assert "第九调解室" in (await page.inner_text("#resource-table"))
        await page.select_option("#site-add-level", "community")
        await page.fill("#site-add-name", "错挂社区")
        await page.fill("#site-add-admin_code", "330105999003")
        await page.click("#site-add button[type=submit]")
        await page.wait_for_selector("#site-add-parent_id-err")
        assert await page.input_value("#site-add-name") == "错挂社区"
        await shoot(page, f"{SHOT}-09-org", height=1400)
    finally:
        await context.close()
