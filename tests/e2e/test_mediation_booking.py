"""A mediation booked from its case and held (issue #16 items 1-3): from the case page a window
officer books a mediation with two parties and mediator01 in a mediation room. The day comes
(the booking is moved to now: the only time travel); the booking's page gives each party a
join link with its QR code and a printable sheet. The mediator enters the room from the home
page, the parties come by their links on their phones and are admitted from the lobby, all
consent, are recorded, and the mediator ends the session. The mediator records the outcome
"agreement", drafting the agreement there; the case page shows the session with participants,
consent, link quality, recordings and the agreement, and the mediator plays the recording
back from the case page. Screenshots at 1280 and 390 px, each checked by axe-core."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.kernel.settings import Settings
from server.models import Booking, BookingClaim, CallSession
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.webclient import db_rows
from tests.polling import eventually

pytestmark = pytest.mark.e2e

SHOT = "mediation-booking"


@pytest.fixture
async def as_guest(browser: Any) -> AsyncIterator[Any]:
    """A party on their phone, not signed in (they come by the link handed over)."""
    contexts: list[Any] = []

    async def open_guest() -> Any:
        context = await browser.new_context(
            viewport={"width": 390, "height": 800}, locale="zh-CN", bypass_csp=True
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield open_guest
    for context in contexts:
        await context.close()


async def the_day_has_come(data_dir: Path, session_id: int) -> None:
    """Time travel: the booked mediation (its session, booking and claims) moves so that it
    started two minutes ago; nothing else changes. Its join links are issued after this."""
    engine = make_engine(Settings(data_dir=data_dir).effective_database_url)
    try:
        async with make_sessionmaker(engine).begin() as db:
            row = await db.get(CallSession, session_id)
            assert row is not None and row.planned_start is not None
            shift = utcnow() - timedelta(minutes=2) - row.planned_start
            row.planned_start += shift
            assert row.planned_end is not None
            row.planned_end += shift
            for booking in await db.scalars(
                select(Booking).where(Booking.session_id == session_id)
            ):
                booking.start_at += shift
                booking.end_at += shift
                for claim in await db.scalars(
                    select(BookingClaim).where(BookingClaim.booking_id == booking.id)
                ):
                    claim.start_at += shift
                    claim.end_at += shift
    finally:
        await engine.dispose()


def recorded_frames(data_dir: Path, session_id: int) -> bool:
    """Every camera (the mediator's and two parties') has been on record for a while: the
    room's WebM files have grown past a few seconds of VP8."""
    [(room_id,)] = db_rows(data_dir, "SELECT room_id FROM call_session WHERE id = ?", session_id)
    videos = list((data_dir / "recordings" / room_id).glob("*video*.webm"))
    return len(videos) >= 3 and all(v.stat().st_size > 20_000 for v in videos)


def session_state(data_dir: Path, session_id: int) -> str:
    [(state,)] = db_rows(data_dir, "SELECT state FROM call_session WHERE id = ?", session_id)
    return str(state)


async def join_by_link(page: Any, url: str) -> None:
    """A party opens the link handed over at the window and asks to come in (the lobby)."""
    await page.goto(url)
    await page.wait_for_selector("#prejoin[data-ready=true]", timeout=15_000)
    await page.click("#join-btn")
    await page.wait_for_selector("#room[data-status=lobby]", timeout=15_000)


