"""调解协议书 signed by each party in their own way (#17 item 4), in a real Chromium: the mediator
sends 赵一 a signing link by SMS and 赵一 signs on a 390 px phone; 钱二 signs on the mediator's
device after the mediator records the ID card check; the mediator signs last and the agreement
page shows who signed, when (Beijing time) and how. axe and layout checks on every page shot."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server, sent_link
from tests.e2e.webclient import db_rows, sign_in, watch

pytestmark = pytest.mark.e2e
SHOT = "agreement-party"


async def api(page: Any, base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    csrf = await page.get_attribute("meta[name=csrf-token]", "content")
    resp = await page.request.post(base_url + path, data=body, headers={"X-CSRF-Token": csrf})
    assert resp.ok, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def test_party_signs_on_phone_and_other_on_mediators_device(
    server: Server, browser: Any
) -> None:
    desk = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    phone = await browser.new_context(
        viewport={"width": 390, "height": 800}, locale="zh-CN", bypass_csp=True
    )
    try:
        mediator = await desk.new_page()
        mediator.set_default_timeout(15_000)
        await watch(mediator, "mediator")
        await sign_in(mediator, server.base_url, DEMO_USERS["window_officer"])
        me = await (await mediator.request.get(server.base_url + "/api/me")).json()
        case = await api(
            mediator,
            server.base_url,
            "/api/cases",
            {"channel": "window", "site_id": me["site_id"], "summary": "楼上漏水损坏楼下吊顶"},
        )
        await mediator.context.clear_cookies()
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        agreement = await api(
            mediator,
            server.base_url,
            f"/api/cases/{case['case']['id']}/agreements",
            {
                "parties": [
                    {"name": "赵一", "role": "applicant"},
                    {"name": "钱二", "role": "respondent"},
                ],
                "facts": "楼上住户卫生间漏水，损坏楼下吊顶，双方就维修费用发生争议。",
                "terms": [
                    {"term": "钱二赔偿赵一维修费3000元", "how": "银行转账", "by": "2026-04-01"}
                ],
            },
        )
        url = f"{server.base_url}/agreements/{agreement['id']}"
        await mediator.goto(url)
        await mediator.wait_for_selector("#pending-parties")
        await shoot(mediator, f"{SHOT}-01-draft")

        # 发送签署链接 to 赵一.
        await mediator.fill("#phone-0", "13912345678")
        async with mediator.expect_navigation():
            await mediator.click(".pending-party[data-signer='party:0'] .send-link-button")
        assert "赵一" in await mediator.inner_text("#link-sent")
        [(sms,)] = db_rows(
            server.data_dir,
            "SELECT body FROM case_notification WHERE dedupe_key LIKE ?",
            f"agreement_link:{agreement['id']}:0:%",
        )
        assert "（北京时间）" in sms
        token = await sent_link(server, "/sign", nth=0)

        # 赵一 signs on the phone: the masked name, 我已阅读并同意, the typed full name.
        party = await phone.new_page()
        party.set_default_timeout(15_000)
        await watch(party, "party")
        await party.goto(f"{server.base_url}/sign/{token}")
        assert (await party.inner_text("#party-name")).strip() == "赵*"
        assert "钱二赔偿赵一维修费3000元" in await party.inner_text("#terms")
        await shoot(party, f"{SHOT}-02-phone")
        await party.fill("#signer_name", "赵一")
        async with party.expect_navigation():
            await party.click("#party-sign-submit")  # not ticked yet: refused, name kept
        assert "我已阅读并同意" in await party.inner_text("#agreed-error")
        assert await party.input_value("#signer_name") == "赵一"
        await party.check("#agreed")
        async with party.expect_navigation():
            await party.click("#party-sign-submit")
        await party.wait_for_selector("#signed-waiting")
        await shoot(party, f"{SHOT}-03-phone-signed")
        await party.goto(f"{server.base_url}/sign/{token}")  # the link is used up
        assert "此链接不能再次使用" in await party.inner_text("#sign-link-error")

        # 钱二 signs on the mediator's device, identified by ID card.
        await mediator.goto(url)
        first = mediator.locator(".signature[data-signer='party:0']")
        assert await first.get_attribute("data-via") == "own_link"
        assert "本人链接签署" in await first.inner_text()
        await mediator.click(".pending-party[data-signer='party:1'] a.sign-here")
        assert await mediator.input_value("#signer") == "party:1"
        assert await mediator.input_value("#signer_name") == "钱二"
        await mediator.check("input[name=method][value=typed]")
        await mediator.fill("#typed_sig", "钱二")
        await mediator.click("#sign-submit")  # no identification recorded: refused
        assert "身份核验" in await mediator.inner_text("#sign-error")
        await mediator.check("input[name=identification][value=id_card]")
        await mediator.fill("#id_last4", "002x")
        await shoot(mediator, f"{SHOT}-04-device-form")
        async with mediator.expect_navigation():
            await mediator.click("#sign-submit")
        second = mediator.locator(".signature[data-signer='party:1']")
        await second.wait_for()
        assert await second.get_attribute("data-via") == "mediator_device"
        assert "调解员设备签署（身份证核验，身份证号后4位002X）" in await second.inner_text()
        assert await mediator.get_attribute("#agreement-status", "data-status") == "draft"

        # The mediator signs last: effective.
        await mediator.select_option("#signer", "mediator")
        assert await mediator.locator("#identification").is_hidden()
        await mediator.check("input[name=method][value=typed]")
        await mediator.fill("#typed_sig", "调解员")
        async with mediator.expect_navigation():
            await mediator.click("#sign-submit")
        await mediator.wait_for_selector("#agreement-status[data-status=effective]")
        assert await mediator.locator(".signature").count() == 3
        for signer in ("party:0", "party:1", "mediator"):
            row = mediator.locator(f".signature[data-signer='{signer}']")
            assert "（北京时间）" in await row.inner_text()
        assert await mediator.locator("#pending-parties").count() == 0
        await shoot(mediator, f"{SHOT}-05-effective")
    finally:
        await phone.close()
        await desk.close()
