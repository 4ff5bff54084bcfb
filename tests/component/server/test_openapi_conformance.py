"""The OpenAPI document is the truth: every GET route of the demo district, called as a role
the document says may call it, answers a status the document lists, and its body validates
against the documented schema (a success against the route's model, a failure as ErrorBody)."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from scheduling.models import Booking
from server.auth.permissions import Action, allowed
from server.cases.models import MediationAgreement
from server.http import keys
from server.org.models import Role
from server.sessions.models import CallSession
from tests.conftest import DEMO_USERS, sign_in

Client = TestClient[Any, Any]

#: The demo account tried first for an action (sees the whole district where one can).
PREFERRED = ["centre_supervisor", "mediator", "window_officer", "sys_admin", "sec_admin"]


def _role_for(permission: str | None) -> str | None:
    if permission is None:
        return None
    action = Action(permission)
    roles = PREFERRED + sorted(DEMO_USERS)
    return next(r for r in roles if allowed([Role(r)], action))


def _schema(doc: dict[str, Any], op: dict[str, Any], status: int) -> dict[str, Any] | None:
    responses = op["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    assert entry is not None, f"status {status} is not documented: {sorted(responses)}"
    content = entry.get("content", {}).get("application/json")
    if content is None:
        return None
    return {**content["schema"], "components": doc["components"]}


async def _ids(client: Client) -> dict[str, str]:
    async with client.app[keys.db]() as session:
        booking = await session.scalar(select(func.min(Booking.id)))
        call = await session.scalar(select(func.min(CallSession.id)))
        agreement = await session.scalar(select(func.min(MediationAgreement.id)))
    # A case to read: taken in at the window and accepted (so it has deadlines).
    csrf = await sign_in(client, DEMO_USERS["window_officer"])
    me = await (await client.get("/api/me")).json()
    resp = await client.post(
        "/api/cases",
        json={
            "channel": "window",
            "site_id": me["site_id"],
            "summary": "小区路灯损坏多日无人修",
            "petitioner": {"name": "张三", "phone": "13812345678"},
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 201, await resp.text()
    case_id = (await resp.json())["case"]["id"]
    await client.post(
        f"/api/cases/{case_id}/transitions",
        json={"transition": "accept"},
        headers={"X-CSRF-Token": csrf},
    )
    client.session.cookie_jar.clear()
    await sign_in(client, DEMO_USERS["centre_supervisor"])
    sites = await (await client.get("/api/org/sites")).json()
    client.session.cookie_jar.clear()
    return {
        "case_id": str(case_id),
        "site_id": str(sites[0]["id"] if isinstance(sites, list) else 1),
        "owner": "default",
        "booking_id": str(booking or 1),
        "session_id": str(call or 1),
        "agreement_id": str(agreement or 1),
    }


async def test_every_get_route_answers_what_the_document_says(app_client: Client) -> None:
    doc = await (await app_client.get("/api/openapi.json")).json()
    ids = await _ids(app_client)
    validated_ok: list[str] = []
    signed_in_as: str | None = ""
    for path, ops in sorted(doc["paths"].items()):
        op = ops.get("get")
        if op is None or path == "/api/openapi.json":
            continue
        role = _role_for(op.get("x-onedoor-permission"))
        if role != signed_in_as:
            app_client.session.cookie_jar.clear()
            if role is not None:
                await sign_in(app_client, DEMO_USERS[role])
            signed_in_as = role
        url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "1"), path)
        resp = await app_client.get(url)
        schema = _schema(doc, op, resp.status)
        if resp.content_type != "application/json":
            documented = next(
                iter(op["responses"].get(str(resp.status), {}).get("content", {})), ""
            )
            assert resp.status >= 400 or resp.content_type == documented, (path, resp.content_type)
            continue
        assert schema is not None, f"GET {path} answers JSON {resp.status} without a schema"
        body = await resp.json()
        try:
            jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as e:
            raise AssertionError(
                f"GET {path} ({resp.status}): {e.message} at {list(e.path)}"
            ) from e
        if resp.status < 300:
            validated_ok.append(path)
    for path in (
        "/api/cases",
        "/api/cases/{case_id}",
        "/api/cases/{case_id}/timeline",
        "/api/cases/{case_id}/deadlines",
        "/api/cases/{case_id}/sessions",
        "/api/org/sites",
        "/api/me",
    ):
        assert path in validated_ok, f"GET {path} was not validated with a success"


async def test_created_routes_document_201(app_client: Client) -> None:
    doc = await (await app_client.get("/api/openapi.json")).json()
    for path in ("/api/sessions", "/api/sessions/{session_id}/tokens", "/api/cases"):
        assert "201" in doc["paths"][path]["post"]["responses"], path
    qr = doc["paths"]["/api/rooms/{room_id}/qr.png"]["get"]
    assert any(p["name"] == "token" and p["in"] == "query" for p in qr["parameters"])
    assert set(doc["components"]["securitySchemes"]) == {"session", "bearer"}
    assert doc["paths"]["/api/cases"]["get"]["security"] == [{"session": []}, {"bearer": []}]


async def test_every_reference_in_the_document_resolves(app_client: Client) -> None:
    """A dangling `$ref` (ErrorBody's FieldError once was) makes clients and schemathesis skip
    the parts that use it: every one must name a schema in components."""
    doc = await (await app_client.get("/api/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    refs.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    assert refs, "no references at all: the walk is broken"
    dangling = {r for r in refs if r.removeprefix("#/components/schemas/") not in schemas}
    assert not dangling, sorted(dangling)
    assert all("$defs" not in schema for schema in schemas.values())
