"""签发 (issue #17 item 4): a department handler's written reply or refusal is a draft until
the lead department's leader signs it off; only then does the case change state and the
petitioner get the evaluation SMS. The leader may return the draft with a note; a handler of
another department or a window officer cannot sign; a second sign-off after someone else
signed says so and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.auth import csrf
from server.cases.models import CaseEvent, CaseNotification
from server.kernel.settings import Settings
from tests.component.web.test_case_workbench import (
    act,
    as_user,
    client,
    counts,
    db,
    dept_id,
    register,
    state_of,
    text_of,
)
from tests.conftest import make_settings

__all__ = ["client", "db"]

Client = Any
REPLY = "经核查，养老院已在公示栏公开收费明细，并向您提供了书面清单。"


async def handling_in_housing(client: Client, db: async_sessionmaker[AsyncSession]) -> int:
    """A case transferred to 区住建局 and in handling by its handler (handler02)."""
    case_id = await register(client)
    housing = await dept_id(db, "housing")
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "transfer", target_department_id=str(housing))
    assert resp.status == 303
    token = await as_user(client, "handler02")
    for name in ("accept", "start_handling"):
        assert (await act(client, token, case_id, name)).status == 303
    return case_id


async def sms_count(db: async_sessionmaker[AsyncSession], case_id: int) -> int:
    async with db() as s:
        n = await s.scalar(
            select(func.count())
            .select_from(CaseNotification)
            .where(CaseNotification.case_id == case_id)
        )
        return int(n or 0)


async def sign(client: Client, case_id: int, name: str = "sign_off", **fields: str) -> Any:
    page = await (await client.get(f"/cases/{case_id}")).text()
    token = page.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
    return await client.post(
        f"/cases/{case_id}/sign-off/{name}",
        data={"_csrf": token, **fields},
        allow_redirects=False,
    )


async def test_a_handlers_reply_waits_for_the_leaders_sign_off(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    sms_before = await sms_count(db, case_id)
    token = await as_user(client, "handler02")
    resp = await act(client, token, case_id, "reply", reply=REPLY)
    assert resp.status == 303 and resp.headers["Location"] == f"/cases/{case_id}?done=drafted"
    assert await state_of(db, case_id) == "handling"
    assert await sms_count(db, case_id) == sms_before  # nothing goes out yet
    words = text_of(await (await client.get(resp.headers["Location"])).text())
    assert "等待承办单位领导签发" in words and REPLY in words
    assert "/notices/reply.pdf" not in words
    await as_user(client, "leader02")
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert f'action="/cases/{case_id}/sign-off/sign_off"' in html and REPLY in html
    before = await counts(db, case_id, "case.sign_off")
    resp = await sign(client, case_id)
    assert resp.status == 303 and resp.headers["Location"] == f"/cases/{case_id}?done=sign_off"
    assert await state_of(db, case_id) == "replied"
    assert await counts(db, case_id, "case.sign_off") >= (before[0] + 1, before[1] + 1)
    assert await sms_count(db, case_id) == sms_before + 1  # the evaluation link
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert "/sign-off/sign_off" not in html and f"/cases/{case_id}/notices/reply.pdf" in html
    resp = await client.get(f"/cases/{case_id}/notices/reply.pdf")
    assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")


async def test_the_leader_returns_a_draft_and_the_handler_sends_a_new_one(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    assert (await act(client, token, case_id, "reply", reply=REPLY)).status == 303
    await as_user(client, "leader02")
    resp = await sign(client, case_id, "return_draft", note="")
    assert resp.status == 422 and "请填写退回修改意见" in await resp.text()
    resp = await sign(client, case_id, "return_draft", note="请补充收费标准的政策依据")
    assert resp.status == 303 and await state_of(db, case_id) == "handling"
    token = await as_user(client, "handler02")
    words = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "请补充收费标准的政策依据" in words and "已退回修改" in words
    better = REPLY + "收费标准依据《养老机构管理办法》公示。"
    assert (await act(client, token, case_id, "reply", reply=better)).status == 303
    await as_user(client, "leader02")
    assert (await sign(client, case_id)).status == 303
    assert await state_of(db, case_id) == "replied"
    async with db() as s:
        reply_event = await s.scalar(
            select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.type == "reply")
        )
        assert reply_event is not None
    words = text_of(await (await client.get(f"/cases/{case_id}")).text())
    assert "领导签发" in words


async def test_only_the_lead_departments_leader_signs(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    assert (await act(client, token, case_id, "reply", reply=REPLY)).status == 303
    for user in ("handler02", "window01", "leader05", "supervisor01"):
        await as_user(client, user)
        html = await (await client.get(f"/cases/{case_id}")).text()
        assert "/sign-off/sign_off" not in html, user
        resp = await sign(client, case_id)
        assert resp.status in (403, 404), user
    assert await state_of(db, case_id) == "handling"


async def test_a_second_sign_off_says_so_and_changes_nothing(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    assert (await act(client, token, case_id, "reply", reply=REPLY)).status == 303
    await as_user(client, "leader02")
    page = await (await client.get(f"/cases/{case_id}")).text()
    stale = page.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
    assert (await sign(client, case_id)).status == 303
    before = await counts(db, case_id, "case.sign_off")
    sms = await sms_count(db, case_id)
    resp = await client.post(
        f"/cases/{case_id}/sign-off/sign_off", data={"_csrf": stale}, allow_redirects=False
    )
    assert resp.status == 409
    assert "该草稿已经签发或退回" in text_of(await resp.text())
    assert await counts(db, case_id, "case.sign_off") == before
    assert await sms_count(db, case_id) == sms
    assert await state_of(db, case_id) == "replied"


async def test_a_leaders_own_reply_is_signed_as_given(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "leader02")
    resp = await act(client, token, case_id, "reply", reply=REPLY)
    assert resp.status == 303 and resp.headers["Location"] == f"/cases/{case_id}?done=reply"
    assert await state_of(db, case_id) == "replied"


async def test_a_handlers_refusal_waits_for_sign_off_too(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    housing = await dept_id(db, "housing")
    token = await as_user(client, "supervisor01")
    resp = await act(client, token, case_id, "transfer", target_department_id=str(housing))
    assert resp.status == 303
    token = await as_user(client, "handler02")
    resp = await act(
        client, token, case_id, "not_accept", reason="已经依法处理，无新的事实", confirm="yes"
    )
    assert resp.status == 303 and resp.headers["Location"].endswith("done=drafted")
    assert await state_of(db, case_id) == "transferred"
    await as_user(client, "leader02")
    assert (await sign(client, case_id)).status == 303
    assert await state_of(db, case_id) == "not_accepted"
    resp = await client.get(f"/cases/{case_id}/notices/refusal.pdf")
    assert resp.status == 200


async def test_a_handlers_reply_through_the_api_is_a_draft_too(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    resp = await client.post(
        f"/api/cases/{case_id}/transitions",
        json={"transition": "reply", "reply": REPLY},
        headers={csrf.HEADER: token},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "handling"
    assert await state_of(db, case_id) == "handling"
    await as_user(client, "leader02")
    assert (await sign(client, case_id)).status == 303
    assert await state_of(db, case_id) == "replied"


async def test_with_sign_off_turned_off_a_handlers_reply_goes_out_directly(
    tmp_path: Path, demo_sqlite_url: str, db: async_sessionmaker[AsyncSession]
) -> None:
    app = create_app(make_settings(tmp_path, demo_sqlite_url, reply_sign_off=False))
    async with TestClient(TestServer(app)) as plain:
        case_id = await handling_in_housing(plain, db)
        token = await as_user(plain, "handler02")
        resp = await act(plain, token, case_id, "reply", reply=REPLY)
        assert resp.status == 303 and resp.headers["Location"].endswith("done=reply")
        assert await state_of(db, case_id) == "replied"


def test_the_sign_off_setting_is_read_from_the_environment() -> None:
    env = {"ONEDOOR_SECRET_KEY": "x" * 32}
    assert Settings.from_env(env).reply_sign_off is True
    assert Settings.from_env({**env, "ONEDOOR_REPLY_SIGN_OFF": "false"}).reply_sign_off is False


async def test_a_returned_draft_is_no_longer_shown_once_the_leader_replied_himself(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    assert (await act(client, token, case_id, "reply", reply=REPLY)).status == 303
    await as_user(client, "leader02")
    assert (await sign(client, case_id, "return_draft", note="我来答复")).status == 303
    assert 'id="draft-returned"' in await (await client.get(f"/cases/{case_id}")).text()
    token = await as_user(client, "leader02")
    assert (await act(client, token, case_id, "reply", reply=REPLY + "（领导答复）")).status == 303
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="sign-off"' not in html and await state_of(db, case_id) == "replied"


async def test_the_sign_off_over_the_rest_api(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """The same four eyes for programs: POST /api/cases/{id}/sign-off and …/sign-off/return."""
    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    headers = {"X-CSRF-Token": token}
    drafted = await client.post(
        f"/api/cases/{case_id}/transitions",
        json={"transition": "reply", "reply": REPLY},
        headers=headers,
    )
    assert drafted.status == 200 and (await drafted.json())["state"] == "handling"
    refused = await client.post(f"/api/cases/{case_id}/sign-off", headers=headers)
    assert refused.status == 403, await refused.text()

    token = await as_user(client, "leader02")
    headers = {"X-CSRF-Token": token}
    empty = await client.post(
        f"/api/cases/{case_id}/sign-off/return", json={"note": ""}, headers=headers
    )
    assert empty.status == 422 and (await empty.json())["details"]["fields"][0]["field"] == "note"
    signed = await client.post(f"/api/cases/{case_id}/sign-off", headers=headers)
    body = await signed.json()
    assert signed.status == 200 and body["state"] == "replied", body
    again = await client.post(f"/api/cases/{case_id}/sign-off", headers=headers)
    assert again.status == 409 and (await again.json())["error"] == "no_pending_draft"
    assert await state_of(db, case_id) == "replied"
