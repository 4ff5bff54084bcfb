"""/account/tokens: a staff member's own API tokens (create, shown once; list; revoke)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.api_tokens import (
    NEVER_SCOPES,
    TokenScopeNotAllowed,
    create_token,
    grantable,
    list_tokens,
    parse_scopes,
    revoke_token,
    staff_id_by_username,
)
from server.auth.permissions import Action, StaffIdentity
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput, PermissionDenied
from web.render import page

LIFETIMES = (30, 90, 180, 365)
#: What each scope lets a token do, for the form (the action's code is shown beside it).
SCOPE_LABELS = {
    "org.view": "查看组织机构",
    "staff.manage": "管理工作人员账号",
    "roles.manage": "管理角色权限",
    "settings.manage": "管理系统配置",
    "audit.read": "查看审计日志",
    "case.create": "登记事项",
    "case.view": "查看事项",
    "case.view_all": "查看全部事项",
    "case.handle": "办理事项",
    "case.assign": "交办事项",
    "case.supervise": "督办事项",
    "case.extend_approve": "审批延期",
    "case.opinion": "出具专家意见",
    "report.publish": "发布评价报告",
    "case.transfer": "转送事项",
    "case.assess": "查看考核统计",
    "case.exchange": "与省平台交换数据",
    "agreement.manage": "管理调解协议",
    "escalation.manage": "管理抄告名单",
    "session.create": "创建会话",
    "session.join": "加入会话",
    "session.host": "主持会话",
    "session.invite": "邀请参与人",
    "recording.play": "调阅录像",
    "queue.answer": "接听视频接访",
    "queue.call": "发起视频接访",
    "schedule.view": "查看日程",
    "schedule.book": "预约会话",
    "schedule.manage": "管理日程",
    "red_card.issue": "签发红牌",
}


class _Refused(Exception):
    """The form was refused at a field (already in `errors`)."""


class TokenForm(BaseModel, extra="ignore"):
    name: str = Field(min_length=1, max_length=80)
    days: int = Field(ge=1, le=366)
    scopes: list[str] = Field(min_length=1)


def _for_others(staff: StaffIdentity) -> bool:
    """A sys_admin also makes and revokes tokens of service accounts (any staff account)."""
    return staff.can(Action.staff_manage)


def _browser_staff(request: web.Request) -> StaffIdentity:
    staff = signed_in_staff(request)
    if staff.token_id is not None:  # tokens are managed from a browser session only
        raise PermissionDenied("API tokens are managed from a signed-in browser session")
    return staff


async def _render(
    request: web.Request,
    staff: StaffIdentity,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    new_token: str | None = None,
    status: int = 200,
) -> web.Response:
    admin = _for_others(staff)
    async with request.app[keys.db].begin() as session:
        tokens = await list_tokens(session, staff_id=None if admin else staff.staff_id)
    offered = [a for a in Action if a not in NEVER_SCOPES] if admin else grantable(staff)
    return page(
        request,
        "account_tokens.html",
        {
            "tokens": tokens,
            "now": utcnow(),
            "scopes": [(str(a), SCOPE_LABELS.get(str(a), str(a))) for a in offered],
            "lifetimes": LIFETIMES,
            "admin": admin,
            "typed": typed or {"name": "", "days": 90, "scopes": [], "owner": staff.username},
            "errors": errors or {},
            "new_token": new_token,
        },
        status=status,
    )


@protected(Action.api_token_manage)
async def tokens_page(request: web.Request) -> web.Response:
    return await _render(request, _browser_staff(request))


@protected(Action.api_token_manage)
async def tokens_create(request: web.Request) -> web.Response:
    staff = _browser_staff(request)
    form = await request.post()
    owner_name = str(form.get("owner", staff.username))[:64].strip()
    typed: dict[str, Any] = {
        "name": str(form.get("name", "")),
        "days": str(form.get("days", "")),
        "scopes": [str(v) for v in form.getall("scopes", [])],
        "owner": owner_name,
    }
    errors: dict[str, str] = {}
    token = ""
    try:
        valid = TokenForm.model_validate(typed)
        scopes = parse_scopes(valid.scopes)
        now = utcnow()
        async with request.app[keys.db].begin() as session:
            owner_id: int | None = staff.staff_id
            if _for_others(staff) and owner_name != staff.username:
                owner_id = await staff_id_by_username(session, owner_name)
            if owner_id is None:
                errors["owner"] = "没有这个账号（或已停用）。"
                raise _Refused
            token, _ = await create_token(
                session,
                staff_id=owner_id,
                name=valid.name,
                scopes=scopes,
                expires_at=now + timedelta(days=valid.days),
                now=now,
                created_by=staff.actor,
                ip=client_ip(request),
            )
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "name"
            errors[field] = {
                "name": "请填写令牌名称（1至80个字）。",
                "days": "请选择有效期。",
                "scopes": "请至少选择一项权限。",
            }.get(field, "输入有误")
    except _Refused:
        pass
    except TokenScopeNotAllowed:
        errors["scopes"] = (
            "所选权限超出了您的角色。"
            if owner_name == staff.username
            else "所选权限超出了该账号的角色。"
        )
    except InvalidInput:
        errors["scopes"] = "请至少选择一项权限。"
    if errors:
        return await _render(request, staff, typed=typed, errors=errors, status=422)
    return await _render(request, staff, new_token=token, status=201)


@protected(Action.api_token_manage)
async def tokens_revoke(request: web.Request) -> web.Response:
    staff = _browser_staff(request)
    token_id = path_int(request, "token_id")
    async with request.app[keys.db].begin() as session:
        await revoke_token(
            session,
            token_id=token_id,
            now=utcnow(),
            actor=staff.actor,
            owner_id=None if _for_others(staff) else staff.staff_id,
            ip=client_ip(request),
        )
    raise web.HTTPSeeOther("/account/tokens")


def setup(app: web.Application) -> None:
    app.router.add_get("/account/tokens", tokens_page, name="account_tokens")
    app.router.add_post("/account/tokens", tokens_create, name="account_tokens_create")
    app.router.add_post(
        r"/account/tokens/{token_id:\d+}/revoke", tokens_revoke, name="account_tokens_revoke"
    )
