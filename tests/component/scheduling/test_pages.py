"""The zh-CN scheduling pages render: my sessions, week calendar, site day, booking form with
slots, and the session record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.http import keys
from tests.component.scheduling.conftest import demo_ids
from tests.conftest import make_settings, signed_in

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[Client]:
    from server.app import create_app
    from web.views import scheduling as pages

    app = create_app(make_settings(tmp_path, demo_sqlite_url))
    if not any(r.resource and r.resource.canonical == "/scheduling" for r in app.router.routes()):
        pages.setup(app)  # until create_app wires the pages itself
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_pages_render(client: Client) -> None:
    token = await signed_in(client, "mediator")
    async with client.app[keys.db]() as session:
        ids = await demo_ids(session)
    resp = await client.get("/scheduling")
    assert resp.status == 200 and "我的预约" in await resp.text()
    resp = await client.get(
        f"/scheduling/book?dept={ids.mediation_dept}&room_site={ids.street}&duration=60"
    )
    html = await resp.text()
    assert resp.status == 200 and "可选时段" in html
    import re

    form = dict(re.findall(r'name="(start|end|staff_id|resource_ids)" value="([^"]*)"', html)[:4])
    resp = await client.post(
        "/scheduling/book",
        data={**form, "title": "页面预约", "guest_name": "王某", "_csrf": token},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    record = await client.get(resp.headers["Location"])
    text = await record.text()
    assert record.status == 200 and "页面预约" in text and "参会人员与出席" in text
    resp = await client.get(f"/scheduling/calendar?owner=staff:{form['staff_id']}")
    assert resp.status == 200 and "周日程" in await resp.text()
    resp = await client.get(f"/scheduling/sites/{ids.street}")
    assert resp.status == 200 and "调解室" in await resp.text()
    # The same slot again: the form is re-rendered with a clear message, nothing booked.
    again = await client.post(
        "/scheduling/book", data={**form, "title": "重复", "_csrf": token}, allow_redirects=False
    )
    assert again.status == 422 and "时间冲突" in await again.text()
