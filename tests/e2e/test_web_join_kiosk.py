"""Resident join by link on a phone viewport (prejoin → lobby → admitted, chat), bad or dead
links, and the kiosk registration with good and bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.webclient import db_rows, sign_in, watch

pytestmark = pytest.mark.e2e


async def _api(page: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    resp = await page.request.post(
        page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + path,
        data=body,
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.ok, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def test_resident_joins_by_link_on_a_phone(server: Server, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    staff_ctx = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    phone_ctx = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    mediator, phone = await staff_ctx.new_page(), await phone_ctx.new_page()
    await watch(mediator, "mediator")
    await watch(phone, "phone")
    try:
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        created = await _api(
            mediator, "/api/sessions", {"kind": "mediation", "title": "邻里纠纷调解"}
        )
        issued = await _api(
            mediator, f"/api/sessions/{created['id']}/tokens", {"display_name": "张三"}
        )
        await mediator.goto(f"{server.base_url}/rooms/{created['room_id']}")
        await mediator.wait_for_selector("#room[data-status=joined]", timeout=15_000)

        await phone.goto(server.base_url + issued["url"])
        await phone.wait_for_selector("#prejoin[data-ready=true]", timeout=10_000)
        box = await phone.locator("#join-btn").bounding_box()
        assert box is not None and box["width"] <= 390 and box["height"] >= 44
        await phone.click("#join-btn")
        await phone.wait_for_selector("#room[data-status=lobby]", timeout=10_000)
        assert await phone.is_visible(".room-wait")

        admit = mediator.locator(".lobby-list button[data-act=admit]")
        await admit.wait_for(timeout=10_000)
        assert "张三" in await mediator.inner_text(".lobby-list")
        await admit.click()
        await phone.wait_for_selector("#room[data-status=joined]", timeout=10_000)
        await mediator.fill("#chat-text", "您好，请问您反映什么问题？")
        await mediator.press("#chat-text", "Enter")
        await phone.wait_for_selector(
            ".chat-log >> text=您好，请问您反映什么问题？", timeout=10_000
        )
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 400  # no sideways scrolling on the phone
        await phone.screenshot(path=str(ARTIFACTS / "join-phone.png"), full_page=True)
        await mediator.screenshot(path=str(ARTIFACTS / "join-mediator.png"))
    finally:
        await asyncio.gather(staff_ctx.close(), phone_ctx.close())


async def test_expired_and_revoked_links_get_clear_pages(server: Server, page: Any) -> None:
    await sign_in(page, server.base_url, DEMO_USERS["mediator"])
    created = await _api(page, "/api/sessions", {"kind": "mediation", "title": "过期链接"})
    past = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    expired = await _api(
        page,
        f"/api/sessions/{created['id']}/tokens",
        {"display_name": "李四", "valid_from": past, "ttl_s": 3600},
    )
    revoked = await _api(page, f"/api/sessions/{created['id']}/tokens", {"display_name": "王五"})
    await _api(page, f"/api/tokens/{revoked['jti']}/revoke", {})
    await page.goto(server.base_url + expired["url"])
    await page.wait_for_selector("h1:has-text('链接已过期')")
    assert "重新获取链接" in await page.inner_text("[role=alert]")
    await page.goto(server.base_url + revoked["url"])
    await page.wait_for_selector("h1:has-text('链接已失效')")


async def test_kiosk_registration_and_bad_input(server: Server, page: Any) -> None:
    await page.goto(server.base_url + "/kiosk")
    await page.click("label.matter:has-text('噪声扰民')")
    await page.fill("textarea[name=description]", "   ")
    await page.fill("input[name=name]", "赵六")
    await page.fill("input[name=phone]", "12345678901")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=请简要描述您的诉求")
    await page.wait_for_selector("text=请输入有效的11位手机号码（以1开头，第二位为3-9）")
    assert await page.input_value("input[name=name]") == "赵六"
    assert await page.input_value("input[name=phone]") == "12345678901"
    assert await page.is_checked("label.matter:has-text('噪声扰民') input")
    await page.screenshot(path=str(ARTIFACTS / "kiosk-bad-input.png"), full_page=True)
    box = await page.locator("button[type=submit]").bounding_box()
    assert box is not None and box["height"] >= 72  # large touch target

    await page.fill("textarea[name=description]", "楼下餐馆夜间排风噪声很大")
    await page.fill("input[name=phone]", "13812345678")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#case-no")
    case_no = (await page.inner_text("#case-no")).strip()
    assert await page.locator("img.qr").count() == 1
    rows = db_rows(
        server.data_dir, "SELECT channel, summary FROM petition_case WHERE case_no = ?", case_no
    )
    assert rows == [("kiosk", "楼下餐馆夜间排风噪声很大")]
    follow = await page.get_attribute(".follow-url", "data-url")
    await page.screenshot(path=str(ARTIFACTS / "kiosk-done.png"), full_page=True)
    await page.goto(follow)
    await page.wait_for_selector(f"text={case_no}")
