"""The case REST API through the real app (SQLite, demo district)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.auth import csrf
from server.cases.models import CaseNotification
from server.http import keys
from tests.conftest import sign_in, signed_in


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


async def test_deadline_extension_pause_and_resume(app_client: TestClient[Any, Any]) -> None:
    """The deadline endpoints answer from the service's view (no rows at the edge), and a
    department leader outside the case's scope gets the same 404 as for a missing case."""
    token = await signed_in(app_client, "window_officer")
    me = await (await app_client.get("/api/me")).json()
    resp = await post(
        app_client,
        token,
        "/api/cases",
        {
            "channel": "window",
            "site_id": me["site_id"],
            "summary": "物业公司乱收停车费",
            "matter_type": "property_management",
            "attributes": {"estate": "和睦新村"},
            "petitioner": {"name": "张三", "phone": "13812345678"},
        },
    )
    assert resp.status == 201, await resp.text()
    case_id = (await resp.json())["case"]["id"]
    token = await sign_in(app_client, "handler02")
    accepted = await post(
        app_client, token, f"/api/cases/{case_id}/transitions", {"transition": "accept"}
    )
    assert accepted.status == 200, await accepted.text()
    before = {d["kind"]: d for d in (await accepted.json())["deadlines"]}["handling"]

    token = await sign_in(app_client, "leader01")  # leads another department
    outside = await post(
        app_client,
        token,
        f"/api/cases/{case_id}/deadlines/extension",
        {"kind": "handling", "days": 10, "reason": "需现场勘验"},
    )
    assert outside.status == 404 and (await outside.json())["error"] == "case_not_found"

    token = await sign_in(app_client, "leader02")
    extended = await post(
        app_client,
        token,
        f"/api/cases/{case_id}/deadlines/extension",
        {"kind": "handling", "days": 10, "reason": "需现场勘验"},
    )
    assert extended.status == 200, await extended.text()
    body = await extended.json()
    assert body["kind"] == "handling" and body["extension_days"] == 10
    assert datetime.fromisoformat(body["due_at"]) > datetime.fromisoformat(before["due_at"])
    async with app_client.app[keys.db]() as session:  # the petitioner is told the reason
        told = (
            await session.scalars(
                select(CaseNotification.to).where(
                    CaseNotification.case_id == case_id,
                    CaseNotification.body.contains("需现场勘验"),
                )
            )
        ).all()
    pii = app_client.app[keys.pii]  # a resident's number is kept encrypted (#17 finding 13)
    assert [t.startswith("v1:") for t in told] == [True]
    assert [pii.decrypt(t) for t in told] == ["13812345678"]
    paused = await post(
        app_client,
        token,
        f"/api/cases/{case_id}/deadlines/pause",
        {"kind": "handling", "reason": "听证"},
    )
    assert paused.status == 200 and (await paused.json())["status"] == "paused"
    resumed = await post(
        app_client,
        token,
        f"/api/cases/{case_id}/deadlines/resume",
        {"kind": "handling", "reason": "听证结束"},
    )
    assert resumed.status == 200 and (await resumed.json())["status"] == "open"
    timeline = await (await app_client.get(f"/api/cases/{case_id}/timeline")).json()
    assert [e["type"] for e in timeline][-3:] == [
        "deadline_extended",
        "deadline_paused",
        "deadline_resumed",
    ]
