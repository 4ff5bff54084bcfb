"""`onedoor demo load`: the demo district from server/demo/district.json (reference data).

1 centre with 12 resident departments (7 windows + 5 legal-route rooms), 10 street stations
with a mediation room and a video terminal each, 94 community points with a video terminal,
and staff for every role. Loading twice changes nothing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.passwords import hash_password
from server.cases.catalogue import load_case_reference
from server.cases.holiday_calendar import load_shipped
from server.kernel.db import utcnow
from server.org.models import (
    Department,
    LegalRoute,
    Resource,
    ResourceType,
    Role,
    Site,
    SiteLevel,
    Staff,
    StaffRole,
)


@dataclass(frozen=True, slots=True)
class DemoResult:
    created: bool
    password: str | None
    sites: int
    staff: int


def load_reference() -> dict[str, Any]:
    text = resources.files("server").joinpath("demo/district.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class _Names:
    def __init__(self, data: dict[str, Any]) -> None:
        self._surnames: str = data["surnames"]
        self._given: list[str] = data["given_names"]
        self._i = 0

    def next(self) -> str:
        i = self._i
        self._i += 1
        return (
            self._surnames[(i * 7) % len(self._surnames)] + self._given[(i * 11) % len(self._given)]
        )


async def load_demo(session: AsyncSession, *, password: str | None = None) -> DemoResult:
    if await session.scalar(select(Site.id).limit(1)) is not None:
        return DemoResult(created=False, password=None, sites=0, staff=0)
    data = load_reference()
    password = password or secrets.token_urlsafe(9) + "9a"
    # One hash for every demo account (all share the printed password): demo data only.
    pw_hash = await hash_password(password)
    names = _Names(data)
    people: list[tuple[str, Site, list[Role], Department | None]] = []

    def person(
        username: str, site: Site, roles: list[Role], dept: Department | None = None
    ) -> None:
        people.append((username, site, roles, dept))

    d = data["district"]
    centre = Site(
        level=SiteLevel.district, admin_code=d["admin_code"], name=d["name"], address=d["address"]
    )
    session.add(centre)
    await session.flush()
    departments: list[Department] = []
    for dept_data in data["departments"]:
        route = dept_data["legal_route"]
        dept = Department(
            code=dept_data["code"],
            name=dept_data["name"],
            resident=True,
            legal_route=LegalRoute(route) if route else None,
        )
        departments.append(dept)
    session.add_all(departments)
    await session.flush()
    window_no = room_no = 0
    for dept in departments:
        if dept.legal_route is None:
            window_no += 1
            session.add(
                Resource(
                    type=ResourceType.window,
                    name=f"{window_no}号综合窗口（{dept.name}）",
                    site_id=centre.id,
                    department_id=dept.id,
                )
            )
        else:
            room_no += 1
            session.add(
                Resource(
                    type=ResourceType.legal_room,
                    name=f"{dept.name}接谈室",
                    site_id=centre.id,
                    department_id=dept.id,
                    capacity=6,
                )
            )
    mediation_dept = next(x for x in departments if x.legal_route == LegalRoute.mediation)
    session.add_all(
        [
            Resource(
                type=ResourceType.mediation_room,
                name="联合调处室一",
                site_id=centre.id,
                capacity=10,
            ),
            Resource(
                type=ResourceType.mediation_room, name="联合调处室二", site_id=centre.id, capacity=8
            ),
            Resource(type=ResourceType.video_terminal, name="远程视频接访席一", site_id=centre.id),
            Resource(type=ResourceType.video_terminal, name="远程视频接访席二", site_id=centre.id),
            Resource(type=ResourceType.kiosk, name="大厅网上信访自助机", site_id=centre.id),
        ]
    )

    # centre staff
    for i, dept in enumerate(departments, start=1):
        if dept.legal_route is None:
            person(f"window{i:02d}", centre, [Role.window_officer], dept)
        person(f"handler{i:02d}", centre, [Role.dept_handler], dept)
        person(f"leader{i:02d}", centre, [Role.dept_leader], dept)
    for i in range(1, 4):
        person(f"mediator{i:02d}", centre, [Role.mediator], mediation_dept)
    court_dept = next(x for x in departments if x.legal_route == LegalRoute.litigation)
    person("court01", centre, [Role.court_liaison], court_dept)
    person("supervisor01", centre, [Role.centre_supervisor])
    person("supervisor02", centre, [Role.centre_supervisor])
    person("dleader01", centre, [Role.supervising_leader])
    person("expert01", centre, [Role.expert])
    person("expert02", centre, [Role.expert])
    person("sysadmin", centre, [Role.sys_admin])
    person("secadmin", centre, [Role.sec_admin])
    person("auditadmin", centre, [Role.audit_admin])

    community_names: list[str] = data["community_names"]
    c_index = 0
    site_count = 1
    for s_index, street_data in enumerate(data["streets"]):
        street = Site(
            level=SiteLevel.street,
            parent_id=centre.id,
            admin_code=f"{d['admin_code']}{street_data['code']}",
            name=street_data["name"],
            address=f"{d['address']}{street_data['name']}",
        )
        session.add(street)
        await session.flush()
        site_count += 1
        session.add_all(
            [
                Resource(
                    type=ResourceType.mediation_room,
                    name=f"{street.name}调解室",
                    site_id=street.id,
                    capacity=8,
                ),
                Resource(
                    type=ResourceType.video_terminal,
                    name=f"{street.name}视频接访终端",
                    site_id=street.id,
                ),
            ]
        )
        person(f"coord{s_index + 1:02d}", street, [Role.street_coordinator])
        for c in range(data["community_counts"][s_index]):
            cname = community_names[c_index]
            c_index += 1
            community = Site(
                level=SiteLevel.community,
                parent_id=street.id,
                admin_code=f"{street.admin_code}{c + 1:03d}",
                name=f"{cname}社区",
                address=f"{street.address}{cname}社区",
            )
            session.add(community)
            await session.flush()
            site_count += 1
            session.add(
                Resource(
                    type=ResourceType.video_terminal,
                    name=f"{community.name}代办点视频终端",
                    site_id=community.id,
                )
            )
            person(f"agent{c_index:03d}", community, [Role.community_agent])
    session.add_all(
        Staff(
            username=username,
            display_name=names.next(),
            password_hash=pw_hash,
            site_id=site.id,
            department_id=dept.id if dept else None,
            # Clearly fake mainland mobiles (138 0000 xxxx), so invites and reminders have
            # somewhere to go in the demo.
            phone=f"1380000{n:04d}",
            roles=[StaffRole(role=r) for r in roles],
        )
        for n, (username, site, roles, dept) in enumerate(people, start=1)
    )
    await session.flush()
    await load_case_reference(session)
    await load_shipped(session, actor="demo", now=utcnow())
    return DemoResult(created=True, password=password, sites=site_count, staff=len(people))
