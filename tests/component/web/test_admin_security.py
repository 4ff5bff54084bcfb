"""The security administrator's pages (/security) and the audit administrator's log (/audit):
role grants under the 三员分立 rules, 2FA reset, sessions, sign-in unlock, key status; the log
in words with filters, paging and an audited CSV export; and the separation between the
three admin roles on pages and API."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.models import WebSession
from server.auth.service import open_session
from server.http import keys
from server.kernel.db import utcnow
from server.org.models import Role, Staff
from tests.conftest import signed_in

Client = TestClient[Any, Any]


async def _staff(client: Client, username: str) -> Staff:
    async with client.app[keys.db].begin() as session:
        staff: Staff | None = await session.scalar(select(Staff).where(Staff.username == username))
        assert staff is not None
        session.expunge(staff)
        return staff


async def _roles(client: Client, username: str) -> set[Role]:
    return set((await _staff(client, username)).role_set)


async def _entries(client: Client, action: str) -> list[AuditEntry]:
    async with client.app[keys.db].begin() as session:
        return list(
            (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
        )


async def _change(client: Client, csrf: str, staff_id: int, role: str, op: str) -> tuple[int, str]:
    resp = await client.post(
        f"/security/staff/{staff_id}/roles", data={"role": role, "op": op, "_csrf": csrf}
    )
    return resp.status, await resp.text()


async def test_sec_admin_finds_an_account_grants_and_revokes_a_business_role(
    app_client: Client,
) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    home = await (await app_client.get("/")).text()
    assert 'href="/security"' in home and 'href="/audit"' not in home
    window = await _staff(app_client, "window01")
    found = await (await app_client.get("/security", params={"q": "window0"})).text()
    assert f'href="/security/staff/{window.id}"' in found and "窗口接待员" in found

    status, html = await _change(app_client, csrf, window.id, "mediator", "grant")
    assert status == 200 and "已授予角色：调解员" in html, html
    assert await _roles(app_client, "window01") == {Role.window_officer, Role.mediator}
    [grant] = await _entries(app_client, "role.grant")
    secadmin = await _staff(app_client, "secadmin")
    assert (grant.actor, grant.object_type, grant.object_id, grant.detail) == (
        f"staff:{secadmin.id}",
        "staff",
        str(window.id),
        {"role": "mediator"},
    )

    status, html = await _change(app_client, csrf, window.id, "mediator", "revoke")
    assert status == 200 and "已收回角色：调解员" in html
    assert await _roles(app_client, "window01") == {Role.window_officer}
    assert len(await _entries(app_client, "role.revoke")) == 1


@pytest.mark.parametrize(
    ("username", "role", "status", "message"),
    [
        # an admin account never gets a business role (and keeps the typed choice)
        ("auditadmin", "window_officer", 409, "管理员账号不能再授予业务角色"),
        # admin roles are not granted here at all
        ("window01", "sys_admin", 409, "只能授予或收回业务角色"),
        # not a role
        ("window01", "janitor", 422, "请选择一个业务角色"),
        ("window01", "", 422, "请选择一个业务角色"),
    ],
)
async def test_refused_role_changes_say_why_at_the_field(
    app_client: Client, username: str, role: str, status: int, message: str
) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    target = await _staff(app_client, username)
    before = await _roles(app_client, username)
    got, html = await _change(app_client, csrf, target.id, role, "grant")
    assert got == status, html
    assert 'id="err-role"' in html and message in html
    if role == "window_officer":
        assert '<option value="window_officer" selected>' in html
    assert await _roles(app_client, username) == before
    assert not await _entries(app_client, "role.grant")


async def test_sec_admin_resets_a_second_factor(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    window = await _staff(app_client, "window01")
    async with app_client.app[keys.db].begin() as session:
        row = await session.get(Staff, window.id)
        assert row is not None
        row.totp_secret_enc = app_client.app[keys.pii].encrypt("JBSWY3DPEHPK3PXP")
        row.totp_last_step = 5
    page = await (await app_client.get(f"/security/staff/{window.id}")).text()
    assert "已绑定验证器" in page and 'id="totp-reset"' in page
    resp = await app_client.post(f"/security/staff/{window.id}/totp-reset", data={"_csrf": csrf})
    html = await resp.text()
    assert resp.status == 200 and "已重置动态验证码" in html and "未绑定" in html
    after = await _staff(app_client, "window01")
    assert after.totp_secret_enc is None and after.totp_last_step is None
    [entry] = await _entries(app_client, "auth.totp_reset")
    assert entry.object_id == str(window.id)


async def test_sec_admin_lists_and_ends_a_browser_session(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    async with app_client.app[keys.db].begin() as session:
        window = await session.scalar(select(Staff).where(Staff.username == "window01"))
        assert window is not None
        await open_session(session, staff=window, ip="10.1.2.3", now=utcnow())
        name = window.display_name
    listing = await (await app_client.get("/security/sessions")).text()
    assert name in listing and "10.1.2.3" in listing
    async with app_client.app[keys.db].begin() as session:
        handle = await session.scalar(select(WebSession.id_hash).where(WebSession.ip == "10.1.2.3"))
    resp = await app_client.post(
        f"/security/sessions/{handle}/end",
        data={"_csrf": csrf, "back": "https://evil.example/"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/security/sessions"
    async with app_client.app[keys.db].begin() as session:
        assert await session.get(WebSession, handle) is None
    assert len(await _entries(app_client, "auth.session_ended")) == 1
    # an unknown session is a 404, not a silent success
    again = await app_client.post(f"/security/sessions/{handle}/end", data={"_csrf": csrf})
    assert again.status == 404


async def test_sec_admin_clears_a_sign_in_lockout(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    throttle = app_client.app[keys.signin_throttle]
    for _ in range(8):
        await throttle.failed("window01", "10.9.9.9")
    assert await throttle.wait_s("window01", "10.9.9.9") > 0
    listed = await (await app_client.get("/security")).text()
    lockouts = listed.split('id="lockouts"')[1].split("</table>")[0]
    assert "window01" in lockouts and "10.9.9.9" in lockouts and ">8<" in lockouts
    resp = await app_client.post("/security/unlock", data={"username": "window01", "_csrf": csrf})
    assert resp.status == 200 and "已解除 window01 的登录限制" in await resp.text()
    assert await throttle.wait_s("window01", "10.9.9.9") == 0
    [entry] = await _entries(app_client, "auth.unlocked")
    assert entry.detail == {"username": "window01", "cleared_pairs": 1}
    bad = await app_client.post("/security/unlock", data={"username": " ", "_csrf": csrf})
    assert bad.status == 422 and "请填写用户名" in await bad.text()
    no_csrf = await app_client.post("/security/unlock", data={"username": "window01"})
    assert no_csrf.status == 403


async def test_key_rotation_status_counts_rows_under_each_key(app_client: Client) -> None:
    await signed_in(app_client, "sec_admin")
    html = await (await app_client.get("/security/keys")).text()
    pii = app_client.app[keys.pii]
    assert f'<code id="pii-key">{pii.key_id}</code>' in html
    assert "所有个人信息都已使用当前密钥加密" in html
    assert (
        "信访人" in html
        and "身份证号" in html
        and "petitioner" not in html
        and "审计日志链密钥" in html
    )


# --- the audit log ---------------------------------------------------------------------


async def test_the_audit_log_shows_names_labels_and_targets_in_words(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    window = await _staff(app_client, "window01")
    secadmin = await _staff(app_client, "secadmin")
    await _change(app_client, csrf, window.id, "mediator", "grant")
    await signed_in(app_client, "audit_admin")
    home = await (await app_client.get("/")).text()
    assert 'href="/audit"' in home and 'href="/security"' not in home

    resp = await app_client.get("/audit", params={"actor": "secadmin", "action": "role.grant"})
    html = await resp.text()
    assert resp.status == 200, html
    assert "授予角色" in html and secadmin.display_name in html and "（secadmin）" in html
    assert f"工作人员 {window.display_name}（window01）" in html and "角色：调解员" in html
    table = html.split('id="audit"')[1]
    assert "staff:" not in table
    # the filter excluded the sign-ins
    assert ">登录<" not in table

    unfiltered = (await (await app_client.get("/audit")).text()).split('id="audit"')[1]
    assert ">登录<" in unfiltered
    assert ">auth.sign_in<" not in unfiltered and "staff:" not in unfiltered


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "2026-13-40"}, "since", "请填写有效的开始日期"),
        ({"since": "2026-12-03", "until": "2026-12-01"}, "until", "不早于开始日期"),
        ({"actor": "nobody-here"}, "actor", "没有这个用户名的账号"),
        ({"action": "made.up"}, "action", "请选择列表中的操作"),
        ({"target": "1; drop"}, "target", "对象编号只能是数字或字母"),
    ],
)
async def test_bad_audit_filters_are_refused_at_the_field_with_the_typed_value(
    app_client: Client, params: dict[str, str], field: str, message: str
) -> None:
    await signed_in(app_client, "audit_admin")
    resp = await app_client.get("/audit", params=params)
    html = await resp.text()
    assert resp.status == 422, html
    assert f'id="err-{field}"' in html and message in html
    if field in ("since", "actor", "target"):
        assert f'value="{params[field]}"' in html.replace("&#34;", '"').replace("&#39;", "'")


async def test_audit_date_range_and_paging(app_client: Client) -> None:
    await signed_in(app_client, "audit_admin")
    from web.views import audit as audit_view

    today = utcnow() + timedelta(hours=8)
    day = today.date().isoformat()
    html = await (await app_client.get("/audit", params={"since": day, "until": day})).text()
    assert "登录" in html
    past = await (
        await app_client.get("/audit", params={"since": "2020-01-01", "until": "2020-01-02"})
    ).text()
    assert "没有符合条件的条目" in past
    assert audit_view.PAGE_SIZE > 0
    # paging: before=<id> shows only older entries
    async with app_client.app[keys.db].begin() as session:
        newest = await session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
    assert newest is not None
    older = await (await app_client.get("/audit", params={"before": str(newest)})).text()
    assert f'<td data-label="编号">{newest}</td>' not in older and "最新的条目" in older


async def test_the_csv_export_is_in_words_and_audited(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    window = await _staff(app_client, "window01")
    await _change(app_client, csrf, window.id, "expert", "grant")
    await signed_in(app_client, "audit_admin")
    resp = await app_client.get("/audit/export.csv", params={"action": "role.grant"})
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert rows[0][:5] == ["编号", "时间（本地）", "操作人", "用户名", "操作"]
    assert len(rows) == 2 and rows[1][3] == "secadmin" and rows[1][4] == "授予角色"
    assert "角色：专家" in rows[1][7]
    [export] = await _entries(app_client, "audit.export")
    assert export.detail == {"action": "role.grant", "rows": 1}


async def test_the_audit_page_checks_the_hash_chain(app_client: Client) -> None:
    await signed_in(app_client, "audit_admin")
    html = await (await app_client.get("/audit", params={"verify": "1"})).text()
    assert 'id="chain-status"' in html and "哈希链完整" in html
    async with app_client.app[keys.db].begin() as session:
        first = await session.scalar(select(AuditEntry).order_by(AuditEntry.id))
        assert first is not None
        first.ip = "6.6.6.6"  # tampering
    broken = await (await app_client.get("/audit", params={"verify": "1"})).text()
    assert "哈希链断裂于条目" in broken


# --- separation of the three admin roles -----------------------------------------------

_SEC_PAGES = ["/security", "/security/sessions", "/security/keys", "/security/staff/1"]
_SEC_POSTS = ["/security/unlock", "/security/staff/1/roles", "/security/staff/1/totp-reset"]
_AUDIT_PAGES = ["/audit", "/audit/export.csv"]


@pytest.mark.parametrize(
    ("role", "forbidden_gets", "forbidden_posts"),
    [
        # sys_admin: no role grants, no audit reading
        ("sys_admin", _SEC_PAGES + _AUDIT_PAGES, [*_SEC_POSTS, "/api/auth/unlock"]),
        # sec_admin: no audit reading, no account management
        ("sec_admin", _AUDIT_PAGES, []),
        # audit_admin: reads only — changes nothing
        ("audit_admin", _SEC_PAGES, [*_SEC_POSTS, "/api/auth/unlock"]),
        # a business role: none of it
        ("centre_supervisor", _SEC_PAGES + _AUDIT_PAGES, [*_SEC_POSTS, "/api/auth/unlock"]),
    ],
)
async def test_admin_separation(
    app_client: Client, role: str, forbidden_gets: list[str], forbidden_posts: list[str]
) -> None:
    csrf = await signed_in(app_client, role)
    for path in forbidden_gets:
        resp = await app_client.get(path)
        assert resp.status == 403, (role, path)
    for path in forbidden_posts:
        if path.startswith("/api/"):
            resp = await app_client.post(
                path, json={"username": "window01"}, headers={"X-CSRF-Token": csrf}
            )
            assert resp.status == 403 and (await resp.json())["error"] == "permission_denied"
        else:
            resp = await app_client.post(
                path, data={"_csrf": csrf, "username": "x", "role": "expert", "op": "grant"}
            )
            assert resp.status == 403, (role, path)
    assert await _roles(app_client, "window01") == {Role.window_officer}
    assert not await _entries(app_client, "auth.unlocked")
    # the account pages (staff.manage) are sys_admin's: sec_admin's token page offers no others
    if role == "sec_admin":
        html = await (await app_client.get("/account/tokens")).text()
        assert 'name="owner"' not in html


async def test_an_action_family_filter_selects_the_whole_family(app_client: Client) -> None:
    csrf = await signed_in(app_client, "sec_admin")
    window = await _staff(app_client, "window01")
    await _change(app_client, csrf, window.id, "expert", "grant")
    await _change(app_client, csrf, window.id, "expert", "revoke")
    await signed_in(app_client, "audit_admin")
    html = await (await app_client.get("/audit", params={"action": "role."})).text()
    table = html.split('id="audit"')[1]
    assert ">授予角色<" in table and ">收回角色<" in table and ">登录<" not in table


async def test_the_security_api_grants_and_resets_and_refuses_other_roles(
    app_client: Client,
) -> None:
    window = await _staff(app_client, "window01")
    url = f"/api/security/staff/{window.id}"
    for role in ("sys_admin", "audit_admin"):
        csrf = await signed_in(app_client, role)
        resp = await app_client.post(
            url + "/roles", json={"role": "expert", "op": "grant"}, headers={"X-CSRF-Token": csrf}
        )
        assert resp.status == 403 and (await resp.json())["error"] == "permission_denied"
    csrf = await signed_in(app_client, "sec_admin")
    headers = {"X-CSRF-Token": csrf}
    resp = await app_client.post(
        url + "/roles", json={"role": "expert", "op": "grant"}, headers=headers
    )
    assert resp.status == 200 and (await resp.json())["roles"] == ["expert", "window_officer"]
    auditadmin = await _staff(app_client, "auditadmin")
    refused = await app_client.post(
        f"/api/security/staff/{auditadmin.id}/roles",
        json={"role": "expert", "op": "grant"},
        headers=headers,
    )
    assert refused.status == 409 and (await refused.json())["error"] == "role_combination_refused"
    bad = await app_client.post(
        url + "/roles", json={"role": "boss", "op": "grant"}, headers=headers
    )
    assert bad.status == 422
    reset = await app_client.post(url + "/totp-reset", headers=headers)
    assert reset.status == 204
    assert len(await _entries(app_client, "auth.totp_reset")) == 1
