"""The confidentiality matrix (issue #17, item 2): every role × every intake channel × every
read path, for an accusation (检举控告) of the urban management bureau.

One district is seeded per module (real PostgreSQL, the whole app behind a real HTTP server):
an accusation is registered through each channel's real edge (window and letter through the
REST intake, the community agent's 代办, the kiosk form, the public web/QR petition, the video
desk's /call → /desk accept), routed by a supervisor to the market bureau with handler04
named (one kiosk case is left unrouted, as it arrives), each gets a mediation session, the
deadline sweep runs 30 days later (yellow/red warnings and all three levels of 三级抄告), a
publication report is drafted and approved. A control case (a wage claim, not confidential)
goes the same way, so that every path is shown to list cases at all.

The rule (docs/cases.md, "Confidentiality"): who may know that a confidential case exists, see
its content, and see the accuser is decided by `statemachine.can_view` / `may_see_petitioner`
(lists: `access.visibility_branches`); every path below must agree with `expected()`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth import csrf
from server.cases.deadline_clock import DeadlineClock
from server.cases.deadline_service import run_deadline_sweep
from server.cases.models import CaseEscalation, CaseNotification, PetitionCase
from server.http import keys
from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.org.models import Department, Role, Site, SiteLevel, Staff, StaffRole
from server.sessions import service as sessions
from server.sessions.schemas import EventRecord, SessionKind
from tests.conftest import _pg_url, _psql, csrf_token, load_demo_into, make_settings, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Client = TestClient[Any, Any]
ACCUSATION, CONTROL_MATTER = "official_misconduct", "wage_arrears"
ACCUSED, LEAD = "urban", "market"
SUMMARY = "检举城管执法人员收受好处"
#: The first receiver of the staff channels (window, letter, video): hrss's window officer.
RECEIVER, AGENT, SUPERVISOR, SECOND_SUPERVISOR = (
    "window01",
    "agent001",
    "supervisor01",
    "supervisor02",
)
NAMED_HANDLER = "handler04"  # the market bureau's handler the supervisor names

#: role key -> demo account. The accused unit is urban (window03, handler03, leader03), the
#: lead department market (handler04 named; handler04b, added here, and leader04 not), an
#: uninvolved one housing (02).
ROLES: dict[str, str] = {
    "accused_window_officer": "window03",
    "accused_handler": "handler03",
    "accused_leader": "leader03",
    "uninvolved_window_officer": "window02",
    "uninvolved_handler": "handler02",
    "uninvolved_leader": "leader02",
    "first_receiver_window_officer": RECEIVER,
    "lead_named_handler": NAMED_HANDLER,
    "lead_other_handler": "handler04b",
    "lead_leader": "leader04",
    "centre_supervisor": SUPERVISOR,
    "supervising_leader": "dleader01",
    "street_coordinator": "coord01",
    "mediator": "mediator01",
    "expert": "expert01",
    "community_agent": AGENT,
    "sys_admin": "sysadmin",
    "sec_admin": "secadmin",
    "audit_admin": "auditadmin",
}
CHANNELS = ("window", "letter", "agent", "kiosk", "web", "qr", "video", "kiosk_unrouted")
ROUTED = frozenset(CHANNELS) - {"kiosk_unrouted"}
STAFF_CHANNELS = {"window": RECEIVER, "letter": RECEIVER, "video": RECEIVER, "agent": AGENT}


@dataclass(frozen=True)
class Sight:
    exists: bool  # may learn that the case exists (page, API, lists, counts, sessions)
    accuser: bool  # sees the petitioner's name and phone in clear


def expected(role: str, channel: str) -> Sight:
    """The rule, per DOMAIN.md §5 (检举控告材料不得泄露、转给被检举单位) as docs/cases.md states it:
    - the accused unit: nothing, not even that the case exists;
    - the centre supervisors, the first receiver (首问责任人) and the named handler: content
      and the accuser's identity;
    - those told of it by 三级抄告 (the lead department's leaders at level 1 — for an
      unrouted case the centre's supervisors —, the supervising leader at level 2): content,
      the accuser masked;
    - everyone else (other departments, the lead department's other handlers, mediators and
      experts not named, street coordinators, window officers and agents of the site, the
      admin roles): nothing.
    """
    user = ROLES[role]
    if role.startswith("accused_"):
        return Sight(False, False)
    if user in (SUPERVISOR, SECOND_SUPERVISOR) or STAFF_CHANNELS.get(channel) == user:
        return Sight(True, True)
    if channel in ROUTED and user == NAMED_HANDLER:
        return Sight(True, True)
    if channel in ROUTED and role == "lead_leader":
        return Sight(True, False)
    if role == "supervising_leader":
        return Sight(True, False)
    return Sight(False, False)


@dataclass
class District:
    base: Client
    db: Any
    clients: dict[str, Client] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    cases: dict[str, tuple[int, str]] = field(default_factory=dict)  # channel -> (id, case_no)
    control: tuple[int, str] = (0, "")
    session_ids: dict[str, int] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)  # username -> phone
    staff_ids: dict[str, int] = field(default_factory=dict)  # username -> id
    sms_to: dict[int, set[str]] = field(default_factory=dict)  # case id -> phones
    report: str = ""
    cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    async def client(self, username: str) -> Client:
        if username not in self.clients:
            c: Client = TestClient(self.base.server)
            await c.start_server()
            self.tokens[username] = await sign_in(c, username)
            self.clients[username] = c
        return self.clients[username]

    async def get(self, username: str, url: str) -> tuple[int, str]:
        """GET as `username`, cached per (user, url): lists and exports are per user."""
        key = (username, url)
        if key not in self.cache:
            c = await self.client(username)
            resp = await c.get(url, headers={"Accept": "application/json"}, allow_redirects=False)
            body = await resp.read()
            self.cache[key] = (resp.status, body.decode("utf-8", "replace"))
        status, text = self.cache[key]
        return int(status), str(text)


def session_title(channel: str) -> str:
    return f"检举事项约谈（{channel}）"


def petitioner(channel: str) -> tuple[str, str]:
    """A distinct accuser per channel: (name, phone)."""
    n = CHANNELS.index(channel)
    return f"举报人{'甲乙丙丁戊己庚辛'[n]}", f"1391234{5600 + n:04d}"


async def _post_json(d: District, username: str, url: str, body: dict[str, Any]) -> Any:
    c = await d.client(username)
    resp = await c.post(url, json=body, headers={csrf.HEADER: d.tokens[username]})
    assert resp.status in (200, 201), f"{url}: {resp.status} {await resp.text()}"
    return await resp.json()


async def _register(d: District, channel: str, ids: dict[str, int], centre: int) -> int:
    name, phone = petitioner(channel)
    matter = ACCUSATION
    if channel in ("window", "letter", "agent"):
        user = STAFF_CHANNELS[channel]
        async with d.db() as s:
            site = await s.scalar(select(Staff.site_id).where(Staff.username == user))
        out = await _post_json(d, user, "/api/cases", {
            "channel": channel, "site_id": site, "summary": SUMMARY,
            "matter_type": matter, "petitioner": {"name": name, "phone": phone},
            "attributes": {"accused": "区城管局某中队"},
            "accused_department_id": ids[ACCUSED], "on_behalf_consent": channel == "agent",
        })  # fmt: skip
        return int(out["case"]["id"])
    if channel in ("web", "qr"):
        anon: Client = TestClient(d.base.server)
        await anon.start_server()
        token = await csrf_token(anon)
        resp = await anon.post("/api/public/petitions", headers={csrf.HEADER: token}, json={
            "channel": channel, "site_id": centre, "summary": SUMMARY,
            "matter_type": matter, "petitioner": {"name": name, "phone": phone},
            "attributes": {"accused": "区城管局某中队"}, "accused_department_id": ids[ACCUSED],
        })  # fmt: skip
        assert resp.status == 201, await resp.text()
        case_no = (await resp.json())["case_no"]
        await anon.session.close()
    elif channel.startswith("kiosk"):
        anon = TestClient(d.base.server)
        await anon.start_server()
        token = await csrf_token(anon)
        resp = await anon.post("/kiosk", data={
            "_csrf": token, "matter_code": matter, "description": SUMMARY,
            "name": name, "phone": phone, "site": str(centre),
            "accused_department": str(ids[ACCUSED]),
        })  # fmt: skip
        text = await resp.text()
        await anon.session.close()
        assert resp.status == 200, text
        match = re.search(r'id="case-no">([^<]+)<', text)
        assert match
        case_no = match[1]
    else:  # video: the agent places the call, the hrss window officer accepts it
        agent = await d.client(AGENT)
        resp = await agent.post("/call", data={
            "_csrf": d.tokens[AGENT], "matter_code": matter, "resident_name": name,
            "resident_phone": phone, "accused_department": str(ids[ACCUSED]),
        }, allow_redirects=False)  # fmt: skip
        assert resp.status == 303, await resp.text()
        entry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
        officer = await d.client(RECEIVER)
        resp = await officer.post(
            f"/desk/calls/{entry_id}/accept",
            data={"_csrf": d.tokens[RECEIVER]},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        async with d.db() as s:
            found = await s.scalar(
                select(PetitionCase.id)
                .where(PetitionCase.channel == "video")
                .order_by(PetitionCase.id.desc())
                .limit(1)
            )
        assert found is not None
        return int(found)
    async with d.db() as s:
        found = await s.scalar(select(PetitionCase.id).where(PetitionCase.case_no == case_no))
    assert found is not None
    return int(found)


async def _route(d: District, case_id: int, ids: dict[str, int], named: int) -> None:
    await _post_json(d, SUPERVISOR, f"/api/cases/{case_id}/transitions", {
        "transition": "transfer", "target_department_id": ids[LEAD], "reason": "交市场监管局办理",
    })  # fmt: skip
    await _post_json(d, SUPERVISOR, f"/api/cases/{case_id}/handlers", {
        "staff_id": named, "role": "co", "task": "指定承办人",
    })  # fmt: skip


async def _session_for(d: District, case_id: int, channel: str) -> int:
    """A meeting on the case, hosted by its named handler (a supervisor while unrouted), in
    which the accuser took part under their own name."""
    username = NAMED_HANDLER if channel in ROUTED else SUPERVISOR
    async with d.db.begin() as s:
        host = await s.scalar(select(Staff).where(Staff.username == username))
        assert host is not None
        view = await sessions.create_session(
            s, kind=SessionKind.mediation, title=session_title(channel), case_id=case_id,
            host_site_id=host.site_id, created_by_id=host.id, now=utcnow(),
            planned_start=utcnow() + timedelta(hours=2), planned_end=utcnow() + timedelta(hours=3),
        )  # fmt: skip
    async with d.db.begin() as s:
        await sessions.write_records(s, [EventRecord(
            view.id, "participant.joined", "system",
            {"identity": "guest:accuser", "role": "party", "display_name": petitioner(channel)[0]},
            utcnow(),
        )], deadlines=DeadlineClock())  # fmt: skip
    return view.id


async def _second_lead_handler(url: str) -> None:
    """The demo has one handler per department: add a second one to the lead department
    (not named on the cases), with the demo password."""
    engine = make_engine(url)
    async with make_sessionmaker(engine).begin() as s:
        model = await s.scalar(select(Staff).where(Staff.username == NAMED_HANDLER))
        assert model is not None
        s.add(
            Staff(
                username=ROLES["lead_other_handler"],
                display_name="市场监管局办事员乙",
                password_hash=model.password_hash,
                site_id=model.site_id,
                department_id=model.department_id,
                phone="13800009999",
                roles=[StaffRole(role=Role.dept_handler)],
            )
        )
    await engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def district(
    pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[District]:
    name = f"onedoor_t_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url = _pg_url(name)
    await load_demo_into(url)
    await _second_lead_handler(url)
    tmp: Path = tmp_path_factory.mktemp("confid")
    app = create_app(make_settings(tmp, url))
    base: Client = TestClient(TestServer(app))
    await base.start_server()
    d = District(base=base, db=app[keys.db])
    try:
        async with d.db() as s:
            ids = dict((await s.execute(select(Department.code, Department.id))).tuples().all())
            centre = await s.scalar(select(Site.id).where(Site.level == SiteLevel.district))
            staff = {u: (i, p) for u, i, p in await s.execute(
                select(Staff.username, Staff.id, Staff.phone))}  # fmt: skip
        assert centre is not None
        d.phones = {u: p for u, (_, p) in staff.items() if p}
        d.staff_ids = {u: i for u, (i, _) in staff.items()}
        for channel in CHANNELS:
            case_id = await _register(d, channel, ids, centre)
            async with d.db() as s:
                row = await s.get(PetitionCase, case_id)
                assert row is not None
                assert row.confidential and row.accused_dept_id == ids[ACCUSED], channel
                d.cases[channel] = (case_id, row.case_no)
            if channel in ROUTED:
                await _route(d, case_id, ids, staff[NAMED_HANDLER][0])
            d.session_ids[channel] = await _session_for(d, case_id, channel)
        out = await _post_json(d, RECEIVER, "/api/cases", {
            "channel": "window", "site_id": centre, "summary": "某公司拖欠三个月工资未发放",
            "matter_type": CONTROL_MATTER, "petitioner": {"name": "对照甲", "phone": "13912340001"},
            "attributes": {"employer": "某公司", "months": 3},
        })  # fmt: skip
        d.control = (int(out["case"]["id"]), str(out["case"]["case_no"]))
        await _route(d, d.control[0], ids, staff[NAMED_HANDLER][0])
        # The deployment's level-3 抄告 list names the accused unit's leader (a contact list
        # is configuration, made before any accusation of that unit).
        await _post_json(d, SUPERVISOR, "/api/escalation-contacts", {
            "department_id": None, "level": 3, "staff_id": staff[ROLES["accused_leader"]][0],
        })  # fmt: skip
        # 30 days on: every acceptance deadline is overdue and escalated to level 3.
        later = utcnow() + timedelta(days=30)
        await run_deadline_sweep(d.db, now=later, notifier=None)
        async with d.db() as s:
            levels = set(
                await s.scalars(
                    select(CaseEscalation.level).where(CaseEscalation.case_id == d.control[0])
                )
            )
            assert levels == {1, 2, 3}, levels
            for case_id, to in await s.execute(
                select(CaseNotification.case_id, CaseNotification.to)
            ):
                d.sms_to.setdefault(int(case_id), set()).add(str(to))
        assert d.sms_to.get(d.control[0]), "the control case's warnings went out"
        report = await _post_json(
            d,
            SUPERVISOR,
            "/api/cases/reports?until=" + (later + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            {},
        )
        await _post_json(d, SECOND_SUPERVISOR, f"/api/cases/reports/{report['id']}/approve", {})
        resp = await base.get(f"/api/public/reports/{report['id']}")
        assert resp.status == 200
        d.report = await resp.text()
        yield d
    finally:
        for c in d.clients.values():
            await c.session.close()  # not c.close(): that stops the shared server
        await base.close()
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ids_in(text: str) -> set[int]:
    return {int(m) for m in re.findall(r'"id":\s*(\d+)', text)}


async def _paths(d: District, role: str, channel: str) -> list[str]:
    """Every read path for one (role, channel): the mismatches with `expected`, in words."""
    user = ROLES[role]
    want = expected(role, channel)
    case_id, case_no = d.cases[channel]
    name, phone = petitioner(channel)
    sid = d.session_ids[channel]
    bad: list[str] = []

    def check(path: str, shows: bool, should: bool) -> None:
        if shows != should:
            bad.append(f"{path}: {'shows' if shows else 'hides'} it")

    def hidden(status: int, text: str = "") -> bool:
        """Not found, or refused by role (admins): the existence is not disclosed to the
        accused unit, so for them only 404 counts. A notice not (yet) issued is a 404 with
        its own code, after the case was found."""
        if status == 404:
            return "notice_not_available" not in text
        return status == 403 and not role.startswith("accused_")

    # the case page and the API
    status, text = await d.get(user, f"/cases/{case_id}")
    check("case page", not hidden(status), want.exists)
    check("case page: the accuser", name in text or phone in text, want.accuser)
    status, text = await d.get(user, f"/api/cases/{case_id}")
    check("GET /api/cases/{id}", not hidden(status), want.exists)
    if name in text or phone in text:
        check("GET /api/cases/{id}: the accuser", True, want.accuser)
    for sub in ("timeline", "deadlines", "sessions"):
        status, _ = await d.get(user, f"/api/cases/{case_id}/{sub}")
        check(f"GET /api/cases/{{id}}/{sub}", not hidden(status), want.exists)
    status, text = await d.get(user, f"/cases/{case_id}/notices/acceptance.pdf")
    check("notice PDF", not hidden(status, text), want.exists)
    # lists, search, exports, home, board
    for path, url in (
        ("case list API", "/api/cases?limit=200"),
        ("search API", f"/api/cases?q={case_no}"),
    ):
        status, text = await d.get(user, url)
        check(path, case_id in _ids_in(text), want.exists)
    for path, url in (
        ("case list page", "/cases"),
        ("search page", f"/cases?q={case_no}"),
        ("home page", "/"),
        ("supervision board", "/cases/board"),
        ("dashboard", "/api/cases/dashboard"),
    ):
        _, text = await d.get(user, url)
        # the search box echoes the number: a link to the case or the number outside it
        if f'/cases/{case_id}"' in text or case_no in text.replace(f'value="{case_no}"', ""):
            check(path, True, want.exists)
    if role.startswith("accused_"):
        # nothing else in the district concerns the urban bureau: its counts stay empty
        _, text = await d.get(user, "/")
        check("home page counts", "data-count=" in text, False)
    # the list's CSV (the roles that export): a row for those who may see the case, never
    # its summary or the accuser; the provincial exchange file: never a confidential case
    _, text = await d.get(user, "/cases/export.csv")
    if case_no in text:
        check("CSV export", True, want.exists)
    check("CSV export: the summary or the accuser", SUMMARY in text or name in text, False)
    _, text = await d.get(user, "/api/cases/export")
    check("provincial export", case_no in text or name in text or SUMMARY in text, False)
    # sessions
    for path, url in (
        ("session API", f"/api/scheduling/sessions/{sid}"),
        ("session page", f"/scheduling/sessions/{sid}"),
        ("session record page", f"/sessions/{sid}/record"),
    ):
        status, text = await d.get(user, url)
        check(path, not hidden(status), want.exists)
        if name in text:
            check(path + ": the accuser", True, want.accuser)
    status, text = await d.get(user, f"/api/scheduling/sessions/{sid}/invite.ics")
    check("session invite (.ics)", not hidden(status), want.exists)
    if name in text:
        check("session invite (.ics): the accuser", True, want.accuser)
    for path, url in (
        ("sessions today", "/sessions"),
        ("calendar", "/scheduling/calendar"),
        ("scheduling page", "/scheduling"),
        ("case dashboard page", "/cases/dashboard"),
    ):
        _, text = await d.get(user, url)
        if session_title(channel) in text or case_no in text:
            check(path, True, want.exists)
    # SMS (warnings, 抄告): only to those who may know of the case
    phone_of = d.phones.get(user)
    if phone_of and phone_of in d.sms_to.get(case_id, set()):
        check("SMS recipients", True, want.exists)
    # the audit of the accuser's identity: a clear view is always audited, and only those
    async with d.db() as s:
        audited = await s.scalar(
            select(AuditEntry.id)
            .where(
                AuditEntry.action == "case.petitioner_view",
                AuditEntry.object_id == str(case_id),
                AuditEntry.actor == f"staff:{d.staff_ids[user]}",
            )
            .limit(1)
        )
    check("audit case.petitioner_view", audited is not None, want.accuser)
    return bad


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("role", list(ROLES))
async def test_confidentiality(district: District, role: str, channel: str) -> None:
    bad = await _paths(district, role, channel)
    assert not bad, f"{expected(role, channel)}: " + "; ".join(bad)


async def test_control_case_is_on_every_path(district: District) -> None:
    """The control (a wage claim, not confidential) shows that each path lists cases at all."""
    case_id, case_no = district.control
    for url in ("/api/cases?limit=200", f"/api/cases?q={case_no}"):
        assert case_id in _ids_in((await district.get(SUPERVISOR, url))[1]), url
    for url in ("/cases", "/cases/export.csv", "/api/cases/export"):
        assert case_no in (await district.get(SUPERVISOR, url))[1], url
    assert "拖欠" in district.report or "工资" in district.report or "overdue" in district.report
    assert district.phones[ROLES["lead_leader"]] in district.sms_to[case_id]
    assert district.phones[ROLES["lead_other_handler"]] in district.sms_to[case_id]
    assert "data-count=" in (await district.get(NAMED_HANDLER, "/"))[1]


async def test_publication_report_leaves_out_accusations(district: District) -> None:
    assert "检举控告" not in district.report
    for _, case_no in district.cases.values():
        assert case_no not in district.report
