"""The case pages render (list, dashboard with inline SVG, public evaluation form)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_settings, signed_in


@pytest.fixture
async def client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    from server.app import create_app
    from web.views import cases as case_pages

    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    if "cases" not in app.router.named_resources():  # until the lead wires it in web.setup
        case_pages.setup(app)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_list_and_dashboard_pages(client: TestClient[Any, Any]) -> None:
    await signed_in(client, "centre_supervisor")
    resp = await client.get("/cases")
    assert resp.status == 200 and 'id="case-list"' in await resp.text()
    resp = await client.get("/cases/dashboard?by=staff")
    assert resp.status == 200 and "<svg" in await resp.text()


async def test_evaluation_page_rejects_forged_links(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/evaluate/1.forged.0000")
    assert resp.status == 404 and "评价链接无效" in await resp.text()
