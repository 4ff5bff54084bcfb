"""The holiday calendar page (/admin/holidays) and its service: the shipped year files parse,
a year loads in one go (replacing that year's rows, audited), a bad file changes nothing, add
and remove a day with the message at the field, and only the system administrator may use it
(not the security or audit administrator: 三员分立)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.cases.holiday_calendar import (
    SHIPPED_DIR,
    HolidayFileInvalid,
    parse_holiday_file,
    year_view,
)
from server.cases.models import Holiday
from server.http import keys
from server.kernel.db import utcnow
from tests.conftest import signed_in

Client = TestClient[Any, Any]


def test_the_shipped_files_parse_and_2027_is_provisional() -> None:
    y2026 = parse_holiday_file((SHIPPED_DIR / "2026.json").read_bytes())
    y2027 = parse_holiday_file((SHIPPED_DIR / "2027.json").read_bytes())
    assert not y2026.provisional and y2027.provisional
    # 2026: 春节 9 days off, with two 调休 Saturdays
    spring = [d for d in y2026.days if d.name == "春节"]
    assert len(spring) == 9
    assert {d.date.isoformat() for d in y2026.days if d.workday and "春节" in d.name} == {
        "2026-02-14",
        "2026-02-28",
    }
    # 2027 (provisional): the 13 statutory days of the 2025 revised rules, no 调休
    assert len(y2027.days) == 13 and not any(d.workday for d in y2027.days)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        json.dumps({"year": 2028, "days": [{"date": "2029-01-01", "name": "x"}]}).encode(),
        json.dumps({"year": 2028, "days": [{"date": "2028-01-01", "name": "a"}] * 2}).encode(),
        json.dumps({"year": 2028, "days": [{"date": "2028-01-01", "name": ""}]}).encode(),
    ],
    ids=["not-json", "empty", "outside-year", "twice", "no-name"],
)
def test_bad_files_are_refused_with_a_code(raw: bytes) -> None:
    with pytest.raises(HolidayFileInvalid) as e:
        parse_holiday_file(raw)
    assert e.value.code == "holiday_file_invalid"
    assert e.value.message_zh


async def _post(client: Client, path: str, csrf: str, **form: str) -> aiohttp.ClientResponse:
    return await client.post(path, data={"_csrf": csrf, **form}, allow_redirects=False)


async def _upload(client: Client, csrf: str, raw: bytes) -> aiohttp.ClientResponse:
    data = aiohttp.FormData()
    data.add_field("_csrf", csrf)
    data.add_field("file", raw, filename="y.json", content_type="application/json")
    return await client.post("/admin/holidays/load", data=data, allow_redirects=False)


async def test_the_demo_has_both_years_and_the_page_warns_for_the_provisional_one(
    app_client: Client,
) -> None:
    await signed_in(app_client, "sys_admin")
    home = await (await app_client.get("/")).text()
    assert 'href="/admin/holidays"' in home
    page = await (await app_client.get("/admin/holidays?year=2026")).text()
    assert "2026-10-01" in page and 'id="provisional"' not in page
    page = await (await app_client.get("/admin/holidays?year=2027")).text()
    assert "2027-02-05" in page and 'id="provisional"' in page


async def test_add_and_remove_a_day_audited_and_errors_at_the_field(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    resp = await _post(
        app_client, "/admin/holidays/days", csrf, day="2026-12-31", kind="off", name=""
    )
    assert resp.status == 422
    html = await resp.text()
    assert 'id="err-name"' in html and 'value="2026-12-31"' in html
    resp = await _post(
        app_client, "/admin/holidays/days", csrf, day="2026-13-01", kind="off", name="x"
    )
    assert resp.status == 422 and 'id="err-day"' in await resp.text()
    resp = await _post(
        app_client, "/admin/holidays/days", csrf, day="2026-12-31", kind="off", name="测试假日"
    )
    assert resp.status == 303
    resp = await _post(
        app_client, "/admin/holidays/days", csrf, day="2026-12-31", kind="off", name="再次"
    )
    assert resp.status == 422 and "先删除" in await resp.text()
    async with app_client.app[keys.db].begin() as session:
        view = await year_view(session, 2026)
        assert any(d.name == "测试假日" for d in view.days)
    resp = await _post(app_client, "/admin/holidays/remove", csrf, day="2026-12-31")
    assert resp.status == 303
    async with app_client.app[keys.db].begin() as session:
        assert await session.get(Holiday, __import__("datetime").date(2026, 12, 31)) is None
        actions = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("holiday.day_%"))
            )
        )
    assert actions == ["holiday.day_added", "holiday.day_removed"]


async def test_loading_a_year_replaces_it_and_a_bad_file_changes_nothing(
    app_client: Client,
) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    resp = await _upload(app_client, csrf, b'{"year": 2027, "days": []}')
    assert resp.status == 422
    assert "节假日文件格式有误" in await resp.text()
    async with app_client.app[keys.db].begin() as session:
        assert len((await year_view(session, 2027)).days) == 13
    final = {
        "year": 2027,
        "source": "国务院办公厅通知（测试）",
        "days": [
            {"date": "2027-02-05", "workday": False, "name": "春节"},
            {"date": "2027-02-20", "workday": True, "name": "春节调休上班"},
        ],
    }
    resp = await _upload(app_client, csrf, json.dumps(final, ensure_ascii=False).encode())
    assert resp.status == 303
    async with app_client.app[keys.db].begin() as session:
        view = await year_view(session, 2027)
        entry = await session.scalar(
            select(AuditEntry)
            .where(AuditEntry.action == "holiday.year_loaded")
            .order_by(AuditEntry.id.desc())
        )
    assert [d.day.isoformat() for d in view.days] == ["2027-02-05", "2027-02-20"]
    assert not view.provisional and view.source == "国务院办公厅通知（测试）"
    assert entry is not None and entry.object_id == "2027"
    assert entry.actor.startswith("staff:")
    assert view.loaded_at is not None and view.loaded_at <= utcnow()


@pytest.mark.parametrize("role", ["sec_admin", "audit_admin", "window_officer"])
async def test_other_roles_get_403_and_no_tile(app_client: Client, role: str) -> None:
    csrf = await signed_in(app_client, role)
    assert 'href="/admin/holidays"' not in await (await app_client.get("/")).text()
    assert (await app_client.get("/admin/holidays")).status == 403
    resp = await _post(
        app_client, "/admin/holidays/days", csrf, day="2026-12-31", kind="off", name="x"
    )
    assert resp.status == 403
    assert (await _upload(app_client, csrf, b"{}")).status == 403
