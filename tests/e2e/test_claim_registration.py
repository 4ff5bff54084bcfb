"""A self-service registration claimed into the pipeline (issue #15 item 4): a resident registers
at the kiosk; the window officer finds it on the home page among the cases waiting for them,
opens it and claims it (认领): they become its first-responsible officer, the timeline says so,
and a second claim is no longer offered. Screenshots at 1280 and 390 px with axe-core."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "claim"


async def test_a_kiosk_registration_is_claimed_by_the_window_officer(
    server: Server,
    page: Any,
    as_user: Any,
) -> None:
    await page.goto(server.base_url + "/kiosk")
    await page.click("label.matter:has-text('噪声扰民')")
    await page.fill("textarea[name=description]", "小区广场舞音响夜间声音过大")
    await page.fill("input[name=name]", "钱七")
    await page.fill("input[name=phone]", "13812345670")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#case-no")
    case_no = (await page.inner_text("#case-no")).strip()

    window = await as_user("window01")
    link = window.locator(f"a:has-text('{case_no}')").first
    await link.wait_for()
    await shoot(window, f"{SHOT}-01-home-waiting")
    await link.click()
    await window.wait_for_selector("#action-claim")
    assert "待认领" in (await window.inner_text("#first-receiver"))
    await shoot(window, f"{SHOT}-02-unclaimed", height=1200)
    await window.click("#action-claim > summary")
    await window.click("#action-claim button[type=submit]")
    await window.wait_for_selector("#flash")
    officer = (await window.inner_text("#first-receiver")).strip()
    assert officer and "待认领" not in officer
    assert await window.locator("#action-claim").count() == 0
    assert "认领" in (await window.inner_text("#timeline"))
    await shoot(window, f"{SHOT}-03-claimed", height=1200)
