"""A password an administrator set (the initial password of a new account, or a reset one) must
be changed at the first sign-in: sign-in leads to /account/password; until the change every
other page redirects there and every other request (API included) answers 403
`password_change_required`; the change checks the current password, the policy and refuses the
same password; everything is audited. Demo accounts are not forced."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.http import keys
from server.org.service import sites
from tests.conftest import DEMO_USERS, csrf_token, sign_in, signed_in

Client = TestClient[Any, Any]
NEW_PASSWORD = "Neues2passwort"


async def _post(client: Client, path: str, csrf: str, **form: str) -> aiohttp.ClientResponse:
    return await client.post(path, data={"_csrf": csrf, **form}, allow_redirects=False)


async def _new_account(client: Client, username: str) -> str:
    """Created by the system administrator with a generated password; returns it."""
    csrf = await signed_in(client, "sys_admin")
    async with client.app[keys.db].begin() as session:
        site = str((await sites(session, community=False))[0].id)
    resp = await _post(
        client, "/admin/staff", csrf, username=username, display_name="新同事", site_id=site,
        generate="on",
    )  # fmt: skip
    html = await resp.text()
    assert resp.status == 201, html
    m = re.search(r'<code id="initial-password">(\w+)</code>', html)
    assert m is not None
    client.session.cookie_jar.clear()
    return m.group(1)


async def _actions(client: Client, *codes: str) -> list[AuditEntry]:
    async with client.app[keys.db].begin() as session:
        rows = await session.scalars(select(AuditEntry).where(AuditEntry.action.in_(codes)))
        return list(rows)


async def test_a_new_account_must_change_its_password_before_anything_else(
    app_client: Client,
) -> None:
    initial = await _new_account(app_client, "clerk77")
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/login",
        data={"username": "clerk77", "password": initial, "_csrf": token, "next": "/cases"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] in (
        "/account/password?next=%2Fcases",
        "/account/password?next=/cases",
    )

    # every other page redirects, the API and any other request answers 403 with the code
    for path in ("/", "/cases", "/admin/staff", "/account/tokens"):
        resp = await app_client.get(path, allow_redirects=False)
        assert (resp.status, resp.headers.get("Location")) == (303, "/account/password"), path
    resp = await app_client.get("/api/cases")
    assert resp.status == 403 and (await resp.json())["error"] == "password_change_required"
    resp = await _post(app_client, "/account/tokens", token, name="x")
    assert resp.status == 403 and "请先修改初始密码" in await resp.text()
    page = await app_client.get("/account/password")
    html = await page.text()
    assert page.status == 200 and 'id="password-forced"' in html

    # refused: wrong current password, policy, the same password, a mistyped confirmation
    for form, field in [
        ({"current_password": "wrong", "new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": initial, "new_password": "short"}, "new_password"),
        ({"current_password": initial, "new_password": initial}, "new_password"),
    ]:
        form["confirm"] = form["new_password"]
        resp = await _post(app_client, "/account/password", token, **form)
        html = await resp.text()
        assert resp.status == 422 and f'id="pw-{field}-err"' in html, (form, html)
    resp = await _post(
        app_client, "/account/password", token, current_password=initial,
        new_password=NEW_PASSWORD, confirm=NEW_PASSWORD + "x",
    )  # fmt: skip
    assert resp.status == 422 and 'id="pw-confirm-err"' in await resp.text()
    assert (await app_client.get("/", allow_redirects=False)).status == 303  # still forced

    resp = await _post(
        app_client, "/account/password", token, current_password=initial,
        new_password=NEW_PASSWORD, confirm=NEW_PASSWORD, next="/cases",
    )  # fmt: skip
    assert (resp.status, resp.headers["Location"]) == (303, "/cases")
    assert (await app_client.get("/", allow_redirects=False)).status == 200
    resp = await app_client.get("/api/cases")  # no role yet: refused, but for that reason
    assert (await resp.json())["error"] == "permission_denied"
    changed = await _actions(app_client, "auth.password_changed", "auth.password_change_failed")
    assert [(e.action, e.detail.get("forced")) for e in changed] == [
        ("auth.password_change_failed", None),
        ("auth.password_changed", True),
    ]

    # the old password no longer works, the new one does and is not forced
    app_client.session.cookie_jar.clear()
    token = await csrf_token(app_client)
    resp = await app_client.post(
        "/login", data={"username": "clerk77", "password": initial, "_csrf": token},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 401
    app_client.session.cookie_jar.clear()
    await sign_in(app_client, "clerk77", NEW_PASSWORD)
    assert (await app_client.get("/", allow_redirects=False)).status == 200


async def test_a_reset_password_is_forced_too_and_sign_out_still_works(app_client: Client) -> None:
    initial = await _new_account(app_client, "clerk78")
    await sign_in(app_client, "clerk78", initial)
    token = await csrf_token(app_client)
    await _post(
        app_client, "/account/password", token, current_password=initial,
        new_password=NEW_PASSWORD, confirm=NEW_PASSWORD,
    )  # fmt: skip
    app_client.session.cookie_jar.clear()

    csrf = await signed_in(app_client, "sys_admin")
    async with app_client.app[keys.db].begin() as session:
        from server.auth.service import staff_id_named

        staff_id = await staff_id_named(session, "clerk78")
        admin_id = await staff_id_named(session, DEMO_USERS["sys_admin"])
    resp = await _post(app_client, f"/admin/staff/{admin_id}/password", csrf)
    assert resp.status == 409  # not one's own
    resp = await _post(app_client, f"/admin/staff/{staff_id}/password", csrf)
    html = await resp.text()
    m = re.search(r'<code id="one-time-password">(\w+)</code>', html)
    assert resp.status == 200 and m is not None, html
    [reset] = await _actions(app_client, "staff.password_reset")
    assert reset.object_id == str(staff_id) and reset.detail["username"] == "clerk78"
    app_client.session.cookie_jar.clear()

    await sign_in(app_client, "clerk78", m.group(1))
    assert (await app_client.get("/", allow_redirects=False)).headers["Location"] == (
        "/account/password"
    )
    token = await csrf_token(app_client)
    resp = await _post(app_client, "/logout", token)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")


async def test_demo_accounts_are_not_forced(app_client: Client) -> None:
    await signed_in(app_client, "window_officer")
    resp = await app_client.get("/", allow_redirects=False)
    assert resp.status == 200
