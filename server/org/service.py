"""Organisation queries and staff administration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.passwords import check_password_policy, hash_password
from server.auth.permissions import check_role_combination
from server.kernel.errors import Conflict, InvalidInput, NotFound
from server.org.models import Department, Resource, Role, Site, SiteLevel, Staff, StaffRole
from server.org.schemas import (
    NamedRef,
    NewStaff,
    ResourceView,
    SiteDetail,
    SiteNode,
    StaffAccountView,
    StaffPage,
    StaffView,
)


async def site_tree(session: AsyncSession) -> list[SiteNode]:
    sites = (await session.scalars(select(Site).order_by(Site.admin_code))).all()
    children: dict[int | None, list[Site]] = defaultdict(list)
    for site in sites:
        children[site.parent_id].append(site)

    def build(site: Site) -> SiteNode:
        return SiteNode(
            id=site.id,
            name=site.name,
            level=site.level,
            admin_code=site.admin_code,
            children=[build(c) for c in children[site.id]],
        )

    return [build(root) for root in children[None]]


async def site_detail(session: AsyncSession, *, site_id: int) -> SiteDetail:
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    departments = {d.id: d.name for d in (await session.scalars(select(Department))).all()}
    resources = (
        await session.scalars(
            select(Resource).where(Resource.site_id == site_id).order_by(Resource.id)
        )
    ).all()
    staff = (
        await session.scalars(select(Staff).where(Staff.site_id == site_id).order_by(Staff.id))
    ).all()
    return SiteDetail(
        id=site.id,
        name=site.name,
        level=site.level,
        admin_code=site.admin_code,
        address=site.address,
        parent_id=site.parent_id,
        resources=[
            ResourceView(
                id=r.id,
                type=r.type,
                name=r.name,
                capacity=r.capacity,
                department=departments.get(r.department_id or 0),
            )
            for r in resources
        ],
        staff=[
            StaffView(
                id=s.id,
                username=s.username,
                display_name=s.display_name,
                department=departments.get(s.department_id or 0),
                roles=sorted(s.role_set),
            )
            for s in staff
        ],
    )


async def departments(session: AsyncSession) -> list[NamedRef]:
    """Every department, in creation order (a form's choice list)."""
    rows = await session.execute(select(Department.id, Department.name).order_by(Department.id))
    return [NamedRef(id=i, name=n) for i, n in rows.all()]


async def sites(session: AsyncSession, *, community: bool) -> list[NamedRef]:
    """The community points (community=True) or the centre and streets (False), by id."""
    level = Site.level == SiteLevel.community if community else Site.level != SiteLevel.community
    rows = await session.execute(select(Site.id, Site.name).where(level).order_by(Site.id))
    return [NamedRef(id=i, name=n) for i, n in rows.all()]


async def site_or_district(session: AsyncSession, *, site_id: int | None) -> int:
    """`site_id` if that site exists, else the district centre's (a kiosk without a valid
    site parameter registers there).

    Raises:
        NotFound: no such site and no district site configured.
    """
    if site_id is not None and await session.get(Site, site_id) is not None:
        return site_id
    district = await session.scalar(
        select(Site.id).where(Site.level == SiteLevel.district).limit(1)
    )
    if district is None:
        raise NotFound("no district site configured")
    return int(district)


async def staff_name(session: AsyncSession, *, staff_id: int) -> str | None:
    """A staff member's display name; None if there is no such staff member."""
    row = await session.get(Staff, staff_id)
    return row.display_name if row is not None else None


async def staff_username(session: AsyncSession, *, staff_id: int) -> str | None:
    """A staff member's user name; None if there is no such staff member."""
    row = await session.get(Staff, staff_id)
    return row.username if row is not None else None


async def staff_by_username(session: AsyncSession, *, username: str) -> NamedRef | None:
    """(id, display name) of the staff member signing in as `username`; None if there is none."""
    row = await session.scalar(select(Staff).where(Staff.username == username))
    return NamedRef(id=row.id, name=row.display_name) if row is not None else None


async def staff_department(session: AsyncSession, *, staff_id: int) -> int | None:
    """The department of staff member `staff_id` (None: none, or no such staff member)."""
    return await session.scalar(select(Staff.department_id).where(Staff.id == staff_id))


async def active_staff_with_roles(
    session: AsyncSession, *, roles: Iterable[Role], limit: int = 200
) -> list[tuple[str, str]]:
    """(user name, display name) of active staff holding any of `roles`, by user name."""
    rows = (
        await session.execute(
            select(Staff.username, Staff.display_name)
            .join(StaffRole, StaffRole.staff_id == Staff.id)
            .where(StaffRole.role.in_(tuple(roles)))
            .where(Staff.active.is_(True))
            .distinct()
            .order_by(Staff.username)
            .limit(limit)
        )
    ).all()
    return [(str(u), str(n)) for u, n in rows]


async def resource_name(session: AsyncSession, *, resource_id: int) -> str | None:
    """A resource's name; None if there is no such resource."""
    row = await session.get(Resource, resource_id)
    return row.name if row is not None else None


async def add_staff(session: AsyncSession, *, new: NewStaff, password: str) -> StaffView:
    """Create a staff account. Raises InvalidInput / Conflict before writing anything."""
    try:
        check_role_combination(new.roles)
        check_password_policy(password)
    except ValueError as e:
        raise InvalidInput(str(e)) from e
    if not new.roles:
        raise InvalidInput("a staff member needs at least one role")
    site = await session.scalar(select(Site).where(Site.admin_code == new.site_admin_code))
    if site is None:
        raise NotFound(f"no site with administrative code {new.site_admin_code}")
    dept = None
    if new.department_code:
        dept = await session.scalar(
            select(Department).where(Department.code == new.department_code)
        )
        if dept is None:
            raise NotFound(f"no department {new.department_code}")
    if await session.scalar(select(Staff.id).where(Staff.username == new.username)):
        raise Conflict(f"username {new.username} is taken")
    staff = Staff(
        username=new.username,
        display_name=new.display_name,
        password_hash=await hash_password(password),
        site_id=site.id,
        department_id=dept.id if dept else None,
        roles=[StaffRole(role=r) for r in sorted(set(new.roles))],
    )
    session.add(staff)
    await session.flush()
    return StaffView(
        id=staff.id,
        username=staff.username,
        display_name=staff.display_name,
        department=dept.name if dept else None,
        roles=sorted(staff.role_set),
    )


async def site_name(session: AsyncSession, *, site_id: int | None) -> str:
    """The site's name, or "" for no site or an unknown one."""
    if site_id is None:
        return ""
    name = await session.scalar(select(Site.name).where(Site.id == site_id))
    return name or ""


async def site_names(session: AsyncSession, *, site_ids: set[int]) -> dict[int, str]:
    if not site_ids:
        return {}
    rows = await session.execute(select(Site.id, Site.name).where(Site.id.in_(sorted(site_ids))))
    return {int(site_id): str(name) for site_id, name in rows.tuples()}


async def staff_names(session: AsyncSession, *, staff_ids: set[int]) -> dict[int, str]:
    """Display names of these staff members (unknown ids are left out)."""
    if not staff_ids:
        return {}
    rows = await session.execute(
        select(Staff.id, Staff.display_name).where(Staff.id.in_(sorted(staff_ids)))
    )
    return {int(i): str(n) for i, n in rows.tuples()}


async def department_names(session: AsyncSession, *, department_ids: set[int]) -> dict[int, str]:
    """Names of these departments (unknown ids are left out)."""
    if not department_ids:
        return {}
    rows = await session.execute(
        select(Department.id, Department.name).where(Department.id.in_(sorted(department_ids)))
    )
    return {int(i): str(n) for i, n in rows.tuples()}


# --- account administration (sys_admin: staff.manage; role grants: sec_admin, roles.manage) ---


class UsernameTaken(Conflict):
    code, message_zh = "username_taken", "该用户名已被使用"


def _account_view(staff: Staff, sites: dict[int, str], depts: dict[int, str]) -> StaffAccountView:
    return StaffAccountView(
        id=staff.id,
        username=staff.username,
        display_name=staff.display_name,
        site_id=staff.site_id,
        site=sites.get(staff.site_id, ""),
        department_id=staff.department_id,
        department=depts.get(staff.department_id) if staff.department_id else None,
        roles=sorted(staff.role_set),
        active=staff.active,
    )


async def list_accounts(
    session: AsyncSession, *, query: str = "", offset: int = 0, limit: int = 20
) -> StaffPage:
    """Accounts by username, filtered by a substring of the username or display name."""
    stmt = select(Staff)
    if query:
        like = f"%{query.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(Staff.username.ilike(like) | Staff.display_name.ilike(like))
    total = len((await session.scalars(stmt.with_only_columns(Staff.id))).all())
    rows = (
        await session.scalars(stmt.order_by(Staff.username).offset(max(offset, 0)).limit(limit))
    ).all()
    sites = await site_names(session, site_ids={r.site_id for r in rows})
    depts = await department_names(
        session, department_ids={r.department_id for r in rows if r.department_id}
    )
    return StaffPage(
        items=[_account_view(r, sites, depts) for r in rows],
        total=total,
        offset=max(offset, 0),
        limit=limit,
    )


async def account(session: AsyncSession, *, staff_id: int) -> StaffAccountView:
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    sites = await site_names(session, site_ids={staff.site_id})
    depts = await department_names(
        session, department_ids={staff.department_id} if staff.department_id else set()
    )
    return _account_view(staff, sites, depts)


async def _check_placement(
    session: AsyncSession, *, site_id: int, department_id: int | None
) -> None:
    if await session.get(Site, site_id) is None:
        raise InvalidInput(f"no site {site_id}", field="site_id")
    if department_id is not None and await session.get(Department, department_id) is None:
        raise InvalidInput(f"no department {department_id}", field="department_id")


async def create_account(
    session: AsyncSession,
    *,
    username: str,
    display_name: str,
    site_id: int,
    department_id: int | None,
    password: str,
    actor: str,
    ip: str = "",
) -> StaffAccountView:
    """A staff account with no role (the security administrator grants roles: 三员分立). The
    initial password is one the administrator knows: it must be changed at the first sign-in.

    Raises:
        InvalidInput: password policy (field "password"), unknown site or department.
        UsernameTaken: the username exists.
    """
    try:
        check_password_policy(password)
    except ValueError as e:
        raise InvalidInput(str(e), field="password") from e
    await _check_placement(session, site_id=site_id, department_id=department_id)
    if await session.scalar(select(Staff.id).where(Staff.username == username)):
        raise UsernameTaken(f"username {username} is taken")
    staff = Staff(
        username=username,
        display_name=display_name,
        password_hash=await hash_password(password),
        site_id=site_id,
        department_id=department_id,
        must_change_password=True,  # the administrator knows it: the owner chooses their own
        roles=[],
    )
    session.add(staff)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="staff.create",
        object_type="staff",
        object_id=str(staff.id),
        ip=ip,
        detail={
            "username": username,
            "display_name": display_name,
            "site_id": site_id,
            "department_id": department_id,
        },
    )
    return await account(session, staff_id=staff.id)


