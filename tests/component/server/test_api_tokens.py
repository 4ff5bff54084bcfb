"""API tokens: created on /account/tokens (shown once, stored hashed), used as
`Authorization: Bearer` on the REST API without CSRF, narrowed to their scopes, audited with
the token id on every use, refused with a stable 401 code when unknown, revoked or expired."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.api_tokens import create_token
from server.auth.models import ApiToken
from server.auth.permissions import Action
from server.kernel.db import utcnow
from server.org.models import Staff
from tests.conftest import signed_in

Client = TestClient[Any, Any]
_TOKEN = re.compile(r'<code id="token-value"[^>]*>(odt_[\w-]+)</code>')


async def _create(client: Client, csrf: str, **form: Any) -> tuple[int, str]:
    data = {"name": "排班系统", "days": "30", "scopes": "case.view", "_csrf": csrf, **form}
    resp = await client.post("/account/tokens", data=data)
    return resp.status, await resp.text()


class _Bare:
    """An integrator's program: the same server, no cookies ever."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    def get(self, path: str, **kw: Any) -> Any:
        return self._session.get(self._client.make_url(path), **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self._session.post(self._client.make_url(path), **kw)

    async def close(self) -> None:
        await self._session.close()


async def _bare(client: Client) -> _Bare:
    return _Bare(client)


async def test_token_is_shown_once_stored_hashed_and_acts_as_its_owner(app_client: Client) -> None:
    csrf = await signed_in(app_client, "window_officer")
    status, html = await _create(app_client, csrf)
    assert status == 201, html
    token = _TOKEN.search(html).group(1)  # type: ignore[union-attr]
    listing = await (await app_client.get("/account/tokens")).text()
    assert token not in listing and token[:12] in listing and "排班系统" in listing

    from server.http import keys

    async with app_client.app[keys.db].begin() as session:
        row = await session.scalar(select(ApiToken))
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash, row.prefix, row.name, row.scopes)

    api = await _bare(app_client)
    try:
        me = await api.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status == 200, await me.text()
        assert (await me.json())["username"] == "window01"
        cases = await api.get("/api/cases", headers={"Authorization": f"Bearer {token}"})
        assert cases.status == 200, await cases.text()
        # No CSRF header for a bearer request; the scope (case.view only) refuses case.create.
        create = await api.post("/api/cases", json={}, headers={"Authorization": f"Bearer {token}"})
        body = await create.json()
        assert create.status == 403 and body["error"] == "permission_denied", body
    finally:
        await api.close()

    async with app_client.app[keys.db].begin() as session:
        uses = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.token_use"))
        ).all()
        staff_id = await session.scalar(select(Staff.id).where(Staff.username == "window01"))
    assert len(uses) == 3
    assert {(u.actor, u.object_type, u.object_id) for u in uses} == {
        (f"staff:{staff_id}", "api_token", str(row.id))
    }


async def test_a_scoped_token_may_change_state_without_csrf(app_client: Client) -> None:
    csrf = await signed_in(app_client, "window_officer")
    _, html = await _create(app_client, csrf, scopes="case.create")
    token = _TOKEN.search(html).group(1)  # type: ignore[union-attr]
    api = await _bare(app_client)
    try:
        resp = await api.post("/api/cases", json={}, headers={"Authorization": f"Bearer {token}"})
        body = await resp.json()
        # Past CSRF and the permission check: the empty body is refused as input.
        assert resp.status == 422 and body["error"] == "invalid_input", body
        # The same call with a browser cookie and no CSRF token is refused.
        cookie = await app_client.post("/api/cases", json={})
        assert (await cookie.json())["error"] == "csrf_failed"
    finally:
        await api.close()


async def test_revoked_expired_and_unknown_tokens_get_401_with_a_stable_code(
    app_client: Client,
) -> None:
    from server.http import keys

    csrf = await signed_in(app_client, "window_officer")
    _, html = await _create(app_client, csrf)
    token = _TOKEN.search(html).group(1)  # type: ignore[union-attr]
    async with app_client.app[keys.db].begin() as session:
        token_id = await session.scalar(select(ApiToken.id))
        owner = await session.scalar(select(Staff.id).where(Staff.username == "window01"))
        past = utcnow() - timedelta(days=2)
        expired, _ = await create_token(
            session,
            staff_id=owner,
            name="old",
            scopes=frozenset({Action.case_view}),
            expires_at=past + timedelta(days=1),
            now=past,
            created_by="test",
        )
    revoke = await app_client.post(
        f"/account/tokens/{token_id}/revoke", data={"_csrf": csrf}, allow_redirects=False
    )
    assert revoke.status == 303
    api = await _bare(app_client)
    try:
        for value, code in (
            (token, "api_token_revoked"),
            (expired, "api_token_expired"),
            ("odt_nonsense", "api_token_invalid"),
        ):
            resp = await api.get("/api/cases", headers={"Authorization": f"Bearer {value}"})
            body = await resp.json()
            assert resp.status == 401 and body["error"] == code, body
            assert body["message_zh"] and body["request_id"]
    finally:
        await api.close()


