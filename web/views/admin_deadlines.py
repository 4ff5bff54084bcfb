"""/admin/deadlines: deadline policies (办理时限) and the matter types' overrides, for the
system administrator (settings.manage)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.permissions import Action
from server.cases.deadline_policies import (
    MAX_EXTENSION_DAYS,
    MAX_LIMIT_DAYS,
    list_matter_types,
    list_policies,
    update_matter_type,
    update_policy,
)
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.kernel.errors import InvalidInput
from web.form_messages import messages_by_field
from web.render import page

_MESSAGES = {
    "limit_days": "期限天数须为1至366的整数。",
    "day_mode": "请选择按自然日或工作日计算。",
    "yellow_days": "黄色预警天数须为0以上、小于期限天数的整数。",
    "extension_max_days": "最长延期天数须为0至180的整数。",
}
_FIELDS = ("limit_days", "day_mode", "yellow_days", "extension_max_days")


class PolicyForm(BaseModel, extra="ignore"):
    limit_days: int = Field(ge=1, le=MAX_LIMIT_DAYS)
    day_mode: str = Field(pattern=r"^(calendar|working)$")
    yellow_days: int = Field(ge=0, le=MAX_LIMIT_DAYS)
    extension_max_days: int = Field(ge=0, le=MAX_EXTENSION_DAYS)


async def _render(
    request: web.Request,
    *,
    failed: str = "",
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        policies = await list_policies(session)
        matter_types = await list_matter_types(session)
    labels = {p.kind: p.label_zh for p in policies}
    return page(
        request,
        "admin/deadlines.html",
        {
            "policies": policies,
            "matter_types": matter_types,
            "kind_labels": labels,
            "failed": failed,
            "typed": typed or {},
            "errors": errors or {},
            "notice": request.query.get("done", ""),
        },
        status=status,
    )


@protected(Action.settings_manage)
async def deadlines_page(request: web.Request) -> web.Response:
    return await _render(request)


@protected(Action.settings_manage)
async def deadlines_update(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    kind = request.match_info["kind"]
    form = await request.post()
    typed = {k: str(form.get(k, "")).strip() for k in _FIELDS}
    errors: dict[str, str] = {}
    try:
        valid = PolicyForm.model_validate(typed)
        async with request.app[keys.db].begin() as session:
            await update_policy(
                session,
                kind=kind,
                limit_days=valid.limit_days,
                day_mode=valid.day_mode,
                yellow_days=valid.yellow_days,
                extension_max_days=valid.extension_max_days,
                actor=staff.actor,
                ip=client_ip(request),
            )
    except ValidationError as e:
        errors.update(messages_by_field(e, _MESSAGES, default_field="limit_days"))
    except InvalidInput as e:
        field = str(e.details.get("field", "limit_days"))
        errors[field] = _MESSAGES.get(field, "输入有误")
    if errors:
        return await _render(request, failed=kind, typed=typed, errors=errors, status=422)
    raise web.HTTPSeeOther(f"/admin/deadlines?done={kind}#policy-{kind}")


@protected(Action.settings_manage)
async def matter_type_update(request: web.Request) -> web.Response:
    """One matter type's name, whether intake offers it, and its own handling time limit."""
    staff = signed_in_staff(request)
    code = request.match_info["code"]
    form = await request.post()
    typed = {
        "name": str(form.get("name", "")).strip(),
        "active": "on" if form.get("active") else "",
        "handling_days": str(form.get("handling_days", "")).strip(),
    }
    days = typed["handling_days"]
    errors: dict[str, str] = {}
    if days and not days.isdigit():
        errors["handling_days"] = "专门办理时限为1至366天，留空则按通用时限。"
    else:
        try:
            async with request.app[keys.db].begin() as session:
                await update_matter_type(
                    session,
                    code=code,
                    name=typed["name"],
                    active=bool(typed["active"]),
                    handling_days=int(days) if days else None,
                    actor=staff.actor,
                    ip=client_ip(request),
                )
        except InvalidInput as e:
            field = str(e.details.get("field", "name"))
            errors[field] = (
                "请填写名称（1至100个字）。"
                if field == "name"
                else "专门办理时限为1至366天，留空则按通用时限。"
            )
    if errors:
        return await _render(
            request, failed=f"matter-{code}", typed=typed, errors=errors, status=422
        )
    raise web.HTTPSeeOther(f"/admin/deadlines?done=matter#matter-{code}")


def setup(app: web.Application) -> None:
    app.router.add_post(
        r"/admin/matter-types/{code:[a-z0-9_]+}", matter_type_update, name="admin_matter_type"
    )
    app.router.add_get("/admin/deadlines", deadlines_page, name="admin_deadlines")
    app.router.add_post(
        r"/admin/deadlines/{kind:[a-z_]+}", deadlines_update, name="admin_deadlines_update"
    )
