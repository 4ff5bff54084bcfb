"""司法确认 recorded by the court liaison from his home page (#17 remaining item 2), in a real
Chromium: the mediator makes an agreement effective through the API; court01's home lists it
with its window end in Beijing time; an empty date is refused by the browser, a future one with a
zh-CN error; then it is recorded and leaves the list. axe and layout checks on every shot."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.test_agreement_party_signing import api
from tests.e2e.webclient import sign_in, watch

pytestmark = pytest.mark.e2e
SHOT = "court-judicial"


async def test_court_liaison_records_judicial_confirmation_on_home(
    server: Server, browser: Any
) -> None:
    desk = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    try:
        page = await desk.new_page()
        page.set_default_timeout(15_000)
        await watch(page, "court")
        await sign_in(page, server.base_url, DEMO_USERS["window_officer"])
        me = await (await page.request.get(server.base_url + "/api/me")).json()
        case = await api(
            page,
            server.base_url,
            "/api/cases",
            {"channel": "window", "site_id": me["site_id"], "summary": "楼上漏水损坏楼下吊顶"},
        )
        await page.context.clear_cookies()
        await sign_in(page, server.base_url, DEMO_USERS["mediator"])
        agreement = await api(
            page,
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
        aid = agreement["id"]
        signed: dict[str, Any] = {}
        for signer, name in (("party:0", "赵一"), ("party:1", "钱二"), ("mediator", "调解员")):
            body: dict[str, Any] = {"signer": signer, "signer_name": name, "data": name}
            if signer != "mediator":
                body["identification"] = "in_person"
            signed = await api(page, server.base_url, f"/api/agreements/{aid}/signatures", body)
        assert signed["status"] == "effective"
        await page.context.clear_cookies()
        await sign_in(page, server.base_url, DEMO_USERS["court_liaison"])
        await page.goto(server.base_url + "/")
        row = page.locator(f"#home-judicial li[data-agreement='{aid}']")
        await row.wait_for()
        shown = await row.inner_text()
        assert "已超过三十日申请期限" not in shown
        assert "案件编号" in shown and "申请人：" in shown and "被申请人：" in shown
        await shoot(page, f"{SHOT}-01-home")
        await page.fill(f"#jd-{aid}", "2099-01-01")
        async with page.expect_navigation():
            await row.locator("button[type=submit]").click()
        assert "申请日期不能晚于今天" in await page.inner_text(f"#jd-{aid}-err")
        await shoot(page, f"{SHOT}-02-error")
        today = await page.evaluate(
            "new Intl.DateTimeFormat('en-CA', {timeZone: 'Asia/Shanghai'}).format(new Date())"
        )
        await page.fill(f"#jd-{aid}", today)
        await page.fill(f"#jc-{aid}", "杭州市拱墅区人民法院")
        await page.fill(f"#jn-{aid}", "(2026)浙0105民特123号")
        await page.select_option(f"#jr-{aid}", "confirmed")
        async with page.expect_navigation():
            await page.locator(f"form[action='/agreements/{aid}/judicial'] button").click()
        assert f"已记录协议 {aid} 的司法确认。" in await page.inner_text("main")
        assert await page.locator(f"form[action='/agreements/{aid}/judicial']").count() == 0
        await shoot(page, f"{SHOT}-03-recorded")
    finally:
        await desk.close()
