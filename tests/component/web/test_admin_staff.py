"""Staff accounts for the system administrator (/admin/staff): create with a typed or a
generated initial password (shown once), refused at the field with typed values kept, search
and paging, edit, disable and enable (a disabled account cannot sign in), audited; roles are
not granted here (the security administrator's `grant_role` checks 三员分立); other roles,
sec_admin and audit_admin included, get 403."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.service import RoleCombinationRefused, RoleNotGrantable, grant_role
from server.http import keys
from server.org.models import Role
from server.org.service import list_accounts, sites
from tests.conftest import sign_in, signed_in

Client = TestClient[Any, Any]


async def _post(client: Client, path: str, csrf: str, **form: str) -> aiohttp.ClientResponse:
    return await client.post(path, data={"_csrf": csrf, **form}, allow_redirects=False)


async def _site(client: Client) -> str:
    async with client.app[keys.db].begin() as session:
        return str((await sites(session, community=False))[0].id)


async def test_create_refuse_search_edit_disable(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    site = await _site(app_client)
    resp = await _post(
        app_client, "/admin/staff", csrf, username="a b", display_name="新人", site_id=site
    )
    html = await resp.text()
    assert resp.status == 422 and 'id="err-username"' in html and 'value="新人"' in html
    resp = await _post(
        app_client,
        "/admin/staff",
        csrf,
        username="clerk99",
        display_name="新人",
        site_id=site,
        password="short",
    )
    assert resp.status == 422 and 'id="err-password"' in await resp.text()
    resp = await _post(
        app_client,
        "/admin/staff",
        csrf,
        username="clerk99",
        display_name="新人",
        site_id=site,
        generate="on",
    )
    html = await resp.text()
    assert resp.status == 201, html
    m = re.search(r'<code id="initial-password">(\w+)</code>', html)
    assert m is not None
    password = m.group(1)
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, "clerk99", password)  # the shown password works
    app_client.session.cookie_jar.clear()
    csrf = await signed_in(app_client, "sys_admin")
    resp = await _post(
        app_client,
        "/admin/staff",
        csrf,
        username="clerk99",
        display_name="x",
        site_id=site,
        generate="on",
    )
    assert resp.status == 422 and "已被使用" in await resp.text()
    listing = await (await app_client.get("/admin/staff?q=clerk9")).text()
    assert "clerk99" in listing and password not in listing and "未授予" in listing
    async with app_client.app[keys.db].begin() as session:
        found = await list_accounts(session, query="clerk99")
        everyone = await list_accounts(session, limit=5)
    assert found.total == 1 and everyone.total > 5 and len(everyone.items) == 5
    staff_id = found.items[0].id
    resp = await _post(app_client, f"/admin/staff/{staff_id}", csrf, display_name="", site_id=site)
    assert resp.status == 422 and 'id="err-display_name"' in await resp.text()
    resp = await _post(
        app_client, f"/admin/staff/{staff_id}", csrf, display_name="改名", site_id=site
    )
    assert resp.status == 303
    resp = await _post(app_client, f"/admin/staff/{staff_id}/active", csrf, active="0")
    assert resp.status == 303
    app_client.session.cookie_jar.clear()
    with pytest.raises(AssertionError):
        await sign_in(app_client, "clerk99", password)
    async with app_client.app[keys.db].begin() as session:
        actions = list(
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_id == str(staff_id), AuditEntry.action.like("staff.%"))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == ["staff.create", "staff.update", "staff.disable"]


async def test_an_admin_cannot_disable_themselves(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    async with app_client.app[keys.db].begin() as session:
        me = (await list_accounts(session, query="sysadmin")).items[0]
    resp = await _post(app_client, f"/admin/staff/{me.id}/active", csrf, active="0")
    assert resp.status == 409 and 'id="err-active"' in await resp.text()


async def test_a_new_account_gets_its_roles_from_the_security_admin_only(
    app_client: Client,
) -> None:
    """Accounts are made here, roles granted by sec_admin's `grant_role` (三员分立)."""
    async with app_client.app[keys.db].begin() as session:
        me = (await list_accounts(session, query="sysadmin")).items[0]
        with pytest.raises(RoleCombinationRefused):
            await grant_role(session, staff_id=me.id, role=Role.mediator, actor="staff:0")
        clerk = (await list_accounts(session, query="window01")).items[0]
        with pytest.raises(RoleNotGrantable):
            await grant_role(session, staff_id=clerk.id, role=Role.audit_admin, actor="staff:0")
        after = await grant_role(session, staff_id=clerk.id, role=Role.mediator, actor="staff:0")
        assert Role.mediator in after.roles


@pytest.mark.parametrize("role", ["sec_admin", "audit_admin", "centre_supervisor"])
async def test_other_roles_get_403_and_no_tile(app_client: Client, role: str) -> None:
    csrf = await signed_in(app_client, role)
    assert 'href="/admin/staff"' not in await (await app_client.get("/")).text()
    assert (await app_client.get("/admin/staff")).status == 403
    resp = await _post(
        app_client,
        "/admin/staff",
        csrf,
        username="x123",
        display_name="x",
        site_id="1",
        generate="on",
    )
    assert resp.status == 403
    assert (await _post(app_client, "/admin/staff/1/active", csrf, active="0")).status == 403
