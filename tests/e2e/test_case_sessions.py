"""A video reception leaves its session on the case file (issue #16): after the window officer
accepts a community call and ends it, the case page shows the session (kind, time,
participants and roles) and links to its record; a booking tied to the case by its number
gives staff the party's join link to hand over, without widening a phone's page."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.webclient import db_rows, sign_in, wait_frames, watch

pytestmark = pytest.mark.e2e


async def test_a_reception_shows_on_its_case_page(server: Server, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx_a = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    ctx_b = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    agent, officer = await ctx_a.new_page(), await ctx_b.new_page()
    for p, name in ((agent, "agent"), (officer, "officer")):
        p.set_default_timeout(15_000)
        await watch(p, name)
    try:
        await sign_in(agent, server.base_url, DEMO_USERS["community_agent"])
        await agent.goto(server.base_url + "/call")
        await agent.wait_for_selector("#prejoin[data-ready=true]", timeout=10_000)
        await agent.wait_for_selector(".pj-network[data-ok=true]", timeout=10_000)
        await agent.select_option("select[name=matter_code]", "wage_arrears")
        await agent.fill("input[name=resident_name]", "王五")
        await agent.fill("input[name=resident_phone]", "13912345678")
        await agent.click("#call-form button[type=submit]")
        await agent.wait_for_selector("#room[data-status=joined]", timeout=15_000)

        await sign_in(officer, server.base_url, DEMO_USERS["window_officer"])
        await officer.goto(server.base_url + "/desk")
        row = officer.locator("#queue tbody tr").first
        await row.wait_for(timeout=10_000)
        await row.locator("button").click()
        await officer.wait_for_selector("#room[data-status=joined]", timeout=15_000)
        case_no = (await officer.inner_text("#case-no")).strip()
        await wait_frames(officer, minimum=5)
        await officer.select_option("select[name=outcome]", "accepted")
        await officer.click("#end-form button[type=submit]")
        await officer.wait_for_url("**/desk", timeout=10_000)
        # the agent's page ends on the receipt (case number, follow QR): its call polls every
        # 2 s and reloads once ended, whether or not the room's own end message came first
        await agent.wait_for_selector("#call-receipt", timeout=20_000)
        assert case_no in await agent.inner_text("#receipt-case-no")

        [(case_id,)] = db_rows(
            server.data_dir, "SELECT id FROM petition_case WHERE case_no = ?", case_no
        )
        await officer.goto(f"{server.base_url}/cases/{case_id}")
        card = officer.locator("#case-sessions article.session-record").first
        await card.wait_for(timeout=10_000)
        text = await card.inner_text()
        assert "视频接访" in text and "已结束" in text and "已受理为案件" in text, text
        assert "工作人员" in text or "主持人" in text, text
        await officer.screenshot(path=str(ARTIFACTS / "case-sessions-1280.png"), full_page=True)
        await officer.set_viewport_size({"width": 390, "height": 844})
        assert await officer.evaluate("document.documentElement.scrollWidth") <= 390
        await officer.screenshot(path=str(ARTIFACTS / "case-sessions-390.png"), full_page=True)

        await officer.set_viewport_size({"width": 1280, "height": 720})
        await card.locator("a.record-link").click()
        await officer.wait_for_selector(".session-record", timeout=10_000)
        assert case_no in await officer.inner_text("h1")
        await officer.screenshot(path=str(ARTIFACTS / "session-record-1280.png"), full_page=True)

        # book a mediation for the case by its number; hand the party's join link over
        [(mediator_id,)] = db_rows(
            server.data_dir, "SELECT id FROM staff WHERE username = ?", "mediator01"
        )
        booked = await officer.evaluate(
            """async ([caseNo, mediator]) => {
              const csrf = document.querySelector('meta[name=csrf-token]').content;
              const post = (url, body) => fetch(url, {method: 'POST', body: JSON.stringify(body),
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}});
              const slots = await (await post('/api/scheduling/slots',
                {people: [{staff_id: mediator}], duration_min: 60, limit: 1})).json();
              const s = slots.slots[0];
              const r = await post('/api/scheduling/bookings', {start: s.start, end: s.end,
                staff: [{staff_id: mediator, as_role: 'mediator'}], title: '欠薪调解',
                case_no: caseNo, guests: [{display_name: '王五', phone: '13912345678'}]});
              return [r.status, await r.json()];
            }""",
            [case_no, mediator_id],
        )
        assert booked[0] == 201, booked
        await officer.set_viewport_size({"width": 390, "height": 844})
        await officer.goto(f"{server.base_url}/scheduling/sessions/{booked[1]['session_id']}")
        await officer.click("#join-links button[type=submit]")
        link = officer.locator("#join-links input[readonly]").first
        await link.wait_for(timeout=10_000)
        assert "/join/" in await link.input_value()
        assert await officer.evaluate("document.documentElement.scrollWidth") <= 390
        await officer.screenshot(path=str(ARTIFACTS / "join-links-390.png"), full_page=True)
    finally:
        await asyncio.gather(ctx_a.close(), ctx_b.close())
