"""调解协议书 signed in a real Chromium: two drawn signatures made with mouse moves on the
signature pad and one typed, then the effective agreement shows each signature (drawn ones
as SVG), the signer and the time."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.webclient import sign_in

pytestmark = pytest.mark.e2e


async def api(page: Any, base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    resp = await page.request.post(base_url + path, data=body, headers={"X-CSRF-Token": csrf})
    assert resp.ok, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw on the pad with the mouse; points are fractions of the pad's box."""
    await page.locator("#sig-pad").scroll_into_view_if_needed()
    box = await page.locator("#sig-pad").bounding_box()
    assert box is not None
    for stroke in strokes:
        x, y = stroke[0]
        await page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        await page.mouse.down()
        for x, y in stroke[1:]:
            await page.mouse.move(
                box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8
            )
        await page.mouse.up()


async def test_mediation_agreement_signed_with_drawn_signatures(
    server: Server, browser: Any, page: Any
) -> None:
    officer_ctx = await browser.new_context(locale="zh-CN")
    try:
        officer = await officer_ctx.new_page()
        await sign_in(officer, server.base_url, "window01")
        me = await (await officer.request.get(server.base_url + "/api/me")).json()
        case = await api(
            officer,
            server.base_url,
            "/api/cases",
            {"channel": "window", "site_id": me["site_id"], "summary": "楼上漏水损坏楼下吊顶"},
        )
    finally:
        await officer_ctx.close()
    case_id = case["case"]["id"]

    await sign_in(page, server.base_url, "mediator01")
    agreement = await api(
        page,
        server.base_url,
        f"/api/cases/{case_id}/agreements",
        {
            "parties": [
                {"name": "赵一", "role": "applicant"},
                {"name": "钱二", "role": "respondent"},
            ],
            "facts": "楼上住户卫生间漏水，损坏楼下吊顶，双方就维修费用发生争议。",
            "terms": [{"term": "钱二赔偿赵一维修费3000元", "how": "银行转账", "by": "2026-04-01"}],
        },
    )
    await page.goto(f"{server.base_url}/agreements/{agreement['id']}")
    await page.wait_for_selector("#sign-form")

    # 赵一 (party:0, preselected) signs by drawing; an empty pad is refused first.
    await page.click("#sign-submit")
    await page.wait_for_selector("#sign-error:not([hidden])")
    await draw(page, [[(0.1, 0.6), (0.2, 0.3), (0.3, 0.7), (0.4, 0.35)], [(0.5, 0.5), (0.7, 0.5)]])
    assert await page.get_attribute("#sig-pad", "data-strokes") == "2"
    await page.click("#sig-clear")  # 重签
    assert await page.get_attribute("#sig-pad", "data-strokes") == "0"
    await draw(page, [[(0.1, 0.6), (0.2, 0.3), (0.3, 0.7), (0.4, 0.35)], [(0.5, 0.5), (0.7, 0.5)]])
    await page.check("input[name=identification][value=face]")  # the party, present, identified
    async with page.expect_navigation():
        await page.click("#sign-submit")
    first = page.locator(".signature[data-signer='party:0']")
    await first.wait_for()
    assert await first.get_attribute("data-method") == "drawn"
    assert await first.locator(".sig-name").inner_text() == "赵一"
    path = await first.locator("svg.sig-svg path").get_attribute("d")
    assert path is not None and path.startswith("M") and path.count("M") == 2

    # 钱二 (party:1) types the name instead.
    await page.select_option("#signer", "party:1")
    assert await page.input_value("#signer_name") == "钱二"
    await page.check("input[name=method][value=typed]")
    await page.fill("#typed_sig", "钱二")
    await page.check("input[name=identification][value=in_person]")
    async with page.expect_navigation():
        await page.click("#sign-submit")
    await page.locator(".signature[data-signer='party:1'] .sig-typed").wait_for()

    # The mediator draws last: the agreement takes effect.
    await page.select_option("#signer", "mediator")
    await draw(page, [[(0.15, 0.5), (0.3, 0.2), (0.45, 0.8), (0.6, 0.3), (0.8, 0.6)]])
    async with page.expect_navigation():
        await page.click("#sign-submit")
    await page.wait_for_selector("#agreement-status[data-status=effective]")
    assert await page.locator("#sign-form").count() == 0
    assert await page.locator(".signature").count() == 3
    assert await page.locator(".signature svg.sig-svg path").count() == 2
    for signer in ("party:0", "party:1", "mediator"):
        stamp = page.locator(f".signature[data-signer='{signer}'] time.sig-time")
        assert (await stamp.get_attribute("datetime") or "").startswith("20")
    # The drawn path is rendered: the SVG has a real size on the page.
    box = await page.locator(".signature[data-signer='mediator'] svg").bounding_box()
    assert box is not None and box["width"] > 100
    await page.wait_for_selector("#effective")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "agreement-signed.png"), full_page=True)
