"""The organisation as the system administrator keeps it (settings.manage, issue #15 item 6):
sites (the centre, streets, community points), departments, and the rooms and windows that are
booked (resources). Create, rename, and take a room or window out of use; nothing is deleted
(cases, sessions and bookings refer to them). Every change is audited with before and after."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.kernel.errors import Conflict, InvalidInput, NotFound
from server.org.models import Department, Resource, ResourceType, Site, SiteLevel

#: A site's parent level by its own level.
PARENT_LEVEL = {SiteLevel.street: SiteLevel.district, SiteLevel.community: SiteLevel.street}


class CodeTaken(Conflict):
    code, message_zh = "code_taken", "该代码已被使用，请换一个"


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: int
    name: str
    level: SiteLevel
    admin_code: str
    address: str
    parent_id: int | None
    children: int


@dataclass(frozen=True, slots=True)
class DepartmentRow:
    id: int
    code: str
    name: str
    resident: bool


@dataclass(frozen=True, slots=True)
class ResourceRow:
    id: int
    type: ResourceType
    name: str
    site_id: int
    site_name: str
    capacity: int
    active: bool


@dataclass(frozen=True, slots=True)
class OrgOverview:
    sites: list[SiteRow]
    departments: list[DepartmentRow]
    resources: list[ResourceRow]


async def overview(session: AsyncSession) -> OrgOverview:
    rows = await session.execute(select(Site.parent_id, func.count()).group_by(Site.parent_id))
    counts: dict[int | None, int] = {parent: int(n) for parent, n in rows.all()}
    sites = [
        SiteRow(s.id, s.name, s.level, s.admin_code, s.address, s.parent_id, counts.get(s.id, 0))
        for s in await session.scalars(select(Site).order_by(Site.admin_code))
    ]
    names = {s.id: s.name for s in sites}
    departments = [
        DepartmentRow(d.id, d.code, d.name, d.resident)
        for d in await session.scalars(select(Department).order_by(Department.code))
    ]
    resources = [
        ResourceRow(r.id, r.type, r.name, r.site_id, names.get(r.site_id, ""), r.capacity, r.active)
        for r in await session.scalars(select(Resource).order_by(Resource.site_id, Resource.name))
    ]
    return OrgOverview(sites, departments, resources)


async def add_site(
    session: AsyncSession,
    *,
    name: str,
    admin_code: str,
    level: SiteLevel,
    parent_id: int | None,
    address: str,
    actor: str,
    ip: str = "",
) -> int:
    """A new street or community point under the right parent.

    Raises:
        InvalidInput: the parent is missing or of the wrong level (field parent_id).
        CodeTaken: the administrative code exists (field admin_code).
    """
    if level == SiteLevel.district:
        raise InvalidInput("the district centre exists already", field="level")
    parent = await session.get(Site, parent_id) if parent_id else None
    if parent is None or parent.level != PARENT_LEVEL[level]:
        raise InvalidInput(f"a {level} belongs to a {PARENT_LEVEL[level]}", field="parent_id")
    if await session.scalar(select(Site.id).where(Site.admin_code == admin_code)) is not None:
        raise CodeTaken(f"site code {admin_code} is taken", field="admin_code")
    site = Site(level=level, parent_id=parent.id, admin_code=admin_code, name=name, address=address)
    session.add(site)
    await session.flush()
    await record(
        session, actor=actor, action="org.site_add", object_type="site", object_id=str(site.id),
        ip=ip, detail={"name": name, "admin_code": admin_code, "level": str(level)},
    )  # fmt: skip
    return site.id


async def rename_site(
    session: AsyncSession, *, site_id: int, name: str, address: str, actor: str, ip: str = ""
) -> None:
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    before = {"name": site.name, "address": site.address}
    site.name, site.address = name, address
    await record(
        session, actor=actor, action="org.site_update", object_type="site",
        object_id=str(site_id), ip=ip,
        detail={"before": before, "after": {"name": name, "address": address}},
    )  # fmt: skip


async def add_department(
    session: AsyncSession, *, code: str, name: str, actor: str, ip: str = ""
) -> int:
    """A department of the centre. Raises CodeTaken (field code)."""
    if await session.scalar(select(Department.id).where(Department.code == code)) is not None:
        raise CodeTaken(f"department code {code} is taken", field="code")
    dept = Department(code=code, name=name, resident=True)
    session.add(dept)
    await session.flush()
    await record(
        session, actor=actor, action="org.department_add", object_type="department",
        object_id=str(dept.id), ip=ip, detail={"code": code, "name": name},
    )  # fmt: skip
    return dept.id


async def rename_department(
    session: AsyncSession, *, department_id: int, name: str, actor: str, ip: str = ""
) -> None:
    dept = await session.get(Department, department_id)
    if dept is None:
        raise NotFound(f"department {department_id} does not exist")
    before = dept.name
    dept.name = name
    await record(
        session, actor=actor, action="org.department_update", object_type="department",
        object_id=str(department_id), ip=ip, detail={"before": before, "after": name},
    )  # fmt: skip


async def add_resource(
    session: AsyncSession,
    *,
    type_: ResourceType,
    name: str,
    site_id: int,
    capacity: int,
    actor: str,
    ip: str = "",
) -> int:
    """A window, room or terminal at a site. Raises InvalidInput (field site_id)."""
    if await session.get(Site, site_id) is None:
        raise InvalidInput("no such site", field="site_id")
    res = Resource(type=type_, name=name, site_id=site_id, capacity=capacity, active=True)
    session.add(res)
    await session.flush()
    await record(
        session, actor=actor, action="org.resource_add", object_type="resource",
        object_id=str(res.id), ip=ip,
        detail={"type": str(type_), "name": name, "site_id": site_id, "capacity": capacity},
    )  # fmt: skip
    return res.id


async def set_resource_active(
    session: AsyncSession, *, resource_id: int, active: bool, actor: str, ip: str = ""
) -> int:
    """Take a room or window out of use (it is no longer offered for booking) or back in;
    returns its site's id."""
    res = await session.get(Resource, resource_id)
    if res is None:
        raise NotFound(f"resource {resource_id} does not exist")
    res.active = active
    await record(
        session, actor=actor, action="org.resource_active", object_type="resource",
        object_id=str(resource_id), ip=ip, detail={"active": active},
    )  # fmt: skip
    return res.site_id