async def test_a_scope_beyond_the_roles_is_refused_at_the_field(app_client: Client) -> None:
    csrf = await signed_in(app_client, "window_officer")
    status, html = await _create(app_client, csrf, scopes="audit.read", name="我的导出")
    assert status == 422
    assert 'id="err-scopes"' in html and "所选权限超出了您的角色" in html
    assert 'value="我的导出"' in html  # what was typed stays
    assert 'id="token-value"' not in html
    status, html = await _create(app_client, csrf, name="")
    assert status == 422 and 'id="err-name"' in html


async def test_another_staff_members_token_cannot_be_revoked(app_client: Client) -> None:
    from server.http import keys

    csrf = await signed_in(app_client, "window_officer")
    await _create(app_client, csrf)
    async with app_client.app[keys.db].begin() as session:
        token_id = await session.scalar(select(ApiToken.id))
    app_client.session.cookie_jar.clear()
    csrf2 = await signed_in(app_client, "street_coordinator")
    resp = await app_client.post(
        f"/account/tokens/{token_id}/revoke", data={"_csrf": csrf2}, allow_redirects=False
    )
    assert resp.status == 404
    async with app_client.app[keys.db].begin() as session:
        row = await session.get(ApiToken, token_id)
        assert row is not None and row.revoked_at is None


async def test_a_sys_admin_makes_a_service_accounts_token(app_client: Client) -> None:
    from server.http import keys

    csrf = await signed_in(app_client, "sys_admin")
    page = await (await app_client.get("/account/tokens")).text()
    assert 'name="owner"' in page and 'value="case.view"' in page
    status, html = await _create(app_client, csrf, owner="nobody-here")
    assert status == 422 and 'id="err-owner"' in html
    status, html = await _create(app_client, csrf, owner="window01", scopes="audit.read")
    assert status == 422 and "所选权限超出了该账号的角色" in html
    status, html = await _create(app_client, csrf, owner="window01")
    assert status == 201, html
    token = _TOKEN.search(html).group(1)  # type: ignore[union-attr]
    api = await _bare(app_client)
    try:
        me = await api.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert (await me.json())["username"] == "window01"
    finally:
        await api.close()
    async with app_client.app[keys.db].begin() as session:
        row = await session.scalar(select(ApiToken))
        admin = await session.scalar(select(Staff.id).where(Staff.username == "sysadmin"))
        assert row is not None and row.created_by == f"staff:{admin}"


async def test_others_cannot_name_an_owner(app_client: Client) -> None:
    from server.http import keys

    csrf = await signed_in(app_client, "window_officer")
    assert 'name="owner"' not in await (await app_client.get("/account/tokens")).text()
    status, _ = await _create(app_client, csrf, owner="coord01")
    assert status == 201
    async with app_client.app[keys.db].begin() as session:
        row = await session.scalar(select(ApiToken))
        owner = await session.scalar(select(Staff.id).where(Staff.username == "window01"))
        assert row is not None and row.staff_id == owner


async def test_the_token_service_on_each_database(demo_db_url: str) -> None:
    from server.auth.api_tokens import (
        ApiTokenRevoked,
        authenticate,
        list_tokens,
        revoke_token,
    )
    from server.kernel.db import make_engine, make_sessionmaker

    engine = make_engine(demo_db_url)
    db = make_sessionmaker(engine)
    now = utcnow()
    try:
        async with db.begin() as session:
            owner = await session.scalar(select(Staff.id).where(Staff.username == "mediator01"))
            assert owner is not None
            token, view = await create_token(
                session,
                staff_id=owner,
                name="调解排期",
                scopes=frozenset({Action.schedule_view}),
                expires_at=now + timedelta(days=1),
                now=now,
                created_by="test",
            )
        async with db.begin() as session:
            who = await authenticate(
                session, token=token, now=now, ip="127.0.0.1", method="GET", path="/api/me"
            )
        assert who.staff_id == owner and who.token_id == view.id
        assert who.can(Action.schedule_view) and not who.can(Action.session_host)
        async with db.begin() as session:
            await revoke_token(session, token_id=view.id, now=now, actor="test")
            [listed] = await list_tokens(session, staff_id=owner)
            assert listed.owner == "mediator01" and listed.revoked_at is not None
        async with db.begin() as session:
            with pytest.raises(ApiTokenRevoked):
                await authenticate(
                    session, token=token, now=now, ip="", method="GET", path="/api/me"
                )
    finally:
        await engine.dispose()
