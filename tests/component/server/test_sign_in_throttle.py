"""Sign-in throttling over HTTP (issue #21): no username enumeration, no targeted lockout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.app import create_app, signin_policy
from server.audit.models import AuditEntry
from server.http import keys
from server.kernel.ratelimit import InProcessRateLimiter
from server.kernel.throttle import InProcessSignInThrottle
from tests.conftest import DEMO_PASSWORD, csrf_token, make_settings, signed_in

Client = TestClient[Any, Any]
FIXED_TIME = 1000.0  # one rate-limit window and no delay ever runs out during a test


@pytest.fixture
async def client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[Client]:
    settings = make_settings(tmp_path, demo_sqlite_url, login_max_failures=5)
    app = create_app(settings)
    app[keys.ratelimiter] = InProcessRateLimiter(clock=lambda: FIXED_TIME)
    app[keys.signin_throttle] = InProcessSignInThrottle(
        policy=signin_policy(settings), clock=lambda: FIXED_TIME
    )
    async with TestClient(TestServer(app)) as c:
        yield c


async def _attempt(client: Client, username: str, password: str) -> tuple[int, str]:
    token = await csrf_token(client)
    resp = await client.post(
        "/login",
        data={"username": username, "password": password, "_csrf": token},
        allow_redirects=False,
    )
    body = await resp.text()
    # The page echoes the typed name and carries the CSRF token: compare the rest.
    return resp.status, body.replace(username, "NAME").replace(token, "TOKEN")


async def test_known_and_unknown_names_get_the_same_answers(client: Client) -> None:
    known = [await _attempt(client, "window01", "wrong-password") for _ in range(7)]
    unknown = [await _attempt(client, "nobody-here", "wrong-password") for _ in range(7)]
    assert [s for s, _ in known] == [401] * 5 + [429] * 2
    assert known == unknown
    assert "登录失败次数过多" in known[-1][1]


async def test_throttled_pair_needs_sec_admin_or_time_not_the_account(client: Client) -> None:
    for _ in range(5):
        await _attempt(client, "window01", "wrong-password")
    status, _body = await _attempt(client, "window01", DEMO_PASSWORD)
    assert status == 429  # the right password is not even checked while the pair waits
    # Another member of staff signs in from the same address (no global lock).
    sec_token = await signed_in(client, "sec_admin")
    resp = await client.post(
        "/api/auth/unlock", json={"username": "window01"}, headers={"X-CSRF-Token": sec_token}
    )
    assert resp.status == 200
    assert await resp.json() == {"username": "window01", "cleared_pairs": 1}
    client.session.cookie_jar.clear()
    status, _ = await _attempt(client, "window01", DEMO_PASSWORD)
    assert status == 303
    async with client.app[keys.db]() as session:
        actions = set((await session.scalars(select(AuditEntry.action))).all())
    assert {"auth.sign_in_throttled", "auth.unlocked"} <= actions


async def test_only_sec_admin_may_unlock(client: Client) -> None:
    token = await signed_in(client, "sys_admin")
    resp = await client.post(
        "/api/auth/unlock", json={"username": "window01"}, headers={"X-CSRF-Token": token}
    )
    assert resp.status == 403


async def test_successful_sign_ins_do_not_count_towards_the_address_limit(
    tmp_path: Path, demo_sqlite_url: str
) -> None:
    app = create_app(make_settings(tmp_path, demo_sqlite_url, login_rate_per_min=3))
    app[keys.ratelimiter] = InProcessRateLimiter(clock=lambda: FIXED_TIME)
    async with TestClient(TestServer(app)) as client:
        for _ in range(6):  # a busy window PC: more sign-ins than the per-minute limit
            client.session.cookie_jar.clear()
            status, _ = await _attempt(client, "window01", DEMO_PASSWORD)
            assert status == 303
        failures = [(await _attempt(client, f"user{i}", "wrong"))[0] for i in range(4)]
    assert failures == [401] * 3 + [429]
