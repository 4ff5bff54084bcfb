"""/account/tokens in a real Chromium: a refused scope stays at its field, a token is shown
once, then revoked; screenshots at 1280 and 390 px, axe-core clean."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "api-tokens"


async def test_create_and_revoke_a_token(server: Server, browser: Any) -> None:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    try:
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(server.base_url + "/login")
        await page.fill("input[name=username]", "window01")
        await page.fill("input[name=password]", DEMO_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1")
        await page.click("a[href='/account/tokens']")
        await page.wait_for_selector("#token-create")
        await shoot(page, f"{SHOT}-01-empty")
        await page.fill("input[name=name]", "排班系统对接")
        await page.click("#token-create button[type=submit]")
        await page.wait_for_selector("#err-scopes")
        assert await page.input_value("input[name=name]") == "排班系统对接"
        await shoot(page, f"{SHOT}-02-no-scope")
        await page.check("input[name=scopes][value='case.view']")
        await page.click("#token-create button[type=submit]")
        token = await page.text_content("#token-value")
        assert token is not None and token.startswith("odt_")
        await shoot(page, f"{SHOT}-03-created")
        await page.goto(server.base_url + "/account/tokens")
        assert token not in await page.content()
        await page.click("#tokens button[type=submit]")
        await page.wait_for_selector("#tokens >> text=已撤销")
        await shoot(page, f"{SHOT}-04-revoked")
    finally:
        await context.close()
