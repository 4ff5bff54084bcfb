"""/account/tokens: a staff member's own API tokens (create, shown once; list; revoke)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.api_tokens import (
    TokenScopeNotAllowed,
    create_token,
    grantable,
    list_tokens,
    parse_scopes,
    revoke_token,
)
from server.auth.permissions import Action, StaffIdentity
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput, PermissionDenied
from web.render import page

LIFETIMES = (30, 90, 180, 365)


class TokenForm(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    days: int = Field(ge=1, le=366)
    scopes: list[str] = Field(min_length=1)


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
    async with request.app[keys.db].begin() as session:
        tokens = await list_tokens(session, staff_id=staff.staff_id)
    return page(
        request,
        "account_tokens.html",
        {
            "tokens": tokens,
            "now": utcnow(),
            "scopes": [str(a) for a in grantable(staff)],
            "lifetimes": LIFETIMES,
            "typed": typed or {"name": "", "days": 90, "scopes": []},
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
    typed = {
        "name": str(form.get("name", "")),
        "days": str(form.get("days", "")),
        "scopes": [str(v) for v in form.getall("scopes", [])],
    }
    errors: dict[str, str] = {}
    token = ""
    try:
        valid = TokenForm.model_validate(typed)
        scopes = parse_scopes(valid.scopes)
        now = utcnow()
        async with request.app[keys.db].begin() as session:
            token, _ = await create_token(
                session,
                staff_id=staff.staff_id,
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
    except TokenScopeNotAllowed:
        errors["scopes"] = "所选权限超出了您的角色。"
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
            owner_id=staff.staff_id,
            ip=client_ip(request),
        )
    raise web.HTTPSeeOther("/account/tokens")


def setup(app: web.Application) -> None:
    app.router.add_get("/account/tokens", tokens_page, name="account_tokens")
    app.router.add_post("/account/tokens", tokens_create, name="account_tokens_create")
    app.router.add_post(
        r"/account/tokens/{token_id:\d+}/revoke", tokens_revoke, name="account_tokens_revoke"
    )
