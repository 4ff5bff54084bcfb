"""The case pages render (list, dashboard with inline SVG, public evaluation form)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_settings, sign_in, signed_in


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
    assert resp.status == 200 and 'id="dashboard-empty"' in await resp.text()  # no data yet


async def test_evaluation_page_rejects_forged_links(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/evaluate/1.forged.0000")
    assert resp.status == 404 and "评价链接无效" in await resp.text()


async def test_agreement_page_signs_and_shows_drawn_signatures(
    client: TestClient[Any, Any],
) -> None:
    from server.auth import csrf

    token = await signed_in(client, "window_officer")
    me = await (await client.get("/api/me")).json()
    resp = await client.post(
        "/api/cases",
        json={"channel": "window", "site_id": me["site_id"], "summary": "楼上漏水损坏吊顶"},
        headers={csrf.HEADER: token},
    )
    case_id = (await resp.json())["case"]["id"]

    token = await sign_in(client, "mediator02")
    draft = {
        "parties": [{"name": "赵一", "role": "applicant"}, {"name": "钱二", "role": "respondent"}],
        "facts": "楼上住户卫生间漏水，损坏楼下吊顶。",
        "terms": [{"term": "赔偿维修费3000元", "how": "银行转账", "by": "2026-04-01"}],
    }
    resp = await client.post(
        f"/api/cases/{case_id}/agreements", json=draft, headers={csrf.HEADER: token}
    )
    assert resp.status == 201, await resp.text()
    agreement_id = (await resp.json())["id"]

    token = await signed_in(client, "mediator")  # another mediator, outside the case
    assert (await client.get(f"/agreements/{agreement_id}")).status == 404
    assert (await client.get(f"/api/agreements/{agreement_id}")).status == 404

    token = await sign_in(client, "mediator02")  # the agreement's mediator
    page = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert 'id="sig-pad"' in page and 'value="party:0"' in page and 'value="mediator"' in page
    sign = f"/api/agreements/{agreement_id}/signatures"
    bad = await client.post(
        sign,
        json={
            "signer": "party:0",
            "signer_name": "赵一",
            "method": "drawn",
            "data": "M1 1 C2 2",
            "identification": "face",
        },
        headers={csrf.HEADER: token},
    )
    assert bad.status == 422 and (await bad.json())["error"] == "invalid_signature"
    ok = await client.post(
        sign,
        json={
            "signer": "party:0",
            "signer_name": "赵一",
            "method": "drawn",
            "data": "M10 10 L40 30 L80 12",
            "identification": "face",
        },
        headers={csrf.HEADER: token},
    )
    assert ok.status == 200, await ok.text()
    page = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert '<path d="M10 10 L40 30 L80 12"' in page and "赵一" in page
    assert 'value="party:0"' not in page  # signed: no longer offered

    await signed_in(client, "window_officer")  # may see the case: may read its agreement
    page = await (await client.get(f"/agreements/{agreement_id}")).text()
    assert 'data-signer="party:0"' in page and 'id="sign-form"' not in page
    case_page = await (await client.get(f"/cases/{case_id}")).text()
    assert f'href="/agreements/{agreement_id}"' in case_page
