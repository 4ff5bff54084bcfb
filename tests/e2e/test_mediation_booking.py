"""A mediation booked from its case (issue #16 items 2, 3): from the case page a window
officer books a mediation with two parties and mediator01 in a mediation room; the booking's
page gives each party a join link with its QR code and a printable sheet; after the session
(held: written to the database as the room would), the mediator opens the record and records
the outcome "agreement", drafting the agreement there; the case page shows the session with
the outcome and the agreement. Screenshots at 1280 and 390 px, each checked by axe-core."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_PASSWORD
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.webclient import db_rows

pytestmark = pytest.mark.e2e

SHOT = "mediation-booking"


@pytest.fixture
async def as_user(browser: Any, server: Server) -> AsyncIterator[Any]:
    contexts: list[Any] = []

    async def open_as(username: str) -> Any:
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(server.base_url + "/login")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", DEMO_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1")
        return page

    yield open_as
    for context in contexts:
        await context.close()


def hold_session(data_dir: Path, session_id: int) -> None:
    """The session ran as its room records it: it started and ended at its planned times and
    the parties were there (what signaling's journal writes)."""
    [db] = [p for p in data_dir.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")][:1]
    con = sqlite3.connect(db)
    try:
        con.execute(
            "UPDATE call_session SET state='ended', actual_start=planned_start,"
            " actual_end=planned_end WHERE id=?",
            (session_id,),
        )
        con.execute(
            "UPDATE session_participant SET joined_at=(SELECT planned_start FROM call_session"
            " WHERE id=?), invite_status='joined' WHERE session_id=?",
            (session_id, session_id),
        )
        con.commit()
    finally:
        con.close()


async def test_book_a_mediation_from_the_case_and_record_its_agreement(
    server: Server, as_user: Any
) -> None:
    window = await as_user("window01")
    await window.goto(server.base_url + "/cases/new")
    await window.fill("#i-name", "张三")
    await window.fill("#i-phone", "13912345678")
    await window.select_option("#i-matter", "policy_suggestion")
    await window.fill("#i-summary", "与邻居因漏水赔偿发生纠纷，希望调解")
    await window.click("#intake-form button[type=submit]")
    await window.wait_for_selector("#flash")
    case_url = window.url.split("?")[0]

    # from the case page: 为本案预约调解, the mediator and the room, a free slot
    await window.click("#book-for-case")
    await window.wait_for_selector("#slot-finder")
    [(mediator_id,)] = db_rows(
        server.data_dir, "SELECT id FROM staff WHERE username = ?", "mediator01"
    )
    await window.select_option("select[name=mediator_id]", str(mediator_id))
    rooms = await window.locator("select[name=room_id] option").all_text_contents()
    room = next(i for i, text in enumerate(rooms) if "调解室" in text)
    await window.select_option("select[name=room_id]", index=room)
    await shoot(window, f"{SHOT}-01-finder")
    await window.click("#slot-finder button[type=submit]")
    await window.locator("#slots tbody tr").first.wait_for()
    await window.locator("#slots tbody tr button").first.click()
    await window.wait_for_selector("#book-chosen")
    await window.fill("#book-chosen input[name=title]", "漏水赔偿调解")
    await window.fill("input[name=party_name_0]", "张三")
    await window.fill("input[name=party_phone_0]", "13912345678")
    await window.fill("input[name=party_name_1]", "李四")
    await window.fill("input[name=party_phone_1]", "13987654321")
    assert await window.is_checked("input[name=recording]")
    mediator = (await window.text_content("#chosen-mediator") or "").strip()
    assert mediator and mediator != "—"
    await shoot(window, f"{SHOT}-02-book-form", height=1400)
    await window.click("#book-chosen button[type=submit]")
    await window.wait_for_url("**/scheduling/sessions/*?booked=1")
    session_id = int(re.findall(r"/scheduling/sessions/(\d+)", window.url)[0])
    attendance = await window.inner_text("#attendance")
    assert "张三" in attendance and "李四" in attendance and "被申请人" in attendance

    # join links to hand over: copy, QR, print
    await window.click("#join-links button[type=submit]")
    await window.locator("#join-links img.join-qr").first.wait_for()
    assert await window.locator("#join-links img.join-qr").count() == 2
    await shoot(window, f"{SHOT}-03-join-links", height=1400)
    await window.click("#print-links")
    await window.click("#links-print button[type=submit]")
    await window.locator("article.print-party").first.wait_for()
    assert await window.locator("article.print-party img.join-qr").count() == 2
    await shoot(window, f"{SHOT}-04-print-sheet", height=1400)

    # the session is held; the mediator records the outcome, drafting the agreement
    hold_session(server.data_dir, session_id)
    mediator_page = await as_user("mediator01")
    await mediator_page.goto(f"{server.base_url}/sessions/{session_id}/record")
    await mediator_page.wait_for_selector("#outcome-form")
    await mediator_page.check("input[name=outcome][value=agreement]")
    await mediator_page.select_option("select[name=agreement_id]", "new")
    await mediator_page.click("#outcome-form details > summary")
    await mediator_page.fill("textarea[name=facts]", "李四家漏水致张三家天花板受损")
    await mediator_page.fill("input[name=term]", "李四赔偿张三维修费三千元")
    await mediator_page.fill("input[name=how]", "银行转账")
    await mediator_page.fill("input[name=by]", "2027-01-31")
    await shoot(mediator_page, f"{SHOT}-05-outcome-form", height=1400)
    await mediator_page.click("#outcome-form button[type=submit]")
    await mediator_page.wait_for_url("**/record?outcome=1")
    outcome = await mediator_page.inner_text(".session-record .outcome")
    assert "达成调解协议" in outcome and "调解协议书" in outcome
    await shoot(mediator_page, f"{SHOT}-06-outcome-recorded", height=1400)

    # the case page shows the session with its parties and outcome
    await window.goto(case_url)
    card = window.locator("#case-sessions article.session-record").first
    await card.wait_for()
    text = await card.inner_text()
    assert "达成调解协议" in text and "张三" in text and "李四" in text, text
    assert "调解协议书" in text
    await window.locator("#case-sessions").scroll_into_view_if_needed()
    await shoot(window, f"{SHOT}-07-case-page", height=1400)
