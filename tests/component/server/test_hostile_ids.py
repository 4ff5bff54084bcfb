"""Hostile ids against every route, generated from the app's route table (issue #21).

Every path parameter of every route gets 0, -1, 2^31 (beyond PostgreSQL's `integer`), 2^63
(beyond SQLite's), 10^30, non-digits, a NUL and a non-ASCII digit; every GET route gets the id
query parameters the views read. Each request is made by a role the permission table lets
through, so it reaches the view's parsing. No answer may be a 5xx and nothing may log a
traceback, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from server.auth.permissions import Action, allowed
from server.http.auth import ACTION_ATTR
from server.org.models import Role
from tests.component.server.test_access_matrix import _concrete, _routes
from tests.conftest import DEMO_USERS, make_settings, signed_in

Client = TestClient[Any, Any]

HOSTILE_PATH_VALUES = [
    "0",
    "-1",
    str(2**31),
    str(2**63),
    str(10**30),
    "abc",
    "1%00",  # a NUL once decoded
    "%C2%B2",  # '²': str.isdigit() says yes, int() says no
]
#: Query parameters read as ids by some view (REST and pages).
ID_QUERY_NAMES = [
    "site_id",
    "department_id",
    "before_id",
    "before",
    "site",
    "dept",
    "room_site",
    "owner",
]
HOSTILE_QUERY_VALUES = [str(2**31), str(2**63), str(10**30)]


def _first_allowed_role(action: Action | None) -> str | None:
    """A role that gets past the route's permission check (public routes: any)."""
    for role in sorted(DEMO_USERS):
        if action is None or allowed([Role(role)], action):
            return role
    return None


def _url(path: str, pattern: str | None, name: str | None = None, value: str = "") -> str:
    """The route's URL with `value` (already percent-encoded) for parameter `name` and a
    matching value for the others."""
    placeholder = "HOSTILEVALUE"
    marked = re.sub(r"\{(\w+)[^}]*\}", lambda m: placeholder if m.group(1) == name else m[0], path)
    return _concrete(marked, pattern).replace(placeholder, value)


def _by_role(client: Client) -> dict[str, list[tuple[str, str, str | None]]]:
    """The routes grouped by the role that will call them: (method, path, pattern)."""
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for method, path, handler, pattern in _routes(client.app):
        role = _first_allowed_role(getattr(handler, ACTION_ATTR, None))
        if role is not None:
            out.setdefault(role, []).append((method, path, pattern))
    return out


async def _as(client: Client, role: str) -> str:
    client.session.cookie_jar.clear()
    return await signed_in(client, role)


@pytest.fixture
async def hostile_client(tmp_path: Path, demo_db_url: str) -> AsyncIterator[Client]:
    from server.app import create_app

    app = create_app(make_settings(tmp_path, demo_db_url, login_rate_per_min=1000))
    async with TestClient(TestServer(app)) as client:
        yield client


async def _request(client: Client, token: str, method: str, url: str) -> int:
    headers = {"X-CSRF-Token": token, "Accept": "application/json"}
    target = URL(str(client.make_url("/")).rstrip("/") + url, encoded=True)
    async with client.session.request(
        method,
        target,
        json={} if method != "GET" else None,
        headers=headers,
        allow_redirects=False,
    ) as resp:
        await resp.read()
        return resp.status


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.exc_info is not None or r.levelno >= logging.ERROR
    ]


