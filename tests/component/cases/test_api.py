"""The case REST API through the real app (SQLite, demo district)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.auth import csrf
from tests.conftest import signed_in


async def post(client: TestClient[Any, Any], token: str, path: str, body: dict[str, Any]) -> Any:
    return await client.post(path, json=body, headers={csrf.HEADER: token})


async def test_intake_detail_transition_and_errors(app_client: TestClient[Any, Any]) -> None:
    token = await signed_in(app_client, "window_officer")
    me = await (await app_client.get("/api/me")).json()
    bad = await post(
        app_client,
        token,
        "/api/cases",
        {
            "channel": "window",
            "site_id": me["site_id"],
            "summary": "拖欠工资三个月",
            "petitioner": {"name": "张三", "id_number": "110105194912310021"},
        },
    )
    assert bad.status == 422
    err = await bad.json()
    assert err["error"] == "invalid_id_number" and err["message_zh"]
    resp = await post(
        app_client,
        token,
        "/api/cases",
        {
            "channel": "window",
            "site_id": me["site_id"],
            "summary": "拖欠工资三个月",
            "petitioner": {"name": "张三", "phone": "13812345678"},
        },
    )
    assert resp.status == 201, await resp.text()
    case = (await resp.json())["case"]
    detail = await (await app_client.get(f"/api/cases/{case['id']}")).json()
    assert detail["state"] == "registered" and "accept" in detail["transitions"]
    assert detail["deadlines"][0]["kind"] == "acceptance"
    illegal = await post(
        app_client, token, f"/api/cases/{case['id']}/transitions", {"transition": "close"}
    )
    assert illegal.status == 409 and (await illegal.json())["error"] == "illegal_transition"
    missing = await post(
        app_client, token, f"/api/cases/{case['id']}/transitions", {"transition": "not_accept"}
    )
    assert (await missing.json())["error"] == "missing_field"
    ok = await post(
        app_client, token, f"/api/cases/{case['id']}/transitions", {"transition": "accept"}
    )
    assert ok.status == 200 and (await ok.json())["state"] == "accepted"
    timeline = await (await app_client.get(f"/api/cases/{case['id']}/timeline")).json()
    assert [e["type"] for e in timeline] == ["registered", "accept"]
    listing = await (await app_client.get("/api/cases", params={"q": "拖欠工资"})).json()
    assert case["id"] in [i["id"] for i in listing["items"]]


async def test_admins_see_no_case_content(app_client: TestClient[Any, Any]) -> None:
    await signed_in(app_client, "sys_admin")
    assert (await app_client.get("/api/cases")).status == 403
    assert (await app_client.get("/api/cases/1")).status == 403


async def test_public_petition_and_claim(app_client: TestClient[Any, Any]) -> None:
    token = await signed_in(app_client, "window_officer")
    me = await (await app_client.get("/api/me")).json()
    resp = await post(
        app_client,
        token,
        "/api/public/petitions",
        {
            "channel": "qr",
            "site_id": me["site_id"],
            "summary": "小区电梯长期故障无人修理",
            "petitioner": {"name": "李四", "phone": "13912345678"},
        },
    )
    assert resp.status == 201
    case_no = (await resp.json())["case_no"]
    items = (await (await app_client.get("/api/cases", params={"q": case_no})).json())["items"]
    claimed = await post(app_client, token, f"/api/cases/{items[0]['id']}/claim", {})
    assert (await claimed.json())["first_receiver_id"] == me["staff_id"]
