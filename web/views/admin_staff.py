"""/admin/staff: staff accounts for the system administrator (staff.manage): list with search
and paging, create (the initial password typed or generated and shown once), edit name, site
and department, disable and enable, reset a forgotten password (a new one-time password). A
one-time password must be changed at the next sign-in (/account/password). Roles are granted by the security administrator
(roles.manage, 三员分立), never here."""

from __future__ import annotations

import secrets
import string
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.errors import Conflict, InvalidInput
from server.org.service import (
    UsernameTaken,
    account,
    create_account,
    departments,
    list_accounts,
    reset_password,
    set_account_active,
    sites,
    update_account,
)
from web.form_messages import messages_by_field
from web.labels import ROLE_LABELS
from web.render import page

PAGE_SIZE = 20

_MESSAGES = {
    "username": "用户名为3至64位字母、数字、点、下划线或连字符。",
    "display_name": "请填写姓名（1至64个字）。",
    "site_id": "请选择所属站点。",
    "department_id": "请选择有效的部门。",
    "password": "初始密码至少10位，须同时包含字母和数字；或勾选“随机生成”。",
}


class _Placement(BaseModel, extra="ignore"):
    display_name: str = Field(min_length=1, max_length=64)
    site_id: int = Field(ge=1)
    department_id: int | None = None

    @field_validator("department_id", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return None if v in ("", None) else v


class NewAccountForm(_Placement):
    username: str = Field(pattern=r"^[A-Za-z0-9._-]{3,64}$")
    password: str = Field(default="", max_length=128)
    generate: bool = False


def _errors(e: ValidationError) -> dict[str, str]:
    return messages_by_field(e, _MESSAGES, default_field="username")


def _one_time_password() -> str:
    """Random, and always letters plus digits (the password policy)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(14))
        if any(c.isdigit() for c in pw) and any(c.isalpha() for c in pw):
            return pw


async def _choices(request: web.Request) -> dict[str, Any]:
    async with request.app[keys.db].begin() as session:
        site_list = await sites(session, community=False) + await sites(session, community=True)
        dept_list = await departments(session)
    return {"sites": site_list, "departments": dept_list}


async def _render_list(
    request: web.Request,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    q = request.query.get("q", "").strip()[:64]
    try:
        pg = max(int(request.query.get("page", "1")), 1)
    except ValueError:
        pg = 1
    async with request.app[keys.db].begin() as session:
        result = await list_accounts(session, query=q, offset=(pg - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    pages = max((result.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return page(
        request,
        "admin/staff.html",
        {
            "result": result,
            "q": q,
            "page_no": pg,
            "pages": pages,
            "page_url": lambda n: "/admin/staff?" + urlencode({"q": q, "page": n}),
            "role_labels": ROLE_LABELS,
            "typed": typed
            or {
                "username": "",
                "display_name": "",
                "site_id": "",
                "department_id": "",
                "generate": "on",
            },
            "errors": errors or {},
            "created": created,
            **await _choices(request),
        },
        status=status,
    )


@protected(Action.staff_manage)
async def staff_list(request: web.Request) -> web.Response:
    return await _render_list(request)


@protected(Action.staff_manage)
async def staff_create(request: web.Request) -> web.Response:
    actor = signed_in_staff(request)
    form = await request.post()
    typed: dict[str, Any] = {
        k: str(form.get(k, "")).strip()
        for k in ("username", "display_name", "site_id", "department_id")
    }
    typed["generate"] = "on" if form.get("generate") else ""
    password = str(form.get("password", ""))
    errors: dict[str, str] = {}
    created: dict[str, str] | None = None
    try:
        valid = NewAccountForm.model_validate(
            {**typed, "password": password, "generate": bool(typed["generate"])}
        )
        if not valid.generate and not valid.password:
            errors["password"] = _MESSAGES["password"]
        else:
            initial = _one_time_password() if valid.generate else valid.password
            async with request.app[keys.db].begin() as session:
                view = await create_account(
                    session,
                    username=valid.username,
                    display_name=valid.display_name,
                    site_id=valid.site_id,
                    department_id=valid.department_id,
                    password=initial,
                    actor=actor.actor,
                    ip=client_ip(request),
                )
            created = {
                "username": view.username,
                "id": str(view.id),
                "password": initial if valid.generate else "",
            }
    except ValidationError as e:
        errors = _errors(e)
    except UsernameTaken:
        errors["username"] = "该用户名已被使用。"
    except InvalidInput as e:
        field = str(e.details.get("field", "password"))
        errors[field] = _MESSAGES.get(field, "输入有误")
    if errors:
        return await _render_list(request, typed=typed, errors=errors, status=422)
    return await _render_list(request, created=created, status=201)


async def _render_edit(
    request: web.Request,
    staff_id: int,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    one_time_password: str = "",
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        view = await account(session, staff_id=staff_id)
    return page(
        request,
        "admin/staff_edit.html",
        {
            "account": view,
            "role_labels": ROLE_LABELS,
            "typed": typed
            or {
                "display_name": view.display_name,
                "site_id": str(view.site_id),
                "department_id": str(view.department_id or ""),
            },
            "errors": errors or {},
            "notice": notice,
            "one_time_password": one_time_password,
            "self_edit": view.id == signed_in_staff(request).staff_id,
            **await _choices(request),
        },
        status=status,
    )


@protected(Action.staff_manage)
async def staff_edit(request: web.Request) -> web.Response:
    return await _render_edit(
        request, path_int(request, "staff_id"), notice=request.query.get("done", "")
    )


@protected(Action.staff_manage)
async def staff_update(request: web.Request) -> web.Response:
    actor = signed_in_staff(request)
    staff_id = path_int(request, "staff_id")
    form = await request.post()
    typed = {k: str(form.get(k, "")).strip() for k in ("display_name", "site_id", "department_id")}
    errors: dict[str, str] = {}
    try:
        valid = _Placement.model_validate(typed)
        async with request.app[keys.db].begin() as session:
            await update_account(
                session,
                staff_id=staff_id,
                display_name=valid.display_name,
                site_id=valid.site_id,
                department_id=valid.department_id,
                actor=actor.actor,
                ip=client_ip(request),
            )
    except ValidationError as e:
        errors = _errors(e)
    except InvalidInput as e:
        field = str(e.details.get("field", "site_id"))
        errors[field] = _MESSAGES.get(field, "输入有误")
    if errors:
        return await _render_edit(request, staff_id, typed=typed, errors=errors, status=422)
    raise web.HTTPSeeOther(f"/admin/staff/{staff_id}?done=saved")


@protected(Action.staff_manage)
async def staff_active(request: web.Request) -> web.Response:
    actor = signed_in_staff(request)
    staff_id = path_int(request, "staff_id")
    form = await request.post()
    active = str(form.get("active", "")) == "1"
    try:
        async with request.app[keys.db].begin() as session:
            await set_account_active(
                session, staff_id=staff_id, active=active, actor=actor.actor, ip=client_ip(request)
            )
    except Conflict:
        return await _render_edit(
            request, staff_id, errors={"active": "不能停用自己的账号。"}, status=409
        )
    raise web.HTTPSeeOther(f"/admin/staff/{staff_id}?done={'enabled' if active else 'disabled'}")


@protected(Action.staff_manage)
async def staff_password_reset(request: web.Request) -> web.Response:
    """A new one-time password for a staff member who forgot theirs, shown once; they must
    choose their own at the next sign-in. Not for the administrator's own account."""
    actor = signed_in_staff(request)
    staff_id = path_int(request, "staff_id")
    password = _one_time_password()
    try:
        async with request.app[keys.db].begin() as session:
            await reset_password(
                session, staff_id=staff_id, password=password, actor=actor.actor,
                ip=client_ip(request),
            )  # fmt: skip
    except Conflict:
        return await _render_edit(
            request, staff_id, errors={"password": "不能在这里重置自己的密码。"}, status=409
        )
    return await _render_edit(request, staff_id, one_time_password=password)


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/staff", staff_list, name="admin_staff")
    app.router.add_post("/admin/staff", staff_create, name="admin_staff_create")
    app.router.add_get(r"/admin/staff/{staff_id:\d+}", staff_edit, name="admin_staff_edit")
    app.router.add_post(r"/admin/staff/{staff_id:\d+}", staff_update, name="admin_staff_update")
    app.router.add_post(
        r"/admin/staff/{staff_id:\d+}/active", staff_active, name="admin_staff_active"
    )
    app.router.add_post(
        r"/admin/staff/{staff_id:\d+}/password",
        staff_password_reset,
        name="admin_staff_password_reset",
    )