@pytest.mark.timeout(300)
async def test_hostile_path_ids_on_every_route(
    hostile_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    tried, failures = 0, []
    for role, routes in _by_role(hostile_client).items():
        token = await _as(hostile_client, role)
        for method, path, pattern in routes:
            for name in re.findall(r"\{(\w+)", path):
                for value in HOSTILE_PATH_VALUES:
                    url = _url(path, pattern, name, value)
                    status = await _request(hostile_client, token, method, url)
                    tried += 1
                    if status >= 500:
                        failures.append(f"{method} {url} as {role}: {status}")
    assert tried > 300, "the route table has id parameters to try"
    assert failures == [], failures
    assert _tracebacks(caplog) == []


@pytest.mark.timeout(300)
async def test_hostile_query_ids_on_every_get_route(
    hostile_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    tried, failures = 0, []
    for role, routes in _by_role(hostile_client).items():
        token = await _as(hostile_client, role)
        for method, path, pattern in routes:
            if method != "GET" or "{" in path:
                continue
            for name in ID_QUERY_NAMES:
                for value in HOSTILE_QUERY_VALUES:
                    query_value = f"staff:{value}" if name == "owner" else value
                    url = f"{_url(path, pattern)}?{name}={query_value}"
                    if name == "room_site":  # the booking form searches only with a dept
                        url += "&dept=1"
                    status = await _request(hostile_client, token, method, url)
                    tried += 1
                    if status >= 500:
                        failures.append(f"{method} {url} as {role}: {status}")
    assert tried > 300
    assert failures == [], failures
    assert _tracebacks(caplog) == []


async def test_hostile_ids_in_request_bodies_are_rejected_not_crashed(
    hostile_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Ids inside JSON bodies are checked against the column's range like path ids (the long
    fuzz run found `site_id: 2**63` reaching SQLite through the intake and the provincial
    import): a 4xx for the request, one rejected record in an import, never a 5xx."""
    token = await _as(hostile_client, "window_officer")
    for huge in (2**31, 2**63, 10**30):
        for body in (
            {"channel": "window", "site_id": huge, "summary": "某公司拖欠工资三个月"},
            {
                "channel": "window",
                "site_id": 1,
                "summary": "检举某单位",
                "accused_department_id": huge,
            },
        ):
            resp = await hostile_client.post(
                "/api/cases", json=body, headers={"X-CSRF-Token": token}
            )
            assert resp.status == 422, (body, await resp.text())
    token = await _as(hostile_client, "centre_supervisor")
    resp = await hostile_client.post(
        "/api/cases/import",
        json={"cases": [{"provincial_no": "ZJ-1", "site_id": 2**63, "summary": "某公司拖欠工资"}]},
        headers={"X-CSRF-Token": token},
    )
    assert resp.status < 500, await resp.text()
    assert _tracebacks(caplog) == []


#: Times at the ends of Python's range: converting them to UTC or to the district's zone
#: overflows (the long fuzz run found the first reaching POST /api/scheduling/holds as a 500).
HOSTILE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2999-01-01T00:00:00Z"]
HOSTILE_DAYS = ["0001-01-01", "9999-12-31"]


def _role_for(client: Client, method: str, path: str) -> str:
    for m, p, handler, _ in _routes(client.app):
        if (m, p) == (method, path):
            role = _first_allowed_role(getattr(handler, ACTION_ATTR, None))
            assert role is not None
            return role
    raise AssertionError(f"no route {method} {path}")


@pytest.mark.timeout(300)
async def test_hostile_times_are_rejected_not_crashed(
    hostile_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Every datetime and date a request model or form reads is range-checked at the edge:
    a 4xx naming the field (422 for the REST API), never a 5xx or a traceback."""
    client = hostile_client
    token = await _as(client, _role_for(client, "POST", "/api/scheduling/holds"))
    for t in HOSTILE_TIMES:
        body = {"start": t, "end": t, "people": [{"staff_id": 1}], "kind": "mediation"}
        resp = await client.post(
            "/api/scheduling/holds", json=body, headers={"X-CSRF-Token": token}
        )
        assert resp.status == 422, (t, await resp.text())
        assert "start" in await resp.text()
    token = await _as(client, _role_for(client, "GET", "/api/cases"))
    for t in HOSTILE_TIMES:
        resp = await client.get("/api/cases", params={"registered_from": t})
        assert resp.status == 422, (t, await resp.text())
    for day in HOSTILE_DAYS:
        resp = await client.get("/cases", params={"date_from": day, "assess_from": day})
        assert resp.status < 500, (day, await resp.text())
    token = await _as(client, "court_liaison")
    for t in HOSTILE_TIMES:
        resp = await client.post(
            "/api/agreements/1/judicial",
            json={"requested_at": t},
            headers={"X-CSRF-Token": token},
        )
        assert resp.status in (404, 422), (t, await resp.text())
    assert _tracebacks(caplog) == []
