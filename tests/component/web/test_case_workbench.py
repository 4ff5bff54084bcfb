"""The case page is where the work is done (issue #15, items 2 and 4): a window officer
registers a walk-in at /cases/new, a kiosk registration is claimed, and every action the
viewer may take is a form on /cases/{id} that writes the timeline and the audit log; a typing
error keeps what was typed with the message next to the field, an action another officer
already took changes nothing and says so, and a viewer who may not act sees no form and gets
403. The page shows the case in words: petitioner (masked for those not allowed), matter,
channel, departments and officers by name, deadline clocks and the service chain."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth import csrf
from server.cases.models import CaseEvent, PetitionCase
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Department
from tests.conftest import make_settings, sign_in

Client = TestClient[Any, Any]

WALK_IN = {
    "channel": "window",
    "name": "赵小梅",
    "phone": "13912345678",
    "id_number": "",
    "matter_type": "elderly_care",
    "summary": "母亲所在养老院收费不透明，要求公开收费明细",
    "accused_department": "",
    "headcount": "",
    "rep_name": "",
    "rep_phone": "",
}


@pytest.fixture
async def db(demo_sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_sqlite_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[Client]:
    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    async with TestClient(TestServer(app)) as c:
        yield c


async def as_user(client: Client, username: str) -> str:
    client.session.cookie_jar.clear()
    return await sign_in(client, username)


async def register(client: Client, **overrides: str) -> int:
    token = await as_user(client, "window01")
    resp = await client.post(
        "/cases/new", data={"_csrf": token, **WALK_IN, **overrides}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    match = re.fullmatch(r"/cases/(\d+)\?done=registered", resp.headers["Location"])
    assert match
    return int(match.group(1))


async def act(client: Client, token: str, case_id: int, name: str, **fields: str) -> Any:
    return await client.post(
        f"/cases/{case_id}/actions/{name}",
        data={"_csrf": token, **fields},
        allow_redirects=False,
    )


async def sign_off_as(client: Client, leader: str, case_id: int) -> None:
    """签发: the lead department's leader signs the handler's draft reply."""
    token = await as_user(client, leader)
    resp = await client.post(
        f"/cases/{case_id}/sign-off/sign_off", data={"_csrf": token}, allow_redirects=False
    )
    assert resp.status == 303, text_of(await resp.text())[:300]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def state_of(db: async_sessionmaker[AsyncSession], case_id: int) -> str:
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None
        return row.state.value


async def counts(
    db: async_sessionmaker[AsyncSession], case_id: int, action: str
) -> tuple[int, int]:
    """(timeline entries of the case, audit entries with `action` on it)."""
    async with db() as s:
        events = await s.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id)
        )
        audits = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == action, AuditEntry.object_id == str(case_id))
        )
        return int(events or 0), int(audits or 0)


async def dept_id(db: async_sessionmaker[AsyncSession], code: str) -> int:
    async with db() as s:
        value = await s.scalar(select(Department.id).where(Department.code == code))
        assert value is not None
        return int(value)


# --- window intake ----------------------------------------------------------------------------


async def test_a_walk_in_is_registered_and_its_page_shows_the_case_in_words(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    page = await client.get(f"/cases/{case_id}?done=registered")
    html = await page.text()
    words = text_of(html)
    assert page.status == 200
    assert "登记成功" in words
    assert "赵小梅" in words and "13912345678" in words  # the first receiver sees them
    assert "养老服务" in words and "来访（窗口）" in words
    assert "区民政局" in words  # the matter type's competent department, by name
    assert re.search(r"首问责任人\s*\S+", words) and "待认领" not in words
    assert 'aria-current="step"' in html and "服务链" in words
    assert 'data-colour="green"' in html and "剩余" in words  # the acceptance clock
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and row.channel.value == "window"
        assert row.first_receiver_id is not None and row.lead_dept_id is not None
    _, audits = await counts(db, case_id, "case.petitioner_view")
    assert audits == 1


async def test_the_home_page_links_window_officers_to_the_intake_form(client: Client) -> None:
    await as_user(client, "window01")
    assert 'href="/cases/new"' in await (await client.get("/")).text()
    await as_user(client, "handler02")
    # a department handler may register too (case.create), an expert may not
    await as_user(client, "expert01")
    assert 'href="/cases/new"' not in await (await client.get("/")).text()
    assert (await client.get("/cases/new")).status == 403


async def test_intake_errors_keep_what_was_typed_with_the_message_at_the_field(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    token = await as_user(client, "window01")
    async with db() as s:
        before = await s.scalar(select(func.count()).select_from(PetitionCase))
    resp = await client.post(
        "/cases/new",
        data={"_csrf": token, **WALK_IN, "phone": "12345", "summary": "要求公开养老院收费"},
    )
    html = await resp.text()
    assert resp.status == 422
    assert 'id="err-phone"' in html and "11位手机号码" in html
    assert 'value="赵小梅"' in html and "要求公开养老院收费" in html
    # a matter type with particulars: the missing one is named next to its field
    resp = await client.post(
        "/cases/new", data={"_csrf": token, **WALK_IN, "matter_type": "wage_arrears"}
    )
    html = await resp.text()
    assert resp.status == 422
    assert 'id="err-attr-wage_arrears-employer"' in html and "用人单位" in html
    async with db() as s:
        assert await s.scalar(select(func.count()).select_from(PetitionCase)) == before


# --- actions ----------------------------------------------------------------------------------


async def test_a_transfer_accept_handle_reply_revisit_close_each_write_timeline_and_audit(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    housing = await dept_id(db, "housing")
    token = await as_user(client, "supervisor01")
    page = await (await client.get(f"/cases/{case_id}")).text()
    assert f'action="/cases/{case_id}/actions/transfer"' in page
    before = await counts(db, case_id, "case.transfer")
    resp = await act(client, token, case_id, "transfer", target_department_id=str(housing))
    assert resp.status == 303 and resp.headers["Location"] == f"/cases/{case_id}?done=transfer"
    after = await counts(db, case_id, "case.transfer")
    assert after == (before[0] + 1, before[1] + 1)
    assert "已转送/交办" in text_of(await (await client.get(resp.headers["Location"])).text())
    token = await as_user(client, "handler02")
    steps = [
        ("handler02", "accept", {}),
        ("handler02", "start_handling", {}),
        (
            "handler02",
            "reply",
            {"reply": "经核查，养老院已在公示栏公开收费明细，并向您提供了书面清单。"},
        ),
        ("leader02", "sign_off", {}),  # 签发: the reply goes out once the leader signs it
        ("handler02", "revisit", {"note": "电话回访，信访人表示满意"}),
        ("handler02", "close", {"confirm": "yes"}),
    ]
    for user, name, fields in steps:
        token = await as_user(client, user)
        audit = "case.reply_drafted" if name == "reply" else f"case.{name}"
        before = await counts(db, case_id, audit)
        if name == "sign_off":
            resp = await client.post(
                f"/cases/{case_id}/sign-off/sign_off", data={"_csrf": token}, allow_redirects=False
            )
        else:
            resp = await act(client, token, case_id, name, **fields)
        assert resp.status == 303, (name, text_of(await resp.text())[:400])
        assert await counts(db, case_id, audit) >= (before[0] + 1, before[1] + 1)
    assert await state_of(db, case_id) == "closed"
    words = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "转送至区住建局" in words and "电话回访，信访人表示满意" in words


async def test_a_validation_error_keeps_the_typed_text_and_changes_nothing(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    before = await counts(db, case_id, "case.redirect_legal")
    resp = await act(
        client, token, case_id, "redirect_legal", reason="应通过仲裁解决", confirm="yes"
    )
    html = await resp.text()
    assert resp.status == 422
    assert 'id="f-redirect_legal-legal_route-err"' in html and "请选择法定途径" in html
    assert "应通过仲裁解决" in html and 'id="action-redirect_legal" open' in html
    # irreversible: without the confirmation nothing happens either
    resp = await act(client, token, case_id, "not_accept", reason="不属于信访事项")
    html = await resp.text()
    assert resp.status == 422 and "请勾选确认后再提交" in html and "不属于信访事项" in html
    assert await counts(db, case_id, "case.redirect_legal") == before
    assert await state_of(db, case_id) == "registered"


async def test_an_action_another_officer_already_took_says_so_and_changes_nothing(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    assert (await act(client, token, case_id, "accept")).status == 303
    before = await counts(db, case_id, "case.not_accept")
    # the second officer's page still offered 不予受理; the case is already accepted
    resp = await act(client, token, case_id, "not_accept", reason="重复", confirm="yes")
    html = await resp.text()
    assert resp.status == 409
    assert 'id="action-error"' in html and "其他工作人员刚刚办理" in html
    assert await counts(db, case_id, "case.not_accept") == before
    assert await state_of(db, case_id) == "accepted"


async def test_a_viewer_who_may_not_act_sees_no_form_and_gets_403(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window02")  # same centre, another window: may look only
    page = await client.get(f"/cases/{case_id}")
    html = await page.text()
    assert page.status == 200
    assert "/actions/" not in html and 'id="case-actions"' not in html
    assert "赵**" in html and "139****5678" in html and "赵小梅" not in html
    before = await counts(db, case_id, "case.accept")
    assert (await act(client, token, case_id, "accept")).status == 403
    assert (await act(client, token, case_id, "transfer", target_department_id="1")).status == 403
    assert await counts(db, case_id, "case.accept") == before
    assert await state_of(db, case_id) == "registered"


async def test_a_kiosk_registration_is_claimed_from_its_page(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    kiosk = await client.get("/kiosk")
    token = re.search(r'name="_csrf" value="([^"]+)"', await kiosk.text())
    assert token
    site = re.search(r'name="site" value="([^"]*)"', await kiosk.text())
    assert site
    done = await client.post(
        "/kiosk",
        data={"_csrf": token.group(1), "site": site.group(1), "matter_code": "elderly_care",
              "description": "养老补贴迟迟未发放", "name": "钱多多", "phone": "13812345678",
              "accused_department": ""},
    )  # fmt: skip
    assert done.status == 200
    async with db() as s:
        case_id = await s.scalar(select(func.max(PetitionCase.id)))
    assert case_id is not None
    token2 = await as_user(client, "window01")
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert f'action="/cases/{case_id}/actions/claim"' in html and "待认领" in html
    before = await counts(db, case_id, "case.claim")
    resp = await act(client, token2, case_id, "claim")
    assert resp.status == 303
    assert await counts(db, case_id, "case.claim") == (before[0] + 1, before[1] + 1)
    html = await (await client.get(resp.headers["Location"])).text()
    assert "/actions/claim" not in html and "待认领" not in text_of(html)
    # a second officer who had the page open: already claimed, nothing changes
    token3 = await as_user(client, "window02")
    resp = await act(client, token3, case_id, "claim")
    assert resp.status == 409 and "已由其他工作人员认领" in await resp.text()
    assert await counts(db, case_id, "case.claim") == (before[0] + 1, before[1] + 1)


async def test_a_leader_extends_and_pauses_a_deadline_from_the_page(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    assert (await act(client, token, case_id, "accept")).status == 303
    token = await as_user(client, "leader05")  # 区民政局, the lead department
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert "/actions/extend" in html and "/actions/pause" in html
    bad = await act(
        client, token, case_id, "extend", kind="handling", days="abc", reason="需要调查"
    )
    assert bad.status == 422 and "请填写延长天数" in await bad.text()
    before = await counts(db, case_id, "case.deadline_extend")
    resp = await act(
        client, token, case_id, "extend", kind="handling", days="10", reason="需要现场调查"
    )
    assert resp.status == 303, text_of(await resp.text())[:300]
    assert await counts(db, case_id, "case.deadline_extend") == (before[0] + 1, before[1] + 1)
    resp = await act(client, token, case_id, "pause", kind="handling", reason="等待司法鉴定")
    assert resp.status == 303
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert "/actions/resume" in html and "计时已中止" in html


async def test_refusals_and_terminations_need_their_reason_and_write_the_history(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    refused = await register(client)
    token = await as_user(client, "window01")
    resp = await act(client, token, refused, "not_accept", reason="", confirm="yes")
    assert resp.status == 422 and 'id="f-not_accept-reason-err"' in await resp.text()
    resp = await act(client, token, refused, "not_accept", reason="不属于信访事项", confirm="yes")
    assert resp.status == 303 and await state_of(db, refused) == "not_accepted"
    assert (await counts(db, refused, "case.not_accept"))[1] == 1
    redirected = await register(client)
    token = await as_user(client, "window01")
    resp = await act(
        client, token, redirected, "redirect_legal", legal_route="arbitration",
        reason="劳动争议应申请仲裁", confirm="yes",
    )  # fmt: skip
    assert resp.status == 303 and await state_of(db, redirected) == "redirected_legal"
    async with db() as s:  # 诉访分离: a legal-route matter is no longer a simple one
        assert await s.scalar(select(PetitionCase.grade).where(PetitionCase.id == redirected)) == (
            "complex"
        )
    words = text_of(await (await client.get(f"/cases/{redirected}")).text())
    assert "途径：仲裁" in words and "劳动争议应申请仲裁" in words
    terminated = await register(client)
    token = await as_user(client, "supervisor01")  # 终止 is the assigning roles' (case.assign)
    resp = await act(client, token, terminated, "terminate", reason="信访人撤回", confirm="yes")
    assert resp.status == 303 and await state_of(db, terminated) == "terminated"
    assert (await counts(db, terminated, "case.terminate"))[1] == 1


async def test_supervision_handlers_resume_reopen_and_review_from_the_page(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    civil_handler, housing = "handler05", await dept_id(db, "housing")
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "supervise", type="supervision", note="", due_days="7")
    assert resp.status == 422 and "请填写督办意见" in await resp.text()
    resp = await act(
        client, token, case_id, "supervise", type="supervision", note="请加快办理", due_days="7"
    )
    assert resp.status == 303
    assert (await counts(db, case_id, "case.supervise"))[1] == 1
    resp = await act(client, token, case_id, "add_handler", department_id=str(housing), role="co")
    assert resp.status == 303
    assert "区住建局" in text_of(await (await client.get(f"/cases/{case_id}")).text())
    resp = await act(client, token, case_id, "pause", kind="acceptance", reason="等待材料补正")
    assert resp.status == 303
    resp = await act(client, token, case_id, "resume", kind="acceptance")
    assert resp.status == 303
    assert (await counts(db, case_id, "case.deadline_resume"))[1] == 1
    token = await as_user(client, civil_handler)
    for name, fields in (
        ("accept", {}),
        ("start_handling", {}),
        ("reply", {"reply": "经核查，养老院已公开收费明细，详见书面清单。"}),
        ("reopen", {"reason": "信访人称收费明细仍不完整"}),
    ):
        resp = await act(client, token, case_id, name, **fields)
        assert resp.status == 303, (name, text_of(await resp.text())[:300])
        if name == "reply":
            await sign_off_as(client, "leader05", case_id)
            token = await as_user(client, civil_handler)
    assert await state_of(db, case_id) == "handling"
    resp = await act(client, token, case_id, "reply", reply="已补充公开全部收费项目和标准。")
    assert resp.status == 303
    await sign_off_as(client, "leader05", case_id)
    token = await as_user(client, civil_handler)
    resp = await act(client, token, case_id, "request_review", reason="对答复不服，申请复查")
    assert resp.status == 303
    assert (await counts(db, case_id, "case.request_review"))[1] == 1
    assert "新事项" in text_of(await (await client.get(f"/cases/{case_id}")).text())


async def test_an_accusation_is_never_offered_to_the_accused_unit(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    urban = await dept_id(db, "urban")
    case_id = await register(
        client,
        matter_type="official_misconduct",
        summary="举报某执法人员收受好处",
        accused_department=str(urban),
        **{"attr-official_misconduct-accused": "区城管局某中队"},
    )
    await as_user(client, "supervisor01")
    html = await (await client.get(f"/cases/{case_id}")).text()
    form = html[
        html.index('id="action-transfer"') : html.index(
            "</details>", html.index('id="action-transfer"')
        )
    ]
    assert "区住建局" in form and "区城管局" not in form
    assert "检举控告件，依法保密" in text_of(html)
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "transfer", target_department_id=str(urban))
    assert resp.status == 403
    assert await state_of(db, case_id) == "registered"


async def test_the_note_typed_at_the_video_desk_is_shown_on_the_case_page(client: Client) -> None:
    token = await as_user(client, "window01")
    me = await (await client.get("/api/me")).json()
    headers = {csrf.HEADER: token}
    created = await client.post(
        "/api/cases",
        json={"channel": "video", "site_id": me["site_id"], "summary": "视频接访：养老补贴",
              "matter_type": "elderly_care", "petitioner": {"name": "周七", "phone": "13712345678"}},
        headers=headers,
    )  # fmt: skip
    assert created.status == 201, await created.text()
    case_id = (await created.json())["case"]["id"]
    # what the desk's 受理 form does (web/views/desk.py): the officer's summary as the note
    note = "来访人反映养老补贴三个月未到账，已核实身份"
    accepted = await client.post(
        f"/api/cases/{case_id}/transitions",
        json={"transition": "accept", "note": note},
        headers=headers,
    )
    assert accepted.status == 200, await accepted.text()
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="intake-notes"' in html and note in html
    assert "视频接访" in text_of(html)


async def test_a_group_at_the_window_needs_a_representative(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    token = await as_user(client, "window01")
    resp = await client.post("/cases/new", data={"_csrf": token, **WALK_IN, "headcount": "6"})
    html = await resp.text()
    assert resp.status == 422 and 'id="err-rep_name"' in html and 'value="6"' in html
    case_id = await register(client, headcount="6", rep_name="吴六", rep_phone="13612345678")
    words = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "来访（联名）人数：6人" in words and "吴六" in words