async def update_account(
    session: AsyncSession,
    *,
    staff_id: int,
    display_name: str,
    site_id: int,
    department_id: int | None,
    actor: str,
    ip: str = "",
) -> StaffAccountView:
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    await _check_placement(session, site_id=site_id, department_id=department_id)
    before = {
        "display_name": staff.display_name,
        "site_id": staff.site_id,
        "department_id": staff.department_id,
    }
    after = {"display_name": display_name, "site_id": site_id, "department_id": department_id}
    staff.display_name, staff.site_id, staff.department_id = display_name, site_id, department_id
    await session.flush()
    changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changed:
        await record(
            session,
            actor=actor,
            action="staff.update",
            object_type="staff",
            object_id=str(staff_id),
            ip=ip,
            detail={"changed": changed},
        )
    return await account(session, staff_id=staff_id)


async def set_account_active(
    session: AsyncSession, *, staff_id: int, active: bool, actor: str, ip: str = ""
) -> None:
    """Disable or enable an account (a disabled account cannot sign in; its sessions end at
    their next request). An administrator cannot disable their own account."""
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    if actor == f"staff:{staff_id}" and not active:
        raise Conflict("an administrator cannot disable their own account")
    if staff.active == active:
        return
    staff.active = active
    await session.flush()
    await record(
        session,
        actor=actor,
        action="staff.enable" if active else "staff.disable",
        object_type="staff",
        object_id=str(staff_id),
        ip=ip,
        detail={"username": staff.username},
    )


async def reset_password(
    session: AsyncSession, *, staff_id: int, password: str, actor: str, ip: str = ""
) -> None:
    """The system administrator sets a new one-time password (a forgotten password): it must be
    changed at the next sign-in. An administrator cannot reset their own this way.

    Raises:
        NotFound: no such account. Conflict: the administrator's own account.
        InvalidInput: password policy (field "password").
    """
    staff = await session.get(Staff, staff_id)
    if staff is None:
        raise NotFound(f"staff {staff_id} does not exist")
    if actor == f"staff:{staff_id}":
        raise Conflict("an administrator changes their own password at /account/password")
    try:
        check_password_policy(password)
    except ValueError as e:
        raise InvalidInput(str(e), field="password") from e
    staff.password_hash = await hash_password(password)
    staff.must_change_password = True
    await session.flush()
    await record(
        session,
        actor=actor,
        action="staff.password_reset",
        object_type="staff",
        object_id=str(staff_id),
        ip=ip,
        detail={"username": staff.username},
    )
