"""三级抄告 contact lists per department and level, used by the deadline sweep before the
policy's roles; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import csrf
from server.cases import deadline_service, escalation
from server.cases.escalation import ContactInput, contacts_for
from server.cases.models import CaseEvent, PetitionCase
from server.cases.validation import InvalidPhone
from server.kernel.crypto import PiiCipher
from server.kernel.errors import InvalidInput, PermissionDenied
from server.org.models import Role, Staff, StaffRole
from tests.conftest import signed_in
from tests.fakes import RecordingNotifier

from .conftest import NOW, dept_id, who
from .test_deadlines_and_evaluation import handling_case
from .test_lifecycle import register


def test_department_list_then_deployment_list_then_roles() -> None:
    contacts = {(7, 1): ["13700000001"], (None, 1): ["13700000009"], (None, 2): ["13700000002"]}
    assert contacts_for(contacts, department_id=7, level=1) == ["13700000001"]
    assert contacts_for(contacts, department_id=8, level=1) == ["13700000009"]
    assert contacts_for(contacts, department_id=7, level=2) == ["13700000002"]
    assert contacts_for(contacts, department_id=None, level=2) == ["13700000002"]
    assert contacts_for(contacts, department_id=7, level=3) is None  # → roles


def test_contact_input_is_validated() -> None:
    ContactInput(level=1, staff_id=3)
    ContactInput(level=2, name="区委督查室", phone="+86 137-0000-0001")
    for bad in (
        {"level": 0, "staff_id": 3},
        {"level": 4, "staff_id": 3},
        {"level": 1},  # nobody
        {"level": 1, "phone": "13700000001"},  # a phone without a name
        {"level": 1, "staff_id": 3, "phone": "13700000001"},  # both
        {"level": 1, "staff_id": 3, "extra": True},
    ):
        with pytest.raises(ValidationError):
            ContactInput.model_validate(bad)
    with pytest.raises(InvalidPhone):
        ContactInput(level=1, name="某人", phone="12345")


async def set_phone(s: AsyncSession, username: str, phone: str) -> None:
    staff = await s.get(Staff, (await who(s, username)).staff_id)
    assert staff is not None
    staff.phone = phone


async def test_sweep_sends_each_level_to_its_contact_list(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await handling_case(db, pii)
    async with db.begin() as s:
        housing = await dept_id(s, "housing")
        case = await s.get(PetitionCase, case_id)
        assert case is not None and case.lead_dept_id == housing
        for username, phone in (
            ("handler02", "13900000002"),
            ("leader02", "13900000012"),
            ("dleader01", "13900000099"),
            ("supervisor01", "13900000077"),
        ):
            await set_phone(s, username, phone)
        supervisor = await who(s, "supervisor01")
        with pytest.raises(PermissionDenied):
            await escalation.add_contact(
                s,
                staff=await who(s, "window01"),
                contact=ContactInput(level=1, name="某人", phone="13700000001"),
                now=NOW,
            )
        with pytest.raises(InvalidInput):
            await escalation.add_contact(
                s,
                staff=supervisor,
                contact=ContactInput(department_id=999_999, level=1, staff_id=supervisor.staff_id),
                now=NOW,
            )
        # Level 1 for 住建: the deputy director's office (a named person, not a staff account).
        await escalation.add_contact(
            s,
            staff=supervisor,
            contact=ContactInput(
                department_id=housing, level=1, name="住建局分管副局长", phone="13700000001"
            ),
            now=NOW,
        )
        # Level 1 for another department: must not be used for this case.
        await escalation.add_contact(
            s,
            staff=supervisor,
            contact=ContactInput(
                department_id=await dept_id(s, "hrss"), level=1, name="人社局", phone="13700000005"
            ),
            now=NOW,
        )
        # Level 2 for every department: one staff member (their own phone is used).
        await escalation.add_contact(
            s,
            staff=supervisor,
            contact=ContactInput(level=2, staff_id=supervisor.staff_id),
            now=NOW,
        )
        listed = await escalation.list_contacts(s, staff=supervisor)
        assert {(c.department_id, c.level, c.name) for c in listed} >= {
            (housing, 1, "住建局分管副局长"),
            (None, 2, supervisor.display_name),
        }
        role_phones = set(
            await s.scalars(
                select(Staff.phone)
                .join(StaffRole, StaffRole.staff_id == Staff.id)
                .where(StaffRole.role == Role.centre_supervisor, Staff.phone != "")
            )
        )

    notifier = RecordingNotifier()
    late = NOW + timedelta(days=75)  # handling due after 60 days: levels 1, 2 and 3
    report = await deadline_service.run_deadline_sweep(db, now=late, notifier=notifier)
    assert report.escalations == 3
    by_level: dict[str, set[str]] = {}
    for message in notifier.sent:
        for level in ("1", "2", "3"):
            if f"第{level}级" in message.subject:
                by_level.setdefault(level, set()).add(message.to)
    assert by_level["1"] == {"13700000001"}  # the department's list, not leader02
    assert by_level["2"] == {"13900000077"}  # the deployment's list, not dleader01
    assert by_level["3"] == role_phones  # no list for level 3: the policy's role
    async with db() as s:
        events = list(
            await s.scalars(
                select(CaseEvent.payload).where(
                    CaseEvent.case_id == case_id, CaseEvent.type == "escalated"
                )
            )
        )
    assert sorted((e["level"], e["via"]) for e in events) == [
        (1, "contacts"),
        (2, "contacts"),
        (3, "roles"),
    ]
    again = await deadline_service.run_deadline_sweep(db, now=late, notifier=notifier)
    assert (again.escalations, again.sent) == (0, 0)


async def test_removed_contacts_and_departed_staff_are_not_used(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        supervisor = await who(s, "supervisor01")
        await set_phone(s, "dleader01", "13900000099")
        named = await escalation.add_contact(
            s,
            staff=supervisor,
            contact=ContactInput(level=3, name="区长办", phone="13700000003"),
            now=NOW,
        )
        leader = await who(s, "dleader01")
        await escalation.add_contact(
            s, staff=supervisor, contact=ContactInput(level=3, staff_id=leader.staff_id), now=NOW
        )
    async with db() as s:
        phones = await escalation.load_contact_phones(s)
    assert phones[(None, 3)] == ["13700000003", "13900000099"]
    async with db.begin() as s:
        await escalation.remove_contact(s, staff=supervisor, contact_id=named.id, now=NOW)
        departed = await s.get(Staff, leader.staff_id)
        assert departed is not None
        departed.active = False
    async with db() as s:
        phones = await escalation.load_contact_phones(s)
        assert (None, 3) not in phones  # nobody left: level 3 falls back to roles
        assert named.id not in {c.id for c in await escalation.list_contacts(s, staff=supervisor)}


async def test_contact_api(app_client: TestClient[Any, Any]) -> None:
    token = await signed_in(app_client, "window_officer")
    assert (await app_client.get("/api/escalation-contacts")).status == 403
    token = await signed_in(app_client, "centre_supervisor")
    me = await (await app_client.get("/api/me")).json()

    async def post(body: dict[str, Any]) -> Any:
        return await app_client.post(
            "/api/escalation-contacts", json=body, headers={csrf.HEADER: token}
        )

    bad = await post({"level": 5, "name": "某人", "phone": "13700000001"})
    assert bad.status == 422
    bad = await post({"level": 1, "name": "某人", "phone": "123"})
    assert bad.status == 422 and (await bad.json())["error"] == "invalid_phone"
    ok = await post(
        {"level": 1, "name": "区信访局值班室", "phone": "13700000001", "note": "24小时"}
    )
    assert ok.status == 201, await ok.text()
    created = await ok.json()
    listed = await (await app_client.get("/api/escalation-contacts")).json()
    assert [c["id"] for c in listed] == [created["id"]] and listed[0]["department_id"] is None
    if me.get("department_id"):
        scoped = await app_client.get(
            "/api/escalation-contacts", params={"department_id": me["department_id"]}
        )
        assert await scoped.json() == []
    gone = await app_client.delete(
        f"/api/escalation-contacts/{created['id']}", headers={csrf.HEADER: token}
    )
    assert gone.status == 204
    assert await (await app_client.get("/api/escalation-contacts")).json() == []
    again = await app_client.delete(
        f"/api/escalation-contacts/{created['id']}", headers={csrf.HEADER: token}
    )
    assert again.status == 404


async def test_a_case_with_no_lead_department_warns_the_centre_not_every_department(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """#17 finding 2: with no lead department, warnings went to all 12 departments' handlers
    (the accused unit of an accusation among them) and 抄告 to all their leaders."""
    async with db.begin() as s:
        urban = await dept_id(s, "urban")
    case_id = await register(
        db,
        pii,
        matter="official_misconduct",
        summary="检举城管执法人员收受好处",
        attributes={"accused": "区城管局某中队"},
        accused_department_id=urban,
    )
    async with db.begin() as s:
        case = await s.get(PetitionCase, case_id)
        assert case is not None
        case.lead_dept_id = None  # not routed yet
        department_phones: set[str] = set()
        for i, staff in enumerate(
            await s.scalars(
                select(Staff)
                .join(StaffRole, StaffRole.staff_id == Staff.id)
                .where(StaffRole.role.in_([Role.dept_handler, Role.dept_leader]))
            )
        ):
            staff.phone = f"1390000{i:04d}"
            department_phones.add(staff.phone)
        await set_phone(s, "supervisor01", "13900009999")
    notifier = RecordingNotifier()
    report = await deadline_service.run_deadline_sweep(
        db, now=NOW + timedelta(days=40), notifier=notifier
    )
    assert report.warnings >= 1
    recipients = {m.to for m in notifier.sent}
    assert "13900009999" in recipients
    assert not recipients & department_phones
