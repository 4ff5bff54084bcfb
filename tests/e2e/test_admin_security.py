"""The admin journeys in a real Chromium (三员分立): the security administrator grants a role
and resets a staff member's second factor; the audit administrator filters the log, sees the
grant with names and labels, and exports it as CSV. Every page at 1280 and 390 px with axe."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "admin-security"


async def _sign_in(context: Any, base: str, username: str) -> Any:
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("h1")
    return page


async def _enrol_totp(browser: Any, base: str, username: str) -> None:
    """The staff member sets up an authenticator (so there is one to reset)."""
    context = await browser.new_context(locale="zh-CN", bypass_csp=True)
    try:
        page = await _sign_in(context, base, username)
        await page.click("form[action='/account/2fa'] button")
        secret = (await page.text_content("#totp-secret") or "").strip()
        await page.fill("input[name=code]", pyotp.TOTP(secret).at(time.time()))
        await page.click("form[action='/login/2fa'] button[type=submit]")
        await page.wait_for_selector(".tiles")
    finally:
        await context.close()


async def _wrong_passwords(browser: Any, base: str, username: str, *, times: int) -> None:
    context = await browser.new_context(locale="zh-CN", bypass_csp=True)
    try:
        page = await context.new_page()
        for _ in range(times):
            await page.goto(base + "/login")
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", "not-the-password")
            await page.click("button[type=submit]")
            await page.wait_for_selector("[role=alert]")
    finally:
        await context.close()


async def test_sec_admin_grants_and_resets_then_audit_admin_reads_it(
    server: Server, browser: Any
) -> None:
    base = server.base_url
    await _enrol_totp(browser, base, "window01")
    await _wrong_passwords(browser, base, "coord01", times=6)
    sec = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    try:
        page = await _sign_in(sec, base, "secadmin")
        assert await page.locator("a[href='/audit']").count() == 0
        await page.click("a[href='/security']")
        await page.wait_for_selector("#q")
        # the name typed wrong too often waits; the security administrator lifts it
        await page.wait_for_selector("#lockouts >> text=coord01")
        await shoot(page, f"{SHOT}-00-lockouts")
        await page.click("#lockouts button")
        await page.wait_for_selector("#unlock-done >> text=已解除 coord01 的登录限制")
        assert "coord01" not in (await page.text_content("#lockouts") or "")
        await page.fill("#q", "window01")
        await page.click("form[role=search] button")
        await page.wait_for_selector("#accounts >> text=window01")
        await shoot(page, f"{SHOT}-01-find")
        await page.click("#accounts a")
        await page.wait_for_selector("#grant-form")
        # an admin role is not on offer; a business role is granted
        assert await page.locator("#grant-role option[value='sys_admin']").count() == 0
        await page.select_option("#grant-role", "mediator")
        await page.click("#grant-form button[type=submit]")
        await page.wait_for_selector("#done >> text=已授予角色：调解员")
        assert "调解员" in (await page.text_content("#roles") or "")
        await page.click("#totp-reset button")
        await page.wait_for_selector("#done >> text=已重置动态验证码")
        assert "未绑定" in (await page.text_content("#totp-state") or "")
        await shoot(page, f"{SHOT}-02-account", height=1200)
        await page.click("a[href='/security/sessions']")
        await page.wait_for_selector(".sessions-table")
        await shoot(page, f"{SHOT}-03-sessions")
        await page.click("a[href='/security/keys']")
        await page.wait_for_selector("#pii-key")
        await shoot(page, f"{SHOT}-04-keys", height=1200)
        await page.goto(base + "/security")
        await page.fill("#unlock-username", "")
        await page.evaluate(
            "document.querySelector('#unlock-username').removeAttribute('required')"
        )
        await page.click("#unlock-form button[type=submit]")
        await page.wait_for_selector("#err-username")
        await shoot(page, f"{SHOT}-05-unlock-error")
    finally:
        await sec.close()

    audit = await browser.new_context(
        viewport={"width": 1280, "height": 900},
        locale="zh-CN",
        bypass_csp=True,
        accept_downloads=True,
    )
    try:
        page = await _sign_in(audit, base, "auditadmin")
        assert await page.locator("a[href='/security']").count() == 0
        await page.click("a[href='/audit']")
        await page.wait_for_selector("#audit")
        await shoot(page, f"{SHOT}-06-audit", height=1400)
        await page.fill("#f-actor", "secadmin")
        await page.select_option("#f-action", "role.grant")
        await page.click("#audit-filters button.primary")
        await page.wait_for_selector("#audit >> text=授予角色")
        table = await page.text_content("#audit") or ""
        assert "（secadmin）" in table and "（window01）" in table and "角色：调解员" in table
        assert "staff:" not in table and "role.grant" not in table
        await page.click("#audit-filters button[name=verify]")
        await page.wait_for_selector("#chain-status >> text=哈希链完整")
        await shoot(page, f"{SHOT}-07-audit-filtered")
        async with page.expect_download() as info:
            await page.click("#audit-export")
        download = await info.value
        raw = await asyncio.to_thread(Path(await download.path()).read_bytes)
        content = raw.decode("utf-8-sig")
        assert "授予角色" in content and "secadmin" in content
        await page.goto(base + "/audit?action=audit.export")
        await page.wait_for_selector("#audit >> text=导出审计日志")
        await page.goto(base + "/audit?since=2026-12-09&until=2026-12-01")
        await page.wait_for_selector("#err-until")
        await shoot(page, f"{SHOT}-08-audit-bad-range")
        # in English, the labels, actors and details are English too
        await page.goto(base + "/audit?lang=en&action=role.")
        await page.wait_for_selector("#audit >> text=Role granted")
        table = await page.text_content("#audit") or ""
        assert "授予角色" not in table and "Role: " in table
        await shoot(page, f"{SHOT}-09-audit-english", height=1200)
    finally:
        await audit.close()
