"""Every role against every route, generated from the one permission table.

Each view declares what it needs (`@protected(Action.X)`) or why it is open (`@public(...)`);
a route with neither fails this test. A role the table does not allow must get 403
`permission_denied`; a role it allows must get past the check (any status but 401/403).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.auth.permissions import allowed
from server.http.auth import ACTION_ATTR, PUBLIC_ATTR
from server.org.models import Role
from tests.conftest import DEMO_USERS, signed_in

Client = TestClient[Any, Any]


def _routes(app: web.Application) -> list[tuple[str, str, Any, str | None]]:
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        if "directory" in info:  # static files
            continue
        path = info.get("path") or info.get("formatter", "")
        pattern = info.get("pattern")
        out.append((route.method, path, route.handler, pattern.pattern if pattern else None))
    return out


def _concrete(path: str, pattern: str | None) -> str:
    """A URL that matches the route: numbers for ids, the first choice of `a|b` parameters."""
    values: dict[str, str] = {}
    for name, regex in re.findall(r"\(\?P<(\w+)>([^)]*)\)", pattern or ""):
        if re.fullmatch(r"[\w|]+", regex):
            values[name] = regex.split("|")[0]
        else:  # an id, or a name such as an action's ([a-z_]+)
            values[name] = next(v for v in ("1", "accept") if re.fullmatch(regex, v))
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: values.get(m.group(1), "1"), path)


async def test_every_route_declares_its_permission(app_client: Client) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path, handler, pattern in _routes(app_client.app)
        if not hasattr(handler, ACTION_ATTR) and not hasattr(handler, PUBLIC_ATTR)
    ]
    assert undeclared == [], "routes without @protected or @public"


@pytest.mark.parametrize("role", sorted(DEMO_USERS))
async def test_role_against_every_protected_route(app_client: Client, role: str) -> None:
    token = await signed_in(app_client, role)
    failures = []
    for method, path, handler, pattern in _routes(app_client.app):
        action = getattr(handler, ACTION_ATTR, None)
        if action is None:
            continue
        url = _concrete(path, pattern)
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        if method == "GET":
            resp = await app_client.get(url, headers=headers, allow_redirects=False)
        else:
            resp = await app_client.request(
                method, url, json={}, headers=headers, allow_redirects=False
            )
        expected_allowed = allowed([Role(role)], action)
        if expected_allowed and resp.status in (401, 403):
            failures.append(f"{method} {path}: allowed by the table but got {resp.status}")
        if not expected_allowed:
            body = await resp.json() if resp.content_type == "application/json" else {}
            if resp.status != 403 or body.get("error") != "permission_denied":
                failures.append(f"{method} {path}: denied by the table but got {resp.status}")
    assert failures == []


async def test_anonymous_gets_401_on_every_protected_route(app_client: Client) -> None:
    failures = []
    for method, path, handler, pattern in _routes(app_client.app):
        if getattr(handler, ACTION_ATTR, None) is None:
            continue
        resp = await app_client.request(
            method,
            _concrete(path, pattern),
            json={},
            allow_redirects=False,
            headers={"Accept": "application/json"},
        )
        if resp.status not in (401, 403):  # 403: CSRF refuses an anonymous POST first
            failures.append(f"{method} {path}: {resp.status}")
    assert failures == []
