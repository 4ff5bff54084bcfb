"""/admin/org (issue #15 item 6): the system administrator adds and renames sites and
departments and adds or takes out of use the rooms and windows that are booked; bad input is
said in Chinese next to the field and changes nothing; everyone else gets 403."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server.audit.models import AuditEntry
from server.http import keys
from server.org.models import Department, Resource, Site, SiteLevel
from tests.conftest import signed_in

Client = TestClient[Any, Any]


async def _post(client: Client, path: str, csrf: str, **data: str) -> Any:
    return await client.post(path, data={"_csrf": csrf, **data}, allow_redirects=False)


async def _count(client: Client, model: Any) -> int:
    async with client.app[keys.db]() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_sites_departments_and_rooms_are_kept_here(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    page = await app_client.get("/admin/org")
    html = await page.text()
    assert page.status == 200 and "站点" in html and "窗口与调解室" in html
    async with app_client.app[keys.db]() as s:
        street = await s.scalar(select(Site).where(Site.level == SiteLevel.street).limit(1))
        dept = await s.scalar(select(Department).limit(1))
    assert street is not None and dept is not None

    added = await _post(app_client, "/admin/org/sites", csrf, level="community",
                        parent_id=str(street.id), name="新建社区", admin_code="330105999001")  # fmt: skip
    assert added.status == 303, await added.text()
    async with app_client.app[keys.db]() as s:
        site = await s.scalar(select(Site).where(Site.admin_code == "330105999001"))
    assert site is not None and site.parent_id == street.id and site.level == "community"

    renamed = await _post(
        app_client, f"/admin/org/departments/{dept.id}", csrf, name="区信访局（新）"
    )
    assert renamed.status == 303
    room = await _post(app_client, "/admin/org/resources", csrf, type="mediation_room",
                       name="第九调解室", site_id=str(street.id), capacity="6")  # fmt: skip
    assert room.status == 303
    async with app_client.app[keys.db]() as s:
        res = await s.scalar(select(Resource).where(Resource.name == "第九调解室"))
        assert res is not None and res.active
        assert (await s.get(Department, dept.id)).name == "区信访局（新）"
    off = await _post(app_client, f"/admin/org/resources/{res.id}/active", csrf, active="0")
    assert off.status == 303
    async with app_client.app[keys.db]() as s:
        assert not (await s.get(Resource, res.id)).active
        actions = set(
            await s.scalars(select(AuditEntry.action).where(AuditEntry.action.like("org.%")))
        )
    assert actions >= {"org.site_add", "org.department_update", "org.resource_add",
                       "org.resource_active"}  # fmt: skip


async def test_bad_input_is_said_next_to_the_field_and_changes_nothing(
    app_client: Client,
) -> None:
    csrf = await signed_in(app_client, "sys_admin")
    async with app_client.app[keys.db]() as s:
        district = await s.scalar(select(Site).where(Site.level == SiteLevel.district))
        taken = await s.scalar(select(Site.admin_code).where(Site.level == SiteLevel.street))
    assert district is not None and taken is not None
    sites = await _count(app_client, Site)
    # a community directly under the district: the wrong parent
    wrong = await _post(app_client, "/admin/org/sites", csrf, level="community",
                        parent_id=str(district.id), name="错挂社区", admin_code="330105999002")  # fmt: skip
    html = await wrong.text()
    assert wrong.status == 422 and 'id="site-add-parent_id-err"' in html
    assert "请选择上级：街道属于区中心，社区属于街道" in html
    assert 'value="错挂社区"' in html  # what was typed stays
    dup = await _post(app_client, "/admin/org/sites", csrf, level="street",
                      parent_id=str(district.id), name="重复街道", admin_code=taken)  # fmt: skip
    assert dup.status == 409 and "该代码已被使用" in await dup.text()
    bad = await _post(app_client, "/admin/org/departments", csrf, code="Bad Code!", name="")
    html = await bad.text()
    assert bad.status == 422 and 'id="department-add-code-err"' in html
    assert 'id="department-add-name-err"' in html
    assert await _count(app_client, Site) == sites


@pytest.mark.parametrize("role", ["sec_admin", "audit_admin", "centre_supervisor"])
async def test_others_get_403_and_no_tile(app_client: Client, role: str) -> None:
    csrf = await signed_in(app_client, role)
    assert 'href="/admin/org"' not in await (await app_client.get("/")).text()
    assert (await app_client.get("/admin/org")).status == 403
    resp = await _post(app_client, "/admin/org/departments", csrf, code="xx", name="某部门")
    assert resp.status == 403


async def test_rooms_are_grouped_per_site_closed_unless_filtered_or_just_changed(
    app_client: Client,
) -> None:
    """The demo's ~100 windows, rooms and terminals: one collapsible section for the centre and
    one per street (its community points' with it), closed by default; a filter opens what
    matches and hides the rest; a change opens its group."""
    csrf = await signed_in(app_client, "sys_admin")
    async with app_client.app[keys.db]() as s:
        parent = {i: (p, lvl) for i, p, lvl in await s.execute(
            select(Site.id, Site.parent_id, Site.level))}  # fmt: skip
        sites_with_rooms = {
            parent[i][0] if parent[i][1] == SiteLevel.community else i
            for i in await s.scalars(select(Resource.site_id).distinct())
        }
        room = await s.scalar(
            select(Resource).where(Resource.name.like("%调解室%")).order_by(Resource.id).limit(1)
        )
    total = await _count(app_client, Resource)
    assert room is not None and len(sites_with_rooms) > 5
    group = (
        parent[room.site_id][0]
        if parent[room.site_id][1] == SiteLevel.community
        else (room.site_id)
    )
    html = await (await app_client.get("/admin/org")).text()
    groups = re.findall(r'<details class="org-group" id="resources-site-(\d+)"( open)?>', html)
    assert {int(g) for g, _ in groups} == sites_with_rooms
    assert not any(opened for _, opened in groups)  # all closed
    assert '<details class="org-group" id="site-list">' in html  # closed too
    assert html.count('action="/admin/org/resources/') == total  # every room is still there

    page = await app_client.get("/admin/org", params={"q": room.name})
    html = await page.text()
    assert page.status == 200 and 'id="filter-result"' in html
    groups = re.findall(r'<details class="org-group" id="resources-site-(\d+)"( open)?>', html)
    assert groups and all(opened for _, opened in groups)
    assert room.name in html and html.count('action="/admin/org/resources/') < total
    nothing = await (await app_client.get("/admin/org", params={"q": "没有这个名字"})).text()
    assert "没有符合条件的窗口或调解室" in nothing

    off = await _post(app_client, f"/admin/org/resources/{room.id}/active", csrf, active="0")
    assert off.headers["Location"].startswith(f"/admin/org?done=resource&open={room.site_id}")
    html = await (await app_client.get(off.headers["Location"])).text()
    assert f'id="resources-site-{group}" open>' in html and "已停用 1 个" in html
    # a failed rename opens the site list at the field
    async with app_client.app[keys.db]() as s:
        street = await s.scalar(select(Site).where(Site.level == SiteLevel.street).limit(1))
    assert street is not None
    bad = await _post(app_client, f"/admin/org/sites/{street.id}", csrf, name="")
    assert bad.status == 422 and '<details class="org-group" id="site-list" open>' in (
        await bad.text()
    )
