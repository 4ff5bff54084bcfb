"""A petition's day in the browser (issue #15): a window officer registers a walk-in at
/cases/new, the centre's supervisor (督导员, who assigns and transfers across the district)
sends it to a department, the department's handler accepts it, starts handling and drafts the
reply, the department's leader signs it off (签发) and the notices can be downloaded, the
petitioner rates the reply on a phone by the SMS link (the page says which case, unit, officer
and reply), the handler records the follow-up visit and closes it. Every page on the way is screenshot at 1280
and 390 px into artifacts/e2e/ and checked by axe-core (no serious or critical violation) and
for horizontal overflow."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.axe import shoot
from tests.e2e.conftest import Server, sent_link
from tests.e2e.webclient import db_rows

pytestmark = pytest.mark.e2e

SHOT = "case-workbench"


async def act(page: Any, name: str, fields: dict[str, str] | None = None) -> None:
    """Open the action's form on the case page, fill it and submit it."""
    await page.click(f"#action-{name} > summary")
    for selector, value in (fields or {}).items():
        if selector.startswith("select:"):
            await page.select_option(selector.removeprefix("select:"), label=value)
        elif selector.startswith("check:"):
            await page.check(selector.removeprefix("check:"))
        else:
            await page.fill(selector, value)
    await page.click(f"#action-{name} button[type=submit]")


async def test_walk_in_to_closed_case(server: Server, as_user: Any, browser: Any) -> None:
    window = await as_user("window01")
    await shoot(window, f"{SHOT}-01-home-window-officer")
    await window.click("a.menu-tile[href='/cases/new']")
    await window.wait_for_selector("#intake-form")
    await shoot(window, f"{SHOT}-02-intake-form")
    # a typing error: the message next to the field, what was typed kept
    await window.fill("#i-name", "孙丽华")
    await window.fill("#i-phone", "1391234")
    await window.select_option("#i-matter", "policy_suggestion")
    await window.fill("#i-summary", "建议在小区门口增设公交站点，方便老年人出行")
    await window.click("#intake-form button[type=submit]")
    await window.wait_for_selector("#err-phone")
    assert await window.input_value("#i-name") == "孙丽华"
    await shoot(window, f"{SHOT}-03-intake-error")
    await window.fill("#i-phone", "13912345678")
    await window.click("#intake-form button[type=submit]")
    await window.wait_for_selector("#flash")
    case_url = window.url.split("?")[0]
    assert re.search(r"/cases/\d+$", case_url)
    assert await window.text_content("#petitioner") is not None
    assert "孙丽华" in (await window.text_content("#petitioner") or "")
    assert "尚未确定" in (await window.text_content("#lead-dept") or "")
    await shoot(window, f"{SHOT}-04-registered")

    supervisor = await as_user("supervisor01")
    await supervisor.goto(case_url)
    await shoot(supervisor, f"{SHOT}-05-supervisor-case")
    await act(supervisor, "transfer", {"select:#f-transfer-target_department_id": "区住建局"})
    await supervisor.wait_for_selector("#flash")
    assert "区住建局" in (await supervisor.text_content("#lead-dept") or "")
    await shoot(supervisor, f"{SHOT}-06-transferred")

    handler = await as_user("handler02")
    await handler.goto(case_url)
    await shoot(handler, f"{SHOT}-07-handler-case")
    await act(handler, "accept", {"#f-accept-note": "属于本局职责，予以受理"})
    await handler.wait_for_selector("#flash")
    await act(handler, "start_handling")
    await handler.wait_for_selector("#action-reply")
    await act(handler, "reply", {"#f-reply-reply": "太短"})
    await handler.wait_for_selector("#f-reply-reply-err")
    assert await handler.input_value("#f-reply-reply") == "太短"
    await shoot(handler, f"{SHOT}-08-reply-error")
    await handler.fill(
        "#f-reply-reply", "经与公交集团会商，拟于明年一季度在小区东门增设公交停靠站，届时另行公告。"
    )
    await handler.click("#action-reply button[type=submit]")
    await handler.wait_for_selector("#sign-off")
    assert "等待承办单位领导签发" in (await handler.text_content("#flash") or "")
    await shoot(handler, f"{SHOT}-09-reply-drafted")

    # 签发: the department's leader reads the draft, signs it off, and it goes out
    leader = await as_user("leader02")
    await leader.goto(case_url)
    assert "公交停靠站" in (await leader.text_content("#draft-text") or "")
    await shoot(leader, f"{SHOT}-09a-leader-sign-off")
    await leader.click("#sign-off button[type=submit]")
    await leader.wait_for_selector("#flash")
    assert "已答复" in (await leader.text_content("h1") or "")
    assert await leader.query_selector("#notices a[data-notice=reply]") is not None
    assert await leader.query_selector("#notices a[data-notice=acceptance]") is not None
    await shoot(leader, f"{SHOT}-09b-signed-off")

    await handler.goto(case_url)
    await handler.wait_for_selector("#action-revisit")
    await shoot(handler, f"{SHOT}-09c-replied")

    # the petitioner rates the reply on their phone, by the link in the SMS
    [(sms,)] = db_rows(
        server.data_dir,
        "SELECT body FROM case_notification WHERE dedupe_key LIKE 'eval:%' AND case_id = ?",
        int(case_url.rsplit("/", 1)[1]),
    )
    assert "/evaluate/" in sms and "330105-" in sms
    token = await sent_link(server, "/evaluate")
    phone = await browser.new_context(
        viewport={"width": 390, "height": 800}, locale="zh-CN", bypass_csp=True
    )
    try:
        petitioner = await phone.new_page()
        await petitioner.goto(server.base_url + "/evaluate/" + token)
        subject = await petitioner.inner_text("#evaluation-subject")
        assert "区住建局" in subject and "公交停靠站" in subject and "330105-" in subject
        await shoot(petitioner, f"{SHOT}-09d-evaluation")
        await petitioner.check("input[name=staff_rating][value=satisfied]")
        await petitioner.check("input[name=dept_rating][value=satisfied]")
        await petitioner.click("form button[type=submit]")
        await petitioner.wait_for_selector("#thanks")
    finally:
        await phone.close()

    await handler.goto(case_url)
    await handler.wait_for_selector("#action-revisit")
    await act(handler, "revisit", {"#f-revisit-note": "电话回访，信访人对答复表示满意"})
    await handler.wait_for_selector("#action-close")
    await handler.click("#action-close > summary")
    await shoot(handler, f"{SHOT}-10-close-confirm")
    await handler.check("#f-close-confirm")
    await handler.click("#action-close button[type=submit]")
    await handler.wait_for_selector("#flash")
    assert "已结案" in (await handler.text_content("h1") or "")
    timeline = await handler.text_content("#timeline") or ""
    for words in ("转送至区住建局", "受理", "开始办理", "书面答复", "领导签发", "回访", "结案"):
        assert words in timeline, words
    await shoot(handler, f"{SHOT}-11-closed")
