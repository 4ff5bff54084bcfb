"""Community point → district centre (连线区信访超市): the agent queues a call, a window officer
accepts it, both browsers decode each other's video, and the case names the officer as first
receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.axe import shoot
from tests.e2e.conftest import ARTIFACTS, Server
from tests.e2e.webclient import db_rows, remote_colours, sign_in, wait_frames, watch

pytestmark = pytest.mark.e2e


async def test_community_call_queued_accepted_and_both_decode_video(
    server: Server, browser: Any
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx_a = await browser.new_context(
        viewport={"width": 1280, "height": 720}, locale="zh-CN", bypass_csp=True
    )
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
        assert "拖欠工资" in await row.inner_text()
        await row.locator("button").click()
        await officer.wait_for_selector("#room[data-status=joined]", timeout=15_000)
        case_no = (await officer.inner_text("#case-no")).strip()
        assert case_no

        for p in (agent, officer):
            await wait_frames(p, minimum=15)
            await remote_colours(p, expect=1)
        await agent.wait_for_selector("#call-accepted:not([hidden])", timeout=10_000)
        await agent.screenshot(path=str(ARTIFACTS / "call-queue-agent.png"))
        await officer.screenshot(path=str(ARTIFACTS / "call-queue-officer.png"))

        rows = db_rows(
            server.data_dir,
            "SELECT s.username, c.channel FROM petition_case c JOIN staff s ON s.id = c.first_receiver_id WHERE c.case_no = ?",
            case_no,
        )
        assert rows == [(DEMO_USERS["window_officer"], "video")]
        # Ending the reception ends it on the agent's side too: the room goes, and the page
        # shows the resident's case number, the next step and the follow QR code (#16 item 6).
        await officer.select_option("select[name=outcome]", "accepted")
        await officer.click("#end-form button[type=submit]")
        await officer.wait_for_url("**/desk", timeout=10_000)
        await agent.wait_for_selector("#call-receipt", timeout=15_000)
        assert (await agent.inner_text("#receipt-case-no")).strip() == case_no
        assert "规定期限内办理" in await agent.inner_text("#receipt-next")
        assert await agent.locator("#room").count() == 0  # no mute, camera, leave or chat
        assert await agent.locator("#cancel-form").count() == 0
        follow = (await agent.inner_text(".follow-url")).strip()
        await shoot(agent, "call-receipt")
        sms = db_rows(
            server.data_dir,
            "SELECT n.body FROM case_notification n JOIN petition_case c ON c.id = n.case_id "
            "WHERE c.case_no = ? AND n.dedupe_key LIKE 'reception:%'",
            case_no,
        )
        assert len(sms) == 1 and case_no in sms[0][0]
        sms_link = sms[0][0].split("查询办理进度：", 1)[1]
        for link in (follow, sms_link):  # both work for the resident, with no account
            assert link.startswith(server.base_url + "/follow/")
            await agent.goto(link)
            assert case_no in await agent.inner_text("main")
    finally:
        await asyncio.gather(ctx_a.close(), ctx_b.close())
