"""The web client's pages and the call queue, through the real app on SQLite (demo district)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.cases.models import Channel, PetitionCase
from server.http import keys
from server.org.models import Staff
from server.sessions.models import CallSession
from tests.conftest import DEMO_USERS, csrf_token, sign_in, signed_in

Client = TestClient[Any, Any]


async def _db_case(client: Client, **where: Any) -> PetitionCase | None:
    async with client.app[keys.db].begin() as session:
        q = select(PetitionCase)
        for k, v in where.items():
            q = q.where(getattr(PetitionCase, k) == v)
        row: PetitionCase | None = await session.scalar(q.order_by(PetitionCase.id.desc()).limit(1))
        return row


async def test_kiosk_registration_creates_a_case_and_shows_number_and_qr(
    app_client: Client,
) -> None:
    page = await app_client.get("/kiosk")
    assert page.status == 200
    html = await page.text()
    assert "自助登记" in html and 'href="/' not in html.split("<main")[1]  # nothing to leave to
    token = re.search(r'name="_csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    site = re.search(r'name="site" value="(\d+)"', html).group(1)  # type: ignore[union-attr]
    resp = await app_client.post(
        "/kiosk",
        data={
            "_csrf": token,
            "site": site,
            "matter_code": "noise",
            "description": "夜间施工噪声",
            "name": "张三",
            "phone": "13812345678",
        },
    )
    body = await resp.text()
    assert resp.status == 200, body
    case = await _db_case(app_client, channel=Channel.kiosk)
    assert case is not None and case.summary == "夜间施工噪声" and case.first_receiver_id is None
    assert case.case_no in body and "data:image/svg+xml" in body
    follow = re.search(r'/follow/([^"\s<]+)', body).group(1)  # type: ignore[union-attr]
    page = await app_client.get(f"/follow/{follow}")
    assert page.status == 200 and case.case_no in await page.text()
    assert (await app_client.get("/follow/1.forged")).status == 404


async def test_kiosk_bad_input_keeps_typed_values_and_explains_in_chinese(
    app_client: Client,
) -> None:
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/kiosk",
        data={
            "_csrf": token,
            "matter_code": "noise",
            "description": "   ",
            "name": "李四",
            "phone": "12345",
        },
    )
    body = await resp.text()
    assert resp.status == 422
    assert "请简要描述您的诉求" in body and "请输入有效的11位手机号码" in body
    assert 'value="李四"' in body and 'value="12345"' in body
    assert re.search(r'value="noise"\s+checked', body)
    assert await _db_case(app_client, channel=Channel.kiosk) is None


async def test_call_queued_accepted_creates_case_with_officer_as_first_receiver(
    app_client: Client,
) -> None:
    token = await signed_in(app_client, "community_agent")
    bad = await app_client.post(
        "/call",
        data={
            "_csrf": token,
            "matter_code": "",
            "resident_name": "王五",
            "resident_phone": "10000000000",
        },
    )
    text = await bad.text()
    assert bad.status == 422 and "请选择事项类型" in text and "请输入有效的11位手机号码" in text
    assert 'value="王五"' in text
    resp = await app_client.post(
        "/call",
        data={
            "_csrf": token,
            "matter_code": "wage_arrears",
            "resident_name": "王五",
            "resident_phone": "139 1234 5678",
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    entry_url = resp.headers["Location"]
    entry_id = int(entry_url.rsplit("/", 1)[1])
    live = await app_client.get(entry_url)
    assert live.status == 200 and 'id="room"' in await live.text()
    status = await (await app_client.get(f"/api/queue/calls/{entry_id}")).json()
    assert status["state"] == "waiting" and status["resident_phone"] == "139****5678"

    # A window officer sees it in the live queue and accepts it.
    await app_client.post("/logout", data={"_csrf": token})
    token = await sign_in(app_client, DEMO_USERS["window_officer"])
    queue = await (await app_client.get("/api/queue")).json()
    assert [e["id"] for e in queue["waiting"]] == [entry_id]
    assert queue["waiting"][0]["agent_present"] is True
    resp = await app_client.post(
        f"/desk/calls/{entry_id}/accept", data={"_csrf": token}, allow_redirects=False
    )
    assert resp.status == 303
    async with app_client.app[keys.db].begin() as session:
        officer = await session.scalar(
            select(Staff).where(Staff.username == DEMO_USERS["window_officer"])
        )
        call = await session.scalar(select(CallSession).order_by(CallSession.id.desc()).limit(1))
    case = await _db_case(app_client, channel=Channel.video)
    assert officer is not None and case is not None and call is not None
    assert case.first_receiver_id == officer.id and case.matter_type == "wage_arrears"
    assert call.case_id == case.id
    again = await app_client.post(f"/desk/calls/{entry_id}/accept", data={"_csrf": token})
    assert again.status == 409
    page = await app_client.get(f"/desk/calls/{entry_id}")
    assert case.case_no in await page.text()
    # Intake keeps typed input on error, then accepts the case.
    empty = await app_client.post(
        f"/desk/calls/{entry_id}/intake", data={"_csrf": token, "note": " "}
    )
    assert empty.status == 422 and "请填写诉求摘要" in await empty.text()
    ok = await app_client.post(
        f"/desk/calls/{entry_id}/intake", data={"_csrf": token, "note": "拖欠工资三个月"}
    )
    assert ok.status == 200, await ok.text()
    assert (await _db_case(app_client, id=case.id)).state.value == "accepted"  # type: ignore[union-attr]
    end = await app_client.post(
        f"/desk/calls/{entry_id}/end",
        data={"_csrf": token, "outcome": "accepted"},
        allow_redirects=False,
    )
    assert end.status == 303


async def test_call_pages_need_their_roles(app_client: Client) -> None:
    await signed_in(app_client, "dept_handler")
    assert (await app_client.get("/desk")).status == 403
    assert (await app_client.get("/call")).status == 403
    assert (await app_client.get("/api/queue")).status == 403


async def test_join_link_problems_get_clear_chinese_pages(app_client: Client) -> None:
    token = await signed_in(app_client, "mediator")
    headers = {"X-CSRF-Token": token}
    created = await (
        await app_client.post(
            "/api/sessions", json={"kind": "mediation", "title": "邻里纠纷调解"}, headers=headers
        )
    ).json()
    issued = await (
        await app_client.post(
            f"/api/sessions/{created['id']}/tokens", json={"display_name": "赵六"}, headers=headers
        )
    ).json()
    ok = await app_client.get(issued["url"])
    assert ok.status == 200 and "赵六" in await ok.text()
    await app_client.post(f"/api/tokens/{issued['jti']}/revoke", headers=headers)
    revoked = await app_client.get(issued["url"])
    assert revoked.status == 410 and "链接已失效" in await revoked.text()
    garbage = await app_client.get("/join/not-a-token")
    assert garbage.status == 404 and "链接无效" in await garbage.text()


async def test_home_per_role_and_english(app_client: Client) -> None:
    await signed_in(app_client, "centre_supervisor")
    html = await (await app_client.get("/")).text()
    assert "全区实时概况" in html
    page = await app_client.get("/kiosk?lang=en")
    assert "Self-service registration" in await page.text()
