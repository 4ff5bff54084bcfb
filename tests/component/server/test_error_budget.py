"""The error budget (issue #21): a client whose requests keep failing is slowed and refused;
other clients, successes and liveness are not touched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.http import keys
from server.kernel.ratelimit import InProcessRateLimiter
from tests.conftest import make_settings, signed_in

Client = TestClient[Any, Any]
BUDGET = 3
MISSING = f"/api/cases/{2**31 - 1}"


@pytest.fixture
async def budget_client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[Client]:
    settings = make_settings(
        tmp_path, demo_sqlite_url, error_budget_per_10s=BUDGET, error_tarpit_s=0
    )
    app = create_app(settings)
    app[keys.ratelimiter] = InProcessRateLimiter(clock=lambda: 1000.0)  # one window throughout
    async with TestClient(TestServer(app)) as c:
        yield c


async def _status(client: Client, path: str) -> tuple[int, str | None]:
    resp = await client.get(path, headers={"Accept": "application/json"})
    body = await resp.json() if resp.content_type == "application/json" else {}
    return resp.status, body.get("error")


async def test_a_prober_is_refused_after_its_budget_and_others_are_not(
    budget_client: Client,
) -> None:
    app_client = budget_client
    await signed_in(app_client, "centre_supervisor")
    assert await _status(app_client, "/api/me") == (200, None)  # successes do not count
    for _ in range(BUDGET):
        assert (await _status(app_client, MISSING))[0] == 404
    # over budget: every request of this client is refused, a valid one too
    assert await _status(app_client, MISSING) == (429, "too_many_errors")
    assert await _status(app_client, "/api/me") == (429, "too_many_errors")
    assert (await _status(app_client, "/healthz"))[0] == 200  # liveness is exempt

    # another officer from the same address keeps working: the budget is per staff member
    app_client.session.cookie_jar.clear()
    await signed_in(app_client, "window_officer")
    assert await _status(app_client, "/api/me") == (200, None)


async def test_an_anonymous_prober_is_counted_by_address(budget_client: Client) -> None:
    app_client = budget_client
    for _ in range(BUDGET):
        assert (await _status(app_client, f"/api/public/reports/{2**31 - 1}"))[0] == 404
    assert await _status(app_client, "/api/public/reports/1") == (429, "too_many_errors")


async def test_a_budget_of_zero_turns_it_off(app_client: Client) -> None:
    for _ in range(BUDGET * 3):
        assert (await _status(app_client, f"/api/public/reports/{2**31 - 1}"))[0] == 404
