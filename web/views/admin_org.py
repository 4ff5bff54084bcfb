"""/admin/org: sites, departments, and the rooms and windows that are booked, for the system
administrator (settings.manage): add, rename, take a room or window out of use. Thin: it calls
server.org.admin and renders admin/org.html; each form keeps what was typed on error with the
message in Chinese next to the field.

The demo district has about 100 windows, rooms and terminals: they are grouped per site (the
centre, each street with its community points) in collapsible sections (closed unless a filter is typed, a form there failed, or a change was
just made there), and `?q=` filters sites, departments and rooms by name or code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.errors import AppError, InvalidInput
from server.org import admin
from server.org.schemas import ResourceType, SiteLevel
from web.form_messages import messages_by_field
from web.labels import RESOURCE_TYPE_LABELS, SITE_LEVEL_LABELS
from web.render import page

_MESSAGES = {
    "name": "请填写名称（1至100个字）。",
    "admin_code": "请填写区划或站点代码（数字，2至20位）。",
    "code": "请填写部门代码（小写字母、数字或下划线，2至32位）。",
    "level": "请选择类型：街道或社区。",
    "parent_id": "请选择上级：街道属于区中心，社区属于街道。",
    "site_id": "请选择所在站点。",
    "type": "请选择类型。",
    "capacity": "容纳人数为1至200。",
    "address": "地址最多200个字。",
}


class SiteForm(BaseModel, extra="ignore"):
    name: str = Field(min_length=1, max_length=100)
    admin_code: str = Field(pattern=r"^[0-9]{2,20}$")
    level: SiteLevel
    parent_id: int = Field(ge=1)
    address: str = Field(default="", max_length=200)


class RenameForm(BaseModel, extra="ignore"):
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(default="", max_length=200)


class DepartmentForm(BaseModel, extra="ignore"):
    code: str = Field(pattern=r"^[a-z0-9_]{2,32}$")
    name: str = Field(min_length=1, max_length=100)


class ResourceForm(BaseModel, extra="ignore"):
    type: ResourceType
    name: str = Field(min_length=1, max_length=100)
    site_id: int = Field(ge=1)
    capacity: int = Field(default=1, ge=1, le=200)


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """The windows, rooms and terminals of the centre, or of one street with its community
    points, with how many of each type."""

    site_id: int
    site_name: str
    rows: list[admin.ResourceRow]
    counts: list[tuple[str, int]]  # (type label, how many), in the table's type order
    inactive: int
    communities: bool  # rows of the street's community points are in the group


def _matches(q: str, *texts: str) -> bool:
    return not q or any(q in t.casefold() for t in texts)


def _resource_groups(org: admin.OrgOverview, q: str) -> list[ResourceGroup]:
    """One group per centre or street (a community point's rooms go with its street), in
    the order of the administrative codes; `q` keeps the rows whose name, site or code match."""
    sites = {s.id: s for s in org.sites}

    def group_of(site_id: int) -> int:
        site = sites.get(site_id)
        if site is not None and site.level == SiteLevel.community and site.parent_id in sites:
            return site.parent_id
        return site_id

    by_group: dict[int, list[admin.ResourceRow]] = {}
    for r in org.resources:
        site = sites.get(r.site_id)
        code = site.admin_code if site else ""
        if _matches(q, r.name, r.site_name, code):
            by_group.setdefault(group_of(r.site_id), []).append(r)
    order = sorted(by_group, key=lambda i: sites[i].admin_code if i in sites else "")
    groups = []
    for group_id in order:
        rows = by_group[group_id]
        rows.sort(key=lambda r: (r.site_id != group_id, sites[r.site_id].admin_code
                                 if r.site_id in sites else "", r.name))  # fmt: skip
        counts = [
            (label, n)
            for t, label in RESOURCE_TYPE_LABELS.items()
            if (n := sum(1 for r in rows if r.type == t))
        ]
        name = sites[group_id].name if group_id in sites else rows[0].site_name
        groups.append(
            ResourceGroup(
                group_id,
                name,
                rows,
                counts,
                sum(1 for r in rows if not r.active),
                any(r.site_id != group_id for r in rows),
            )
        )
    return groups


def _open_group(request: web.Request, org: admin.OrgOverview) -> int | None:
    """`?open=` names a site: its group (its street's, for a community point) opens."""
    value = request.query.get("open", "")
    if not value.isdigit():
        return None
    site = next((s for s in org.sites if s.id == int(value)), None)
    if site is not None and site.level == SiteLevel.community:
        return site.parent_id
    return int(value)


def _errors(e: ValidationError) -> dict[str, str]:
    return messages_by_field(e, _MESSAGES, default_field="name")


async def _render(
    request: web.Request,
    *,
    form: str = "",
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        org = await admin.overview(session)
    q = request.query.get("q", "").strip()[:64]
    key = q.casefold()
    sites = [s for s in org.sites if _matches(key, s.name, s.admin_code, s.address)]
    shown_sites = [s for s in sites if s.level != SiteLevel.community]
    departments = [d for d in org.departments if _matches(key, d.name, d.code)]
    communities = {s.id for s in sites if s.level == SiteLevel.community}
    return page(
        request,
        "admin/org.html",
        {
            "org": org,
            "q": q,
            "shown_sites": shown_sites,
            "shown_departments": departments,
            "shown_communities": communities,
            "resource_groups": (groups := _resource_groups(org, key)),
            "shown_resources": sum(len(g.rows) for g in groups),
            "open_site": _open_group(request, org),
            "form": form,
            "typed": typed or {},
            "errors": errors or {},
            "done": request.query.get("done", ""),
            "level_labels": SITE_LEVEL_LABELS,
            "type_labels": RESOURCE_TYPE_LABELS,
            "streets": [s for s in org.sites if s.level == SiteLevel.street],
            "parents": [s for s in org.sites if s.level != SiteLevel.community],
        },
        status=status,
    )


@protected(Action.settings_manage)
async def org_page(request: web.Request) -> web.Response:
    return await _render(request)


async def _submit(
    request: web.Request, form_name: str, model: type[BaseModel], apply: Any, done: str
) -> web.Response:
    staff = signed_in_staff(request)
    post = await request.post()
    typed = {k: str(v).strip() for k, v in post.items() if k != "_csrf"}
    try:
        data = model.model_validate(typed)
    except ValidationError as e:
        return await _render(request, form=form_name, typed=typed, errors=_errors(e), status=422)
    try:
        async with request.app[keys.db].begin() as session:
            await apply(session, data, staff.actor, client_ip(request))
        # the group that shows the change opens after the redirect
        site_id = getattr(data, "site_id", None)
        opened = f"&open={site_id}" if isinstance(site_id, int) else ""
    except AppError as e:
        field = str((e.details or {}).get("field") or "name")
        # a refused value is said as the field's own message, not the generic 输入有误
        message = (
            _MESSAGES.get(field, e.message_zh) if isinstance(e, InvalidInput) else (e.message_zh)
        )
        return await _render(
            request, form=form_name, typed=typed, errors={field: message}, status=e.http_status
        )
    raise web.HTTPSeeOther(f"/admin/org?done={done}{opened}#{form_name}")


@protected(Action.settings_manage)
async def site_add(request: web.Request) -> web.Response:
    async def apply(session: Any, d: SiteForm, actor: str, ip: str) -> None:
        await admin.add_site(
            session, name=d.name, admin_code=d.admin_code, level=d.level,
            parent_id=d.parent_id, address=d.address, actor=actor, ip=ip,
        )  # fmt: skip

    return await _submit(request, "site-add", SiteForm, apply, "site")


@protected(Action.settings_manage)
async def site_rename(request: web.Request) -> web.Response:
    site_id = path_int(request, "site_id")

    async def apply(session: Any, d: RenameForm, actor: str, ip: str) -> None:
        await admin.rename_site(
            session, site_id=site_id, name=d.name, address=d.address, actor=actor, ip=ip
        )

    return await _submit(request, f"site-{site_id}", RenameForm, apply, "renamed")


@protected(Action.settings_manage)
async def department_add(request: web.Request) -> web.Response:
    async def apply(session: Any, d: DepartmentForm, actor: str, ip: str) -> None:
        await admin.add_department(session, code=d.code, name=d.name, actor=actor, ip=ip)

    return await _submit(request, "department-add", DepartmentForm, apply, "department")


@protected(Action.settings_manage)
async def department_rename(request: web.Request) -> web.Response:
    dept_id = path_int(request, "department_id")

    async def apply(session: Any, d: RenameForm, actor: str, ip: str) -> None:
        await admin.rename_department(
            session, department_id=dept_id, name=d.name, actor=actor, ip=ip
        )

    return await _submit(request, f"department-{dept_id}", RenameForm, apply, "renamed")


@protected(Action.settings_manage)
async def resource_add(request: web.Request) -> web.Response:
    async def apply(session: Any, d: ResourceForm, actor: str, ip: str) -> None:
        await admin.add_resource(
            session, type_=d.type, name=d.name, site_id=d.site_id, capacity=d.capacity,
            actor=actor, ip=ip,
        )  # fmt: skip

    return await _submit(request, "resource-add", ResourceForm, apply, "resource")


@protected(Action.settings_manage)
async def resource_active(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    resource_id = path_int(request, "resource_id")
    active = str((await request.post()).get("active", "")) == "1"
    async with request.app[keys.db].begin() as session:
        site_id = await admin.set_resource_active(
            session, resource_id=resource_id, active=active, actor=staff.actor,
            ip=client_ip(request),
        )  # fmt: skip
    raise web.HTTPSeeOther(f"/admin/org?done=resource&open={site_id}#resources")


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/org", org_page)
    app.router.add_post("/admin/org/sites", site_add)
    app.router.add_post(r"/admin/org/sites/{site_id:\d+}", site_rename)
    app.router.add_post("/admin/org/departments", department_add)
    app.router.add_post(r"/admin/org/departments/{department_id:\d+}", department_rename)
    app.router.add_post("/admin/org/resources", resource_add)
    app.router.add_post(r"/admin/org/resources/{resource_id:\d+}/active", resource_active)
