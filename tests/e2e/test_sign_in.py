"""A staff member signs in and browses the organisation, in a real Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def test_sign_in_and_browse_organisation(server: Server, page: Any) -> None:
    await page.goto(server.base_url + "/")
    assert "/login" in page.url
    await page.fill("input[name=username]", "window01")
    await page.fill("input[name=password]", "wrong-password")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=用户名或密码错误")
    assert await page.input_value("input[name=username]") == "window01"  # typed input kept
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=接访工作台")
    # The menu tiles are light cards with dark text (the video tiles' dark style once leaked
    # onto them through a shared class name).
    colours = await page.eval_on_selector(
        "a.menu-tile[href='/org']",
        "a => [getComputedStyle(a).backgroundColor, getComputedStyle(a).color]",
    )
    assert colours == ["rgb(255, 255, 255)", "rgb(29, 27, 32)"], colours
    await page.click("a.menu-tile[href='/org']")
    await page.wait_for_selector("#site-tree")
    assert await page.locator("#site-tree a[data-level=street]").count() == 10
    assert await page.locator("#site-tree a[data-level=community]").count() == 94
    await page.click("#site-tree a[data-level=street] >> nth=0")
    await page.wait_for_selector("#resources")
    assert await page.locator("#resources tbody tr").count() >= 2
    await page.click("text=English")
    await page.wait_for_selector("html[lang=en]")


async def test_phone_viewport_sign_in_page(server: Server, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await context.new_page()
    await page.goto(server.base_url + "/login")
    box = await page.locator("button[type=submit]").bounding_box()
    assert box is not None and box["width"] <= 390 and box["height"] >= 44
    await context.close()
