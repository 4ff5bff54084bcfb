"""Every intake channel goes through the one intake pipeline (issue #17, items 1 and 4).

A petition registered at the kiosk (自助机) or accepted on the video desk (远程视频接访) gets
what the window's REST intake gives it: the category and confidentiality of its matter type,
the matter type's competent department as lead (never the accused unit, never whoever
answered), the 15-day acceptance deadline (受理告知); and an accusation (检举控告) is kept
from the accused unit: not on its desk, not readable, not claimable, not exported."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.auth import csrf
from server.cases.models import CaseDeadline, PetitionCase
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Department, Site, SiteLevel, Staff
from tests.conftest import csrf_token, make_settings, sign_in

Client = TestClient[Any, Any]

#: The demo district: window01 sits at the hrss window, window03 at the urban one.
OFFICER, ACCUSED_OFFICER, AGENT, SUPERVISOR = "window01", "window03", "agent001", "supervisor01"
ACCUSED = "urban"
ACCUSATION = "official_misconduct"
ACCEPTANCE = 15
DISTRICT = ZoneInfo("Asia/Shanghai")


def local_day(at: datetime) -> date:
    return at.astimezone(DISTRICT).date()


def last_day(due: datetime) -> date:
    return local_day(due - timedelta(microseconds=1))


@pytest.fixture
async def client(tmp_path: Path, demo_db_url: str) -> AsyncIterator[Client]:
    # the channels register today: without the holiday roll-over (test_deadline_settings) the
    # acceptance clock is the statutory 15 days whatever today is
    app = create_app(make_settings(tmp_path, demo_db_url, deadline_holiday_rollover="none"))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def as_user(client: Client, username: str) -> str:
    """Sign out whoever is signed in and sign in as `username`; returns the CSRF token."""
    client.session.cookie_jar.clear()
    return await sign_in(client, username)


async def dept_of(db: async_sessionmaker[AsyncSession], code: str) -> int:
    async with db() as s:
        found = await s.scalar(select(Department.id).where(Department.code == code))
    assert found is not None
    return found


async def centre(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as s:
        found = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
    assert found is not None
    return found


async def staff_dept(db: async_sessionmaker[AsyncSession], username: str) -> int | None:
    async with db() as s:
        return await s.scalar(select(Staff.department_id).where(Staff.username == username))


# ------------------------------------------------------------------ the channels


async def via_kiosk(
    client: Client, db: async_sessionmaker[AsyncSession], matter: str, phone: str, accused: str
) -> int:
    client.session.cookie_jar.clear()
    token = await csrf_token(client)
    resp = await client.post(
        "/kiosk",
        data={"_csrf": token, "matter_code": matter, "description": "反映情况，请依法处理",
              "name": "赵六", "phone": phone, "site": str(await centre(db)),
              "accused_department": accused},
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    match = re.search(r'id="case-no">([^<]+)<', await resp.text())
    assert match
    async with db() as s:
        case_id = await s.scalar(select(PetitionCase.id).where(PetitionCase.case_no == match[1]))
    assert case_id is not None
    return case_id


async def place_call(client: Client, matter: str, phone: str, accused: str) -> int:
    token = await as_user(client, AGENT)
    resp = await client.post(
        "/call",
        data={"_csrf": token, "matter_code": matter, "resident_name": "赵六",
              "resident_phone": phone, "accused_department": accused},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def accept_call(client: Client, entry_id: int, officer: str) -> Any:
    token = await as_user(client, officer)
    return await client.post(
        f"/desk/calls/{entry_id}/accept",
        data={"_csrf": token},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )


async def via_video(
    client: Client, db: async_sessionmaker[AsyncSession], matter: str, phone: str, accused: str
) -> int:
    entry_id = await place_call(client, matter, phone, accused)
    resp = await accept_call(client, entry_id, OFFICER)
    assert resp.status == 303, await resp.text()
    async with db() as s:
        case_id = await s.scalar(select(PetitionCase.id).order_by(PetitionCase.id.desc()).limit(1))
    assert case_id is not None
    return case_id


async def via_rest(
    client: Client,
    db: async_sessionmaker[AsyncSession],
    matter: str,
    phone: str,
    accused: str,
    *,
    username: str,
    channel: str,
) -> int:
    token = await as_user(client, username)
    async with db() as s:
        site = await s.scalar(select(Staff.site_id).where(Staff.username == username))
    body: dict[str, Any] = {
        "channel": channel,
        "site_id": site,
        "summary": "反映情况，请依法处理",
        "matter_type": matter,
        "petitioner": {"name": "赵六", "phone": phone},
        "attributes": {"accused": "区城管局某中队"} if matter == ACCUSATION else {},
        "accused_department_id": int(accused) if accused else None,
        "on_behalf_consent": channel == "agent",
    }
    resp = await client.post("/api/cases", json=body, headers={csrf.HEADER: token})
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["case"]["id"])


async def via_window(
    client: Client, db: async_sessionmaker[AsyncSession], matter: str, phone: str, accused: str
) -> int:
    return await via_rest(client, db, matter, phone, accused, username=OFFICER, channel="window")


async def via_agent(
    client: Client, db: async_sessionmaker[AsyncSession], matter: str, phone: str, accused: str
) -> int:
    return await via_rest(client, db, matter, phone, accused, username=AGENT, channel="agent")


#: (client, db, matter type, petitioner's phone, accused department id or "") -> case id
Register = Callable[[Client, async_sessionmaker[AsyncSession], str, str, str], Awaitable[int]]
CHANNELS: dict[str, Register] = {
    "window": via_window,
    "agent": via_agent,
    "kiosk": via_kiosk,
    "video": via_video,
}


@dataclass(frozen=True)
class Outcome:
    category: str | None
    confidential: bool
    lead_dept_id: int | None
    accused_dept_id: int | None
    #: (kind, status, days from the local day it starts to the last local day it runs: the
    #: due instant is the end of that day)
    deadlines: tuple[tuple[str, str, int], ...]


async def outcome(db: async_sessionmaker[AsyncSession], case_id: int) -> Outcome:
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None
        deadlines = (
            await s.scalars(
                select(CaseDeadline)
                .where(CaseDeadline.case_id == case_id)
                .order_by(CaseDeadline.kind)
            )
        ).all()
        return Outcome(
            category=row.category,
            confidential=row.confidential,
            lead_dept_id=row.lead_dept_id,
            accused_dept_id=row.accused_dept_id,
            deadlines=tuple(
                (d.kind, d.status, (last_day(d.due_at) - local_day(d.start_at)).days)
                for d in deadlines
            ),
        )


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize(
    ("matter", "accused", "category", "lead"),
    [
        ("elderly_care", None, "appeal", "civil"),
        (ACCUSATION, ACCUSED, "accusation", None),
    ],
)
async def test_the_same_petition_through_every_channel_gets_the_same_case(
    client: Client,
    db: async_sessionmaker[AsyncSession],
    matter: str,
    accused: str | None,
    category: str,
    lead: str | None,
) -> None:
    accused_id = str(await dept_of(db, accused)) if accused else ""
    results: dict[str, Outcome] = {}
    for n, (name, register) in enumerate(CHANNELS.items()):
        # a different petitioner per channel, so that none is a repeat of another
        case_id = await register(client, db, matter, f"1391234{n:04d}", accused_id)
        results[name] = await outcome(db, case_id)
    expected = Outcome(
        category=category,
        confidential=accused is not None,
        lead_dept_id=await dept_of(db, lead) if lead else None,
        accused_dept_id=int(accused_id) if accused_id else None,
        deadlines=(("acceptance", "open", ACCEPTANCE),),
    )
    assert results == dict.fromkeys(CHANNELS, expected)


async def assert_hidden_from_the_accused_unit(
    client: Client, db: async_sessionmaker[AsyncSession], case_id: int
) -> None:
    assert await staff_dept(db, ACCUSED_OFFICER) == await dept_of(db, ACCUSED)
    token = await as_user(client, ACCUSED_OFFICER)
    assert (await client.get(f"/cases/{case_id}")).status == 404
    api = await client.get(f"/api/cases/{case_id}")
    assert api.status == 404 and (await api.json())["error"] == "case_not_found"
    claim = await client.post(f"/api/cases/{case_id}/claim", json={}, headers={csrf.HEADER: token})
    assert claim.status == 404 and (await claim.json())["error"] == "case_not_found"
    listed = await client.get("/api/cases")
    assert case_id not in {c["id"] for c in (await listed.json())["items"]}
    # the export (the centre's exchange file) carries no confidential case
    await as_user(client, SUPERVISOR)
    export = await client.get("/api/cases/export")
    assert export.status == 200, await export.text()
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None
    assert row.case_no not in await export.text()


async def test_a_kiosk_accusation_is_confidential_and_kept_from_the_accused_unit(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    accused = await dept_of(db, ACCUSED)
    case_id = await via_kiosk(client, db, ACCUSATION, "13912340001", str(accused))
    got = await outcome(db, case_id)
    assert (got.category, got.confidential, got.accused_dept_id) == ("accusation", True, accused)
    assert got.lead_dept_id != accused
    assert got.deadlines == (("acceptance", "open", ACCEPTANCE),)
    await assert_hidden_from_the_accused_unit(client, db, case_id)
    # anyone else at the site may claim it (认领) and becomes its first receiver
    token = await as_user(client, OFFICER)
    claimed = await client.post(
        f"/api/cases/{case_id}/claim", json={}, headers={csrf.HEADER: token}
    )
    assert claimed.status == 200, await claimed.text()
    assert (await client.get(f"/api/cases/{case_id}")).status == 200
    await assert_hidden_from_the_accused_unit(client, db, case_id)


async def test_a_video_accusation_is_not_answered_by_the_accused_unit(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    accused = await dept_of(db, ACCUSED)
    entry_id = await place_call(client, ACCUSATION, "13912340002", str(accused))
    # the accused unit's officer does not see the call, and cannot accept it
    await as_user(client, ACCUSED_OFFICER)
    assert (await (await client.get("/api/queue")).json())["waiting"] == []
    refused = await accept_call(client, entry_id, ACCUSED_OFFICER)
    assert refused.status == 404, await refused.text()
    async with db() as s:
        assert await s.scalar(select(PetitionCase.id).limit(1)) is None
    # another officer does: the case is confidential, with its clock, not led by the answerer
    await as_user(client, OFFICER)
    assert [e["id"] for e in (await (await client.get("/api/queue")).json())["waiting"]] == [
        entry_id
    ]
    case_id = await via_video_accept(client, db, entry_id)
    got = await outcome(db, case_id)
    assert (got.category, got.confidential, got.accused_dept_id) == ("accusation", True, accused)
    assert got.lead_dept_id not in (accused, await staff_dept(db, OFFICER))
    assert got.deadlines == (("acceptance", "open", ACCEPTANCE),)
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and row.channel.value == "video"
        first = await s.scalar(select(Staff.id).where(Staff.username == OFFICER))
        assert row.first_receiver_id == first
    # nor can the call be handed over to, or shared with, the accused unit
    token = await as_user(client, OFFICER)
    for step in ("handover", "invite"):
        blocked = await client.post(
            f"/desk/calls/{entry_id}/{step}",
            data={"_csrf": token, "username": ACCUSED_OFFICER, "note": "请协助"},
            headers={"Accept": "application/json"},
            allow_redirects=False,
        )
        assert blocked.status == 403, await blocked.text()
        assert (await blocked.json())["error"] == "confidential_transfer_blocked"
    shared = await client.post(
        f"/desk/calls/{entry_id}/invite",
        data={"_csrf": token, "username": "window02", "note": "请协助"},
        allow_redirects=False,
    )
    assert shared.status == 200, await shared.text()
    await assert_hidden_from_the_accused_unit(client, db, case_id)


async def via_video_accept(
    client: Client, db: async_sessionmaker[AsyncSession], entry_id: int
) -> int:
    resp = await accept_call(client, entry_id, OFFICER)
    assert resp.status == 303, await resp.text()
    async with db() as s:
        case_id = await s.scalar(select(PetitionCase.id).order_by(PetitionCase.id.desc()))
    assert case_id is not None
    return case_id


async def test_a_normal_kiosk_matter_gets_its_deadline_and_competent_department(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    # wage arrears has required details (employer, months): the staff complete them later
    case_id = await via_kiosk(client, db, "wage_arrears", "13912340003", "")
    got = await outcome(db, case_id)
    assert got == Outcome(
        category="appeal",
        confidential=False,
        lead_dept_id=await dept_of(db, "hrss"),
        accused_dept_id=None,
        deadlines=(("acceptance", "open", ACCEPTANCE),),
    )


async def test_a_member_of_the_accused_unit_cannot_be_its_first_receiver(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    token = await as_user(client, ACCUSED_OFFICER)
    resp = await client.post(
        "/api/cases",
        json={"channel": "window", "site_id": await centre(db), "summary": "检举执法人员收受好处",
              "matter_type": ACCUSATION, "attributes": {"accused": "区城管局某中队"},
              "accused_department_id": await dept_of(db, ACCUSED)},
        headers={csrf.HEADER: token},
    )  # fmt: skip
    assert resp.status == 403 and (await resp.json())["error"] == "confidential_transfer_blocked"
    async with db() as s:
        assert await s.scalar(select(PetitionCase.id).limit(1)) is None


async def test_an_agent_registers_for_their_own_community_only(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """#17 finding 11: an agent registered cases for communities of another street."""
    token = await as_user(client, AGENT)
    async with db() as s:
        own = await s.scalar(select(Staff.site_id).where(Staff.username == AGENT))
        other = await s.scalar(
            select(Site.id).where(Site.level == SiteLevel.community, Site.id != own).limit(1)
        )
    body = {"channel": "agent", "summary": "反映小区电梯故障", "matter_type": "wage_arrears",
            "petitioner": {"name": "赵六", "phone": "13912340009"}, "on_behalf_consent": True,
            "attributes": {"employer": "某公司", "months": 2}}  # fmt: skip
    resp = await client.post(
        "/api/cases", json={**body, "site_id": other}, headers={csrf.HEADER: token}
    )
    assert resp.status == 403 and (await resp.json())["error"] == "permission_denied"
    async with db() as s:
        assert await s.scalar(select(PetitionCase.id).limit(1)) is None  # nothing half-written
    resp = await client.post(
        "/api/cases", json={**body, "site_id": own}, headers={csrf.HEADER: token}
    )
    assert resp.status == 201, await resp.text()
