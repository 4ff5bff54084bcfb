"""The system administrator's pages in a real Chromium: from the home tile to
/admin/holidays, a refused day stays at its field (typed values kept), a day is added, the provisional 2027 file is
loaded from disk (warning shown); a staff account is created (password shown once), the new
staff member signs in with it and must choose their own password first (the same one refused),
and the account is disabled; a deadline figure is refused at its field; screenshots at 1280 and 390 px, axe-core clean."""

from __future__ import annotations

from typing import Any

import pytest

from server.cases.holiday_calendar import SHIPPED_DIR
from tests.conftest import DEMO_PASSWORD
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "admin-sys"


async def _first_sign_in(browser: Any, server: Server, initial: str) -> None:
    """The new staff member, on their own browser: sign-in leads to the change page, other
    pages lead back there, the same password is refused at its field, their own is taken."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    try:
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(server.base_url + "/login")
        await page.fill("input[name=username]", "clerk-new")
        await page.fill("input[name=password]", initial)
        await page.click("button[type=submit]")
        await page.wait_for_selector("#password-forced")
        assert page.url.endswith("/account/password")
        await shoot(page, f"{SHOT}-06a-must-change")
        await page.goto(server.base_url + "/cases")
        await page.wait_for_selector("#password-forced")  # still there
        await page.fill("#pw-current_password", initial)
        await page.fill("#pw-new_password", initial)
        await page.fill("#pw-confirm", initial)
        await page.click("#password-form button[type=submit]")
        await page.wait_for_selector("#pw-new_password-err")
        await shoot(page, f"{SHOT}-06b-same-refused")
        own = "Mein2eigenes"
        await page.fill("#pw-current_password", initial)
        await page.fill("#pw-new_password", own)
        await page.fill("#pw-confirm", own)
        await page.click("#password-form button[type=submit]")
        await page.wait_for_selector("h1")
        assert not page.url.endswith("/account/password")
        assert await page.query_selector("#password-forced") is None
        await shoot(page, f"{SHOT}-06c-changed")
    finally:
        await context.close()


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
        await _first_sign_in(browser, server, await page.inner_text("#initial-password"))
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
        # about 100 rooms and terminals: grouped per site, every group closed at first
        assert await page.locator("#resource-table details[open]").count() == 0
        await shoot(page, f"{SHOT}-08a-org-grouped", height=1400)
        await page.fill("#org-q", "调解室")
        await page.click("#org-filter button[type=submit]")
        await page.wait_for_selector("#filter-result")
        assert await page.locator("#resource-table details[open]").count() > 0
        assert "综合窗口" not in await page.inner_text("#resource-table")
        await shoot(page, f"{SHOT}-08b-org-filtered", height=1400)
        await page.goto(server.base_url + "/admin/org")
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
