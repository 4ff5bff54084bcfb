"""The 调解笔录 in a real Chromium (#20 item 2): the mediator writes two paragraphs, each
stamped with the session clock and autosaved without a click; 定稿; sends 张三 a confirmation
link and 张三 confirms on a 390 px phone; 李四 confirms on the mediator's device; the PDF is
made and filed. axe and screenshots (1280 and 390 px) on every page shot."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DEMO_USERS
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server, sent_link
from tests.e2e.webclient import sign_in, watch

pytestmark = pytest.mark.e2e
SHOT = "session-minutes"


def _held_mediation(server: Server) -> int:
    """A mediation run by mediator01 that started 25 minutes ago, with two parties who joined
    (as signaling records a held session; the call itself is other tests' subject)."""
    [db] = list(server.data_dir.rglob("*.db"))
    con = sqlite3.connect(db)
    try:
        (mediator,) = con.execute("SELECT id FROM staff WHERE username = 'mediator01'").fetchone()
        start = datetime.now(UTC) - timedelta(minutes=25)
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        cur = con.execute(
            "INSERT INTO call_session (room_id, kind, mode, state, title, created_by_id, capacity,"
            " recording_allowed, not_public, actual_start, created_at, ical_sequence)"
            " VALUES ('r-minutes-e2e', 'mediation', 'video', 'live', '邻里噪声调解', ?, 8, 0, 0,"
            " ?, ?, 0)",
            (mediator, start.strftime(fmt), start.strftime(fmt)),
        )
        sid = int(cur.lastrowid or 0)
        people = [
            (f"staff:{mediator}", "mediator", mediator, "调解员"),
            ("guest:zhang", "party", None, "张三"),
            ("guest:li", "party", None, "李四"),
        ]
        for identity, role, staff_id, name in people:
            con.execute(
                "INSERT INTO session_participant (session_id, identity, role, staff_id,"
                " display_name, invite_status, joined_at, no_show)"
                " VALUES (?, ?, ?, ?, ?, 'none', ?, 0)",
                (sid, identity, role, staff_id, name, start.strftime(fmt)),
            )
        con.commit()
        return sid
    finally:
        con.close()


async def test_minutes_written_autosaved_frozen_confirmed_and_filed(
    server: Server, browser: Any
) -> None:
    sid = _held_mediation(server)
    desk = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    phone = await browser.new_context(
        viewport={"width": 390, "height": 800}, locale="zh-CN", bypass_csp=True
    )
    try:
        mediator = await desk.new_page()
        mediator.set_default_timeout(15_000)
        mediator.on("dialog", lambda d: d.accept())
        await watch(mediator, "mediator")
        await sign_in(mediator, server.base_url, DEMO_USERS["mediator"])
        await mediator.goto(f"{server.base_url}/sessions/{sid}/minutes")

        # the first paragraph is there to type into, stamped with the session clock (~25 min)
        first = mediator.locator("#paragraphs li").first
        assert (await first.locator(".stamp").inner_text()).startswith("25:")
        await first.locator("textarea").fill("调解员宣布调解纪律，双方同意调解。")
        await mediator.wait_for_selector("#minutes-form[data-saved='1']")
        await mediator.click("#minutes-add")
        await (
            mediator.locator("#paragraphs li")
            .nth(1)
            .locator("textarea")
            .fill("张三陈述：楼上每晚十一点后仍有噪声。李四表示将铺设地毯。")
        )
        await mediator.wait_for_selector("#minutes-form[data-saved='2']")
        assert "已自动保存" in await mediator.inner_text("#autosave-state")
        await shoot(mediator, f"{SHOT}-01-writing")

        # a reload shows what was saved
        await mediator.reload()
        kept = await mediator.locator("#paragraphs textarea").nth(1).input_value()
        assert "李四表示将铺设地毯" in kept
        await mediator.click("#freeze-button")
        await mediator.wait_for_selector("#confirmations")
        assert "已定稿" in await mediator.inner_text("#minutes-status")

        zhang = mediator.locator(".party-confirm", has_text="张三")
        await zhang.locator("input[name=phone]").fill("13912345678")
        await zhang.locator(".send-minutes-link button").click()
        await mediator.wait_for_selector("#link-sent")
        token = await sent_link(server, "/minutes")

        party = await phone.new_page()
        party.set_default_timeout(15_000)
        await watch(party, "party")
        await party.goto(f"{server.base_url}/minutes/{token}")
        assert "张*" in await party.inner_text("#party-name")
        assert "李四表示将铺设地毯" in await party.inner_text("#paragraphs")
        await shoot(party, f"{SHOT}-02-party-link")
        await party.check("#agreed")
        await party.click("#minutes-confirm")
        await party.wait_for_selector("#minutes-confirmed")
        await shoot(party, f"{SHOT}-03-party-confirmed")

        await mediator.reload()
        li = mediator.locator(".party-confirm", has_text="李四")
        await li.locator("input[name=present]").check()
        await li.locator("input[name=name]").fill("李四")
        await li.locator(".device-confirm button").click()
        await mediator.wait_for_selector(".party-confirm[data-confirmed=yes] >> text=李四")
        assert "本人通过短信链接确认" in await mediator.inner_text("#confirmations")
        await shoot(mediator, f"{SHOT}-04-confirmed")
        await mediator.click("#close-button")
        await mediator.wait_for_selector("#minutes-pdf")
        await shoot(mediator, f"{SHOT}-05-closed")
        pdf = await mediator.request.get(f"{server.base_url}/sessions/{sid}/minutes.pdf")
        assert pdf.ok and (await pdf.body()).startswith(b"%PDF")
    finally:
        await desk.close()
        await phone.close()
