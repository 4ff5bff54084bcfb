"""Deadline policies on /admin/deadlines: the system administrator edits the figures (validated
at the field, typed values kept, audited with before and after); other roles get 403."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.cases.deadline_policies import list_policies, update_policy
from server.cases.models import MatterType
from server.http import keys
from server.kernel.errors import InvalidInput
from tests.conftest import signed_in

Client = TestClient[Any, Any]


async def _post(client: Client, path: str, csrf: str, **form: str) -> aiohttp.ClientResponse:
    return await client.post(path, data={"_csrf": csrf, **form}, allow_redirects=False)


async def test_edit_a_policy_with_validation_and_audit(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    page = await (await app_client.get("/admin/deadlines")).text()
    assert 'id="policy-acceptance"' in page and "拖欠工资" in page
    good = {"limit_days": "15", "day_mode": "working", "extension_max_days": "0"}
    resp = await _post(app_client, "/admin/deadlines/acceptance", csrf, **good, yellow_days="20")
    html = await resp.text()
    assert resp.status == 422 and 'id="err-acceptance-yellow_days"' in html
    assert 'value="20"' in html  # the typed value is kept
    resp = await _post(
        app_client,
        "/admin/deadlines/acceptance",
        csrf,
        **{**good, "limit_days": "abc"},
        yellow_days="3",
    )
    assert resp.status == 422 and 'id="err-acceptance-limit_days"' in await resp.text()
    resp = await _post(app_client, "/admin/deadlines/acceptance", csrf, **good, yellow_days="2")
    assert resp.status == 303
    async with app_client.app[keys.db].begin() as session:
        policy = {p.kind: p for p in await list_policies(session)}["acceptance"]
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "deadline_policy.update")
        )
    assert (policy.day_mode, policy.yellow_days) == ("working", 2)
    assert entry is not None and entry.detail["changed"]["yellow_days"][1] == 2


async def test_the_service_refuses_bad_figures(app_client: Client) -> None:
    async with app_client.app[keys.db].begin() as session:
        with pytest.raises(InvalidInput) as e:
            await update_policy(
                session,
                kind="acceptance",
                limit_days=15,
                day_mode="lunar",
                yellow_days=3,
                extension_max_days=0,
                actor="staff:0",
            )
    assert e.value.details["field"] == "day_mode"


@pytest.mark.parametrize("role", ["sec_admin", "audit_admin", "dept_leader"])
async def test_other_roles_get_403(app_client: Client, role: str) -> None:
    csrf = await signed_in(app_client, role)
    assert 'href="/admin/deadlines"' not in await (await app_client.get("/")).text()
    assert (await app_client.get("/admin/deadlines")).status == 403
    resp = await _post(
        app_client,
        "/admin/deadlines/acceptance",
        csrf,
        limit_days="1",
        day_mode="calendar",
        yellow_days="0",
        extension_max_days="0",
    )
    assert resp.status == 403


async def test_a_matter_type_is_renamed_given_its_own_limit_and_taken_out_of_intake(
    app_client: Any,
) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    async with app_client.app[keys.db]() as s:
        code = await s.scalar(select(MatterType.code).order_by(MatterType.id).limit(1))
    bad = await app_client.post(
        f"/admin/matter-types/{code}",
        data={"_csrf": csrf, "name": "噪声扰民（改）", "handling_days": "abc", "active": "on"},
    )
    html = await bad.text()
    assert bad.status == 422 and f'id="matter-{code}-days-err"' in html
    assert 'value="噪声扰民（改）"' in html  # what was typed stays
    ok = await app_client.post(
        f"/admin/matter-types/{code}",
        data={"_csrf": csrf, "name": "噪声扰民（改）", "handling_days": "30"},
        allow_redirects=False,
    )
    assert ok.status == 303
    async with app_client.app[keys.db]() as s:
        row = await s.scalar(select(MatterType).where(MatterType.code == code))
    assert row is not None and row.name == "噪声扰民（改）" and not row.active
    assert row.deadline_days.get("handling") == 30
    await signed_in(app_client, "centre_supervisor")
    refused = await app_client.post(
        f"/admin/matter-types/{code}", data={"_csrf": csrf, "name": "x"}
    )
    assert refused.status == 403
