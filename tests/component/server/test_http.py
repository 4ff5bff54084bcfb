"""The app over real HTTP: sign-in, CSRF, errors, the organisation browser, operations."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.app import create_app
from server.audit.models import AuditEntry
from server.http import keys
from server.kernel.ratelimit import InProcessRateLimiter
from tests.conftest import csrf_token, make_settings, sign_in, signed_in

Client = TestClient[Any, Any]


async def test_health_ready_metrics(app_client: Client) -> None:
    assert (await (await app_client.get("/healthz")).json()) == {"status": "ok"}
    ready = await app_client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"database": "ok"}
    metrics = await (await app_client.get("/metrics")).text()
    assert "onedoor_http_requests_total" in metrics


async def test_unknown_api_route_is_json_with_code(app_client: Client) -> None:
    resp = await app_client.get("/api/does-not-exist")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "route_not_found" and body["message_zh"]


async def test_pages_need_sign_in(app_client: Client) -> None:
    resp = await app_client.get("/org", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    api = await app_client.get("/api/org/sites")
    assert api.status == 401 and (await api.json())["error"] == "not_authenticated"


async def test_post_without_csrf_is_refused_and_changes_nothing(app_client: Client) -> None:
    resp = await app_client.post(
        "/login", data={"username": "window01", "password": "demo-pass-2026"}
    )
    assert resp.status == 403
    assert "页面已过期" in await resp.text()
    forged = await app_client.post(
        "/login",
        data={"username": "window01", "password": "demo-pass-2026", "_csrf": "forged.token"},
    )
    assert forged.status == 403
    me = await (await app_client.get("/api/me")).json()
    assert me == {"signed_in": False}


async def test_wrong_password_shows_zh_message(app_client: Client) -> None:
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/login", data={"username": "window01", "password": "nope", "_csrf": token}
    )
    assert resp.status == 401
    assert "用户名或密码错误" in await resp.text()


async def test_sign_in_org_browser_and_sign_out(app_client: Client) -> None:
    token = await sign_in(app_client, "window01")
    cookie = app_client.session.cookie_jar.filter_cookies(app_client.make_url("/"))
    assert "od_session" in cookie
    tree = await (await app_client.get("/api/org/sites")).json()
    assert len(tree) == 1 and len(tree[0]["children"]) == 10
    street = tree[0]["children"][0]
    page = await (await app_client.get(f"/org/sites/{street['id']}")).text()
    assert street["name"] in page and "调解室" in page
    english = await (await app_client.get(f"/org/sites/{street['id']}?lang=en")).text()
    assert 'lang="en"' in english
    resp = await app_client.post("/logout", data={"_csrf": token}, allow_redirects=False)
    assert resp.status == 303
    assert (await (await app_client.get("/api/me")).json()) == {"signed_in": False}


async def test_session_cookie_flags(app_client: Client) -> None:
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/login",
        data={"username": "window01", "password": "demo-pass-2026", "_csrf": token},
        allow_redirects=False,
    )
    set_cookie = resp.headers.getall("Set-Cookie")
    session_cookie = next(c for c in set_cookie if c.startswith("od_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_open_redirect_is_refused(app_client: Client) -> None:
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/login",
        data={
            "username": "window01",
            "password": "demo-pass-2026",
            "_csrf": token,
            "next": "//evil.example/",
        },
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/"


async def test_permission_denial_is_audited(app_client: Client) -> None:
    await signed_in(app_client, "audit_admin")
    resp = await app_client.get("/api/org/sites")
    assert resp.status == 403 and (await resp.json())["error"] == "permission_denied"
    async with app_client.app[keys.db].begin() as s:
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert "auth.permission_denied" in actions


async def test_malformed_and_oversized_json(app_client: Client) -> None:
    token = await signed_in(app_client, "window_officer")
    big = "x" * (app_client.app[keys.settings].max_request_bytes + 10)
    resp = await app_client.post(
        "/api/me", data=big, headers={"Content-Type": "application/json", "X-CSRF-Token": token}
    )
    assert resp.status in (405, 413)


async def test_sign_in_rate_limited_per_address(tmp_path: Path, demo_sqlite_url: str) -> None:
    app = create_app(make_settings(tmp_path, demo_sqlite_url, login_rate_per_min=5))
    app[keys.ratelimiter] = InProcessRateLimiter(clock=lambda: 1000.0)  # one window throughout
    async with TestClient(TestServer(app)) as client:
        token = await csrf_token(client)
        statuses = []
        for _ in range(6):
            resp = await client.post(
                "/login", data={"username": "nobody", "password": "x", "_csrf": token}
            )
            statuses.append(resp.status)
    assert statuses == [401] * 5 + [429]


async def test_audit_admin_reads_verifies_and_exports_the_log(app_client: Client) -> None:
    await signed_in(app_client, "audit_admin")
    page = await (await app_client.get("/audit?verify=1")).text()
    assert 'id="chain-status"' in page and "哈希链完整" in page
    assert "auth.sign_in" in page
    export = await app_client.get("/audit/export.csv?action=auth.")
    assert export.status == 200 and export.content_type == "text/csv"
    body = (await export.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:5] == ["编号", "时间（本地）", "操作人", "用户名", "操作"]
    assert len(rows) > 1 and all(row[5].startswith("auth.") for row in rows[1:])


async def test_other_roles_cannot_read_the_audit_log(app_client: Client) -> None:
    await signed_in(app_client, "sys_admin")
    assert (
        await app_client.get("/audit/export.csv", headers={"Accept": "application/json"})
    ).status == 403


async def test_openapi_document(app_client: Client) -> None:
    doc = await (await app_client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    sites = doc["paths"]["/api/org/sites"]["get"]
    assert sites["x-onedoor-permission"] == "org.view"
    assert sites["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert "SiteNode" in doc["components"]["schemas"]
    assert doc["paths"]["/api/org/sites/{site_id}"]["get"]["parameters"][0]["name"] == "site_id"
