"""One error model: every REST failure is an ErrorBody, whatever refused the request (no route,
wrong method, unauthenticated, bad token, CSRF, bad input, a body too large). Walks every
route of the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from server.http import keys
from server.http.openapi import ErrorBody
from tests.conftest import signed_in

Client = TestClient[Any, Any]


def _concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "999999", path)


async def _check(resp: aiohttp.ClientResponse, seen: list[str], what: str) -> None:
    if resp.status < 400:
        return
    assert resp.content_type == "application/json", f"{what}: {resp.status} {resp.content_type}"
    body = await resp.json()
    ErrorBody.model_validate(body)  # raises with the offending field
    assert body["request_id"] == resp.headers["X-Request-Id"], what
    seen.append(body["error"])


async def test_every_route_answers_errors_in_one_model(app_client: Client) -> None:
    doc = await (await app_client.get("/api/openapi.json")).json()
    seen: list[str] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
        for path, ops in doc["paths"].items():
            url = app_client.make_url(_concrete(path))
            for method in ops:
                what = f"{method.upper()} {path}"
                # Anonymous, then with an unknown API token.
                async with bare.request(method, url, json={}) as resp:
                    await _check(resp, seen, what + " anonymous")
                async with bare.request(
                    method, url, json={}, headers={"Authorization": "Bearer odt_x"}
                ) as resp:
                    assert resp.status == 401, what
                    await _check(resp, seen, what + " bad token")
    csrf = await signed_in(app_client, "centre_supervisor")
    for path, ops in doc["paths"].items():
        if "patch" not in ops:
            resp = await app_client.patch(_concrete(path), json={}, headers={"X-CSRF-Token": csrf})
            # 404 where the placeholder does not fit the route's pattern (pause|resume).
            assert resp.status in (404, 405), path
            await _check(resp, seen, f"PATCH {path}")
            assert resp.status == 404 or resp.headers["Allow"]
        for method in ops:
            what = f"{method.upper()} {path}"
            if method == "get":
                resp = await app_client.get(_concrete(path), params={"limit": "-1", "page": "x"})
                await _check(resp, seen, what)
                continue
            # Without the CSRF header, then with a body of the wrong shape.
            resp = await app_client.request(method, _concrete(path), json={})
            await _check(resp, seen, what + " no csrf")
            resp = await app_client.request(
                method, _concrete(path), json=[1], headers={"X-CSRF-Token": csrf}
            )
            await _check(resp, seen, what + " bad body")
            resp = await app_client.request(
                method,
                _concrete(path),
                data=b"{",
                headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            )
            await _check(resp, seen, what + " malformed json")
    resp = await app_client.post(
        "/api/escalation-contacts",
        data=b"x" * (app_client.app[keys.settings].max_request_bytes + 1),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert resp.status == 413
    await _check(resp, seen, "too large")
    resp = await app_client.get("/api/no-such-route")
    await _check(resp, seen, "no route")
    for code in (
        "not_authenticated",
        "api_token_invalid",
        "method_not_allowed",
        "csrf_failed",
        "invalid_input",
        "payload_too_large",
        "route_not_found",
    ):
        assert code in seen, code


async def test_fields_at_fault_always_come_as_one_list(app_client: Client) -> None:
    csrf = await signed_in(app_client, "window_officer")
    headers = {"X-CSRF-Token": csrf}
    me = await (await app_client.get("/api/me")).json()
    intake = {
        "channel": "window",
        "site_id": me["site_id"],
        "summary": "小区路灯损坏多日无人修",
        "petitioner": {"name": "张三", "phone": "13812345678"},
    }
    one = await app_client.post(
        "/api/cases", json={**intake, "matter_type": "no-such-type"}, headers=headers
    )
    body = ErrorBody.model_validate(await one.json())
    assert body.error == "invalid_input" and body.details is not None
    assert [f.field for f in body.details.fields or []] == ["matter_type"]
    assert (await one.json())["details"]["field"] == "matter_type"  # the former shape kept
    case = (await (await app_client.post("/api/cases", json=intake, headers=headers)).json())[
        "case"
    ]
    missing = await app_client.post(
        f"/api/cases/{case['id']}/transitions", json={"transition": "not_accept"}, headers=headers
    )
    body = ErrorBody.model_validate(await missing.json())
    assert body.error == "missing_field" and body.details is not None
    assert body.details.fields and body.details.fields[0].field == "reason"
    bad = await app_client.post("/api/cases", json={**intake, "summary": 5}, headers=headers)
    body = ErrorBody.model_validate(await bad.json())
    assert body.details is not None and [f.field for f in body.details.fields or []] == ["summary"]
