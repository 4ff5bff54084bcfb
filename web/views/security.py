"""/security: the security administrator's pages (三员分立: roles.manage = sec_admin only).

- /security: find a staff account; clear a name's sign-in throttle (lockout).
- /security/staff/{id}: grant and revoke business roles, reset the second factor (TOTP), end
  the account's signed-in browser sessions.
- /security/sessions: every signed-in browser session (server-side, server/auth/models.py).
- /security/keys: which key ids are current and how many rows are still under older keys.

Every change is written to the audit log by the service that makes it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.audit.chain import AuditKeys
from server.audit.service import key_usage as audit_key_usage
from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.auth.service import (
    RoleCombinationRefused,
    RoleNotGrantable,
    account,
    end_web_session,
    find_accounts,
    grant_role,
    list_web_sessions,
    reset_totp,
    revoke_role,
)
from server.cases.pii_keys import key_usage as pii_key_usage
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.errors import PermissionDenied
from server.kernel.signing import Signer
from server.org.schemas import Role
from web.labels import ROLE_LABELS
from web.render import page

#: Roles the security administrator grants (admin roles come with the account: sys_admin).
BUSINESS_ROLES = [r for r in Role if r not in (Role.sys_admin, Role.sec_admin, Role.audit_admin)]

#: The key status page's words for tables, columns and signing purposes.
_TABLE_WORDS = {"petitioner": "信访人", "case_representative": "代表人/代理人"}
_COLUMN_WORDS = {
    "name_enc": "姓名",
    "phone_enc": "电话",
    "id_number_enc": "身份证号",
    "address_enc": "住址",
}
_PURPOSE_WORDS = {
    "csrf": "表单防伪令牌",
    "join": "视频入会链接",
    "resume": "视频重连凭证",
    "pending_2fa": "登录第二步",
}

_ROLE_ERRORS = {
    RoleCombinationRefused: "管理员账号不能再授予业务角色（三员分立），也不能兼任其他管理员角色。",
    RoleNotGrantable: "只能授予或收回业务角色。",
}


class RoleForm(BaseModel, extra="ignore"):
    role: Role
    op: str = Field(pattern="^(grant|revoke)$")


class UnlockForm(BaseModel, extra="ignore"):
    username: str = Field(min_length=1, max_length=64)


def _browser_admin(request: web.Request) -> StaffIdentity:
    staff = signed_in_staff(request)
    if staff.token_id is not None:  # the security pages are for a signed-in browser only
        raise PermissionDenied("security administration needs a browser session")
    return staff


@protected(Action.roles_manage)
async def security_home(request: web.Request) -> web.Response:
    _browser_admin(request)
    return await _render_home(request)


async def _render_home(
    request: web.Request,
    *,
    unlock_typed: str = "",
    unlock_error: str = "",
    unlocked: str = "",
    status: int = 200,
) -> web.Response:
    q = request.query.get("q", "")[:64].strip()
    accounts = []
    if q:  # a list only when asked: the district has hundreds of accounts
        async with request.app[keys.db].begin() as session:
            accounts = await find_accounts(session, query=q)
    waiting = await request.app[keys.signin_throttle].waiting()
    return page(
        request,
        "security.html",
        {
            "q": q,
            "accounts": accounts,
            "waiting": waiting,
            "role_labels": ROLE_LABELS,
            "unlock_typed": unlock_typed,
            "unlock_error": unlock_error,
            "unlocked": unlocked,
        },
        status=status,
    )


@protected(Action.roles_manage)
async def unlock(request: web.Request) -> web.Response:
    staff = _browser_admin(request)
    form = await request.post()
    typed = str(form.get("username", "")).strip()
    try:
        valid = UnlockForm.model_validate({"username": typed})
    except ValidationError:
        return await _render_home(
            request,
            unlock_typed=typed[:200],
            unlock_error="请填写用户名（1至64个字符）。",
            status=422,
        )
    cleared = await request.app[keys.signin_throttle].unlock(valid.username)
    async with request.app[keys.db].begin() as session:
        await record(
            session,
            actor=staff.actor,
            action="auth.unlocked",
            ip=client_ip(request),
            detail={"username": valid.username, "cleared_pairs": cleared},
        )
    message = (
        f"已解除 {valid.username} 的登录限制（{cleared} 处）。"
        if cleared
        else f"{valid.username} 当前没有登录限制。"
    )
    return await _render_home(request, unlocked=message)


async def _render_account(
    request: web.Request,
    staff_id: int,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, Any] | None = None,
    done: str = "",
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        acc = await account(session, staff_id=staff_id)
        sessions = await list_web_sessions(session, staff_id=staff_id)
    is_admin = any(r in (Role.sys_admin, Role.sec_admin, Role.audit_admin) for r in acc.roles)
    return page(
        request,
        "security_staff.html",
        {
            "acc": acc,
            "is_admin": is_admin,
            "roles": sorted(acc.roles),
            "role_labels": ROLE_LABELS,
            "grantable": [r for r in BUSINESS_ROLES if r not in acc.roles],
            "sessions": sessions,
            "errors": errors or {},
            "typed": typed or {"role": ""},
            "done": done,
        },
        status=status,
    )


@protected(Action.roles_manage)
async def staff_page(request: web.Request) -> web.Response:
    _browser_admin(request)
    return await _render_account(request, path_int(request, "staff_id"))


@protected(Action.roles_manage)
async def change_role(request: web.Request) -> web.Response:
    staff = _browser_admin(request)
    staff_id = path_int(request, "staff_id")
    form = await request.post()
    typed = {"role": str(form.get("role", ""))[:40], "op": str(form.get("op", ""))[:10]}
    try:
        valid = RoleForm.model_validate(typed)
    except ValidationError:
        return await _render_account(
            request, staff_id, errors={"role": "请选择一个业务角色。"}, typed=typed, status=422
        )
    try:
        async with request.app[keys.db].begin() as session:
            change = grant_role if valid.op == "grant" else revoke_role
            await change(
                session,
                staff_id=staff_id,
                role=valid.role,
                actor=staff.actor,
                ip=client_ip(request),
            )
    except (RoleCombinationRefused, RoleNotGrantable) as e:
        return await _render_account(
            request, staff_id, errors={"role": _ROLE_ERRORS[type(e)]}, typed=typed, status=409
        )
    label = ROLE_LABELS[valid.role]
    done = f"已授予角色：{label}" if valid.op == "grant" else f"已收回角色：{label}"
    return await _render_account(request, staff_id, done=done)


@protected(Action.roles_manage)
async def totp_reset(request: web.Request) -> web.Response:
    staff = _browser_admin(request)
    staff_id = path_int(request, "staff_id")
    async with request.app[keys.db].begin() as session:
        await reset_totp(session, staff_id=staff_id, actor=staff.actor, ip=client_ip(request))
    return await _render_account(
        request, staff_id, done="已重置动态验证码：该账号下次登录时需重新绑定验证器。"
    )


@protected(Action.roles_manage)
async def sessions_page(request: web.Request) -> web.Response:
    _browser_admin(request)
    async with request.app[keys.db].begin() as session:
        sessions = await list_web_sessions(session)
    return page(request, "security_sessions.html", {"sessions": sessions})


@protected(Action.roles_manage)
async def session_end(request: web.Request) -> web.Response:
    staff = _browser_admin(request)
    handle = request.match_info["handle"]
    form = await request.post()
    back = str(form.get("back", "/security/sessions"))
    if not (back == "/security/sessions" or back.startswith("/security/staff/")):
        back = "/security/sessions"
    async with request.app[keys.db].begin() as session:
        await end_web_session(session, handle=handle, actor=staff.actor, ip=client_ip(request))
    raise web.HTTPSeeOther(back)


@protected(Action.roles_manage)
async def keys_page(request: web.Request) -> web.Response:
    _browser_admin(request)
    settings = request.app[keys.settings]
    pii = request.app[keys.pii]
    secret, previous = settings.secret_bytes(), settings.previous_secret_bytes()
    signer = Signer(secret, previous=previous)
    audit_keys = AuditKeys(secret, old_secrets=previous)
    async with request.app[keys.db].begin() as session:
        pii_usage = await pii_key_usage(session)
        audit_usage = await audit_key_usage(session)
    pii_old = sum(n for u in pii_usage for k, n in u.by_key.items() if k != pii.key_id)
    signing = [
        (_PURPOSE_WORDS[p], signer.key_ids(p)) for p in ("csrf", "join", "resume", "pending_2fa")
    ]
    return page(
        request,
        "security_keys.html",
        {
            "pii_key": pii.key_id,
            "pii_usage": [
                (
                    _TABLE_WORDS.get(u.table, u.table),
                    _COLUMN_WORDS.get(u.column, u.column),
                    u.by_key,
                )
                for u in pii_usage
            ],
            "pii_old": pii_old,
            "previous_count": len(previous),
            "signing": signing,
            "audit_key": audit_keys.current_id,
            "audit_usage": sorted(audit_usage.items()),
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/security", security_home, name="security")
    app.router.add_post("/security/unlock", unlock, name="security_unlock")
    app.router.add_get(r"/security/staff/{staff_id:\d+}", staff_page, name="security_staff")
    app.router.add_post(r"/security/staff/{staff_id:\d+}/roles", change_role)
    app.router.add_post(r"/security/staff/{staff_id:\d+}/totp-reset", totp_reset)
    app.router.add_get("/security/sessions", sessions_page, name="security_sessions")
    app.router.add_post(r"/security/sessions/{handle:[0-9a-f]+}/end", session_end)
    app.router.add_get("/security/keys", keys_page, name="security_keys")