async def test_book_a_mediation_from_the_case_hold_it_record_it_and_file_its_agreement(
    server: Server, as_user: Any, as_guest: Any
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

    # the day of the mediation has come; join links to hand over: copy, QR, print
    await the_day_has_come(server.data_dir, session_id)
    await window.reload()
    await window.click("#join-links button[type=submit]")
    await window.locator("#join-links img.join-qr").first.wait_for()
    assert await window.locator("#join-links img.join-qr").count() == 2
    links = {
        name: await window.input_value(f"#join-links .join-link-item:has-text('{name}') input")
        for name in ("张三", "李四")
    }
    await shoot(window, f"{SHOT}-03-join-links", height=1400)
    await window.click("#print-links")
    await window.click("#links-print button[type=submit]")
    await window.locator("article.print-party").first.wait_for()
    assert await window.locator("article.print-party img.join-qr").count() == 2
    await shoot(window, f"{SHOT}-04-print-sheet", height=1400)

    # the mediator enters the room from today's sessions on the home page; the parties come
    # by their links, wait in the lobby and are admitted
    mediator_page = await as_user("mediator01")
    await mediator_page.click("a:has-text('漏水赔偿调解')")
    await mediator_page.wait_for_selector("#room[data-status=joined]", timeout=15_000)
    parties = {name: await as_guest() for name in links}
    for name, page in parties.items():
        url = links[name]
        await join_by_link(page, server.base_url + url if url.startswith("/") else url)
        admit = mediator_page.locator(".lobby-list li", has_text=name)
        await admit.locator("button[data-act=admit]").click()
        await page.wait_for_selector("#room[data-status=joined]", timeout=15_000)

    # consent from everyone, a few seconds on record, then the mediator ends the session
    await mediator_page.click("#room [data-act=consent]")
    for page in (mediator_page, *parties.values()):
        await page.wait_for_selector("#room .consent-dialog[open]", timeout=10_000)
        await page.click("#room .consent-dialog button[data-consent=yes]")
    await mediator_page.wait_for_selector(".consent-state[data-pending='0']", timeout=10_000)
    await mediator_page.click("#room [data-act=rec-start]")
    for page in (mediator_page, *parties.values()):
        await page.wait_for_selector("#room[data-recording=true]", timeout=10_000)
    await shoot(parties["张三"], f"{SHOT}-05-party-in-room")
    await eventually(
        lambda: recorded_frames(server.data_dir, session_id),
        what="a few seconds of every camera on record",
        timeout_s=30,
    )
    await mediator_page.click("#room [data-act=rec-stop]")
    await mediator_page.wait_for_selector("#room[data-recording=false]", timeout=10_000)
    mediator_page.once("dialog", lambda d: d.accept())
    await mediator_page.click("#room [data-act=end]")
    for page in parties.values():
        await page.wait_for_selector("#room[data-final]", timeout=15_000)
    await eventually(
        lambda: session_state(server.data_dir, session_id) == "ended", what="the session ended"
    )

    await mediator_page.goto(f"{server.base_url}/sessions/{session_id}/record")
    await mediator_page.wait_for_selector("#outcome-form")
    await mediator_page.check("input[name=outcome][value=agreement]")
    await mediator_page.select_option("select[name=agreement_id]", "new")
    await mediator_page.click("#outcome-form details > summary")
    await mediator_page.fill("textarea[name=facts]", "李四家漏水致张三家天花板受损")
    await mediator_page.fill("input[name=term]", "李四赔偿张三维修费三千元")
    await mediator_page.fill("input[name=how]", "银行转账")
    await mediator_page.fill("input[name=by]", "2027-01-31")
    await shoot(mediator_page, f"{SHOT}-06-outcome-form", height=1400)
    await mediator_page.click("#outcome-form button[type=submit]")
    await mediator_page.wait_for_url("**/record?outcome=1")
    outcome = await mediator_page.inner_text(".session-record .outcome")
    assert "达成调解协议" in outcome and "调解协议书" in outcome
    await shoot(mediator_page, f"{SHOT}-07-outcome-recorded", height=1400)

    # the case page shows the session with its parties and outcome
    await window.goto(case_url)
    card = window.locator("#case-sessions article.session-record").first
    await card.wait_for()
    text = await card.inner_text()
    assert "达成调解协议" in text and "张三" in text and "李四" in text, text
    assert "调解协议书" in text and "同意录音录像" in text
    # each party's time in the room and the quality of their link, from the SFU
    assert await card.locator("td.quality[data-grade]").count() >= 2
    assert await card.locator(".recordings .tag").count() >= 4  # camera and microphone each
    await window.locator("#case-sessions").scroll_into_view_if_needed()
    await shoot(window, f"{SHOT}-08-case-page", height=1400)

    # the mediator plays the recording back from the case page (a reason first, audited)
    await mediator_page.goto(case_url)
    await mediator_page.click("#case-sessions a.play")
    await mediator_page.fill("input[name=reason]", "核对调解协议内容（测试）")
    await mediator_page.click('form[action$="/recordings"] button[type=submit]')
    await mediator_page.wait_for_selector("#player video.track", timeout=15_000)
    await shoot(mediator_page, f"{SHOT}-09-playback", height=1200)
    plays = db_rows(
        server.data_dir,
        "SELECT count(*) FROM audit_log WHERE action = 'recording.play' AND object_id = ?",
        str(session_id),
    )
    assert plays[0][0] >= 1
