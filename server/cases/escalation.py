"""三级抄告 contact lists: who is told at each escalation level, per department or for the
whole deployment, managed through /api/escalation-contacts (docs/cases.md).

The deadline sweep resolves the recipients of level L for a case led by department D as:
the active contacts of (D, L); else those of (deployment, L); else the staff holding the
policy's role for L (the previous behaviour)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.models import (
    CaseEscalationRecipient,
    CaseHandler,
    EscalationContact,
    PetitionCase,
)
from server.cases.validation import normalize_phone
from server.kernel.errors import InvalidInput, NotFound, PermissionDenied
from server.org.models import Department, Role, Staff, StaffRole

ContactKey = tuple[int | None, int]  # (department id or None for the deployment, level)


class ContactInput(BaseModel):
    """A contact: a staff member (`staff_id`, their phone is used) or a named person with a
    mainland mobile number."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    department_id: int | None = None
    level: int = Field(ge=1, le=3)
    staff_id: int | None = None
    name: str = Field(default="", max_length=64)
    phone: str | None = None
    note: str = Field(default="", max_length=200)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None

    @model_validator(mode="after")
    def _who(self) -> ContactInput:
        if self.staff_id is None and (not self.phone or not self.name):
            raise ValueError("a contact is a staff_id, or a name with a phone")
        if self.staff_id is not None and self.phone:
            raise ValueError("give staff_id or a phone, not both (a staff member's own is used)")
        return self


class ContactView(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    department_id: int | None
    level: int
    staff_id: int | None
    name: str
    phone: str | None
    note: str
    active: bool


def _view(row: EscalationContact, staff_name: str | None = None) -> ContactView:
    return ContactView(
        id=row.id,
        department_id=row.department_id,
        level=row.level,
        staff_id=row.staff_id,
        name=row.name or staff_name or "",
        phone=row.phone,
        note=row.note,
        active=row.active,
    )


def _require(staff: StaffIdentity) -> None:
    if not staff.can(Action.escalation_manage):
        raise PermissionDenied("your roles may not manage escalation contacts")


async def list_contacts(
    session: AsyncSession, *, staff: StaffIdentity, department_id: int | None = None
) -> list[ContactView]:
    _require(staff)
    stmt = (
        select(EscalationContact, Staff.display_name)
        .outerjoin(Staff, Staff.id == EscalationContact.staff_id)
        .where(EscalationContact.active.is_(True))
        .order_by(EscalationContact.department_id, EscalationContact.level, EscalationContact.id)
    )
    if department_id is not None:
        stmt = stmt.where(EscalationContact.department_id == department_id)
    return [_view(row, name) for row, name in (await session.execute(stmt)).all()]


async def add_contact(
    session: AsyncSession, *, staff: StaffIdentity, contact: ContactInput, now: datetime
) -> ContactView:
    _require(staff)
    if contact.department_id is not None and (
        await session.get(Department, contact.department_id) is None
    ):
        raise InvalidInput("unknown department", field="department_id", reason_zh="部门不存在")
    staff_name: str | None = None
    if contact.staff_id is not None:
        person = await session.get(Staff, contact.staff_id)
        if person is None or not person.active:
            raise InvalidInput("unknown or inactive staff member", field="staff_id")
        if not person.phone:
            raise InvalidInput(
                "this staff member has no phone number to notify",
                field="staff_id",
                reason_zh="该工作人员没有登记手机号码，无法接收抄告",
            )
        staff_name = person.display_name
    row = EscalationContact(
        department_id=contact.department_id,
        level=contact.level,
        staff_id=contact.staff_id,
        name=contact.name,
        phone=contact.phone,
        note=contact.note,
        active=True,
        created_by_id=staff.staff_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        actor=staff.actor,
        action="escalation_contact.add",
        object_type="escalation_contact",
        object_id=str(row.id),
        detail={
            "department_id": contact.department_id,
            "level": contact.level,
            "staff_id": contact.staff_id,
        },
    )
    return _view(row, staff_name)


async def remove_contact(
    session: AsyncSession, *, staff: StaffIdentity, contact_id: int, now: datetime
) -> None:
    """Deactivate (the row stays, so past escalations keep their meaning)."""
    _require(staff)
    row = await session.get(EscalationContact, contact_id)
    if row is None or not row.active:
        raise NotFound(f"escalation contact {contact_id} does not exist")
    row.active = False
    row.removed_at = now
    await record(
        session,
        actor=staff.actor,
        action="escalation_contact.remove",
        object_type="escalation_contact",
        object_id=str(contact_id),
        detail={"department_id": row.department_id, "level": row.level},
    )


async def load_contact_phones(session: AsyncSession) -> dict[ContactKey, list[str]]:
    """Every active contact's phone, by (department or None, level), for one sweep. A staff
    contact who has left (inactive) or has no phone is dropped."""
    rows = await session.execute(
        select(
            EscalationContact.department_id,
            EscalationContact.level,
            EscalationContact.phone,
            Staff.phone,
            Staff.active,
        )
        .outerjoin(Staff, Staff.id == EscalationContact.staff_id)
        .where(EscalationContact.active.is_(True))
        .order_by(EscalationContact.id)
    )
    out: dict[ContactKey, list[str]] = defaultdict(list)
    for dept, level, phone, staff_phone, staff_active in rows.all():
        to = phone or (staff_phone if staff_active else None)
        if to and to not in out[(dept, level)]:
            out[(dept, level)].append(to)
    return dict(out)


def contacts_for(
    contacts: dict[ContactKey, list[str]], *, department_id: int | None, level: int
) -> list[str] | None:
    """The contact list for a level: the department's, else the deployment's, else None
    (the caller falls back to roles)."""
    if department_id is not None and contacts.get((department_id, level)):
        return contacts[(department_id, level)]
    return contacts.get((None, level)) or None


async def role_recipients(
    session: AsyncSession,
    *,
    role: str,
    department_id: int | None,
    cache: dict[tuple[str, int | None], list[str]] | None = None,
) -> list[str]:
    """Phones of the active staff holding `role`; for a department's roles (handler, leader)
    those of `department_id` only. A case with no lead department yet (an accusation whose
    unit is still to be chosen, a registration nobody routed) has no department to warn: its
    warnings go to the centre's supervisors, never to every department (which would include
    an accused unit: #17 finding 2)."""
    role, department_id = _recipient_role(role, department_id)
    if cache is not None and (role, department_id) in cache:
        return cache[(role, department_id)]
    phones = await _query_recipients(session, role=role, department_id=department_id)
    if cache is not None:
        cache[(role, department_id)] = phones
    return phones


async def without_accused_unit(
    session: AsyncSession,
    phones: list[str],
    *,
    accused_dept_id: int | None,
    cache: dict[tuple[str, int | None], list[str]] | None = None,
) -> list[str]:
    """`phones` less those of the accused unit's staff: a confidential case's warnings and
    抄告 never reach the unit it accuses (检举控告材料不得泄露给被检举单位), whatever the
    contact lists say. `accused_dept_id` is None for any other case (nothing removed)."""
    if accused_dept_id is None or not phones:
        return phones
    key = ("accused_unit", accused_dept_id)
    if cache is not None and key in cache:
        barred = set(cache[key])
    else:
        barred = {
            p
            for p in await session.scalars(
                select(Staff.phone).where(Staff.department_id == accused_dept_id)
            )
            if p
        }
        if cache is not None:
            cache[key] = sorted(barred)
    return [p for p in phones if p not in barred]


async def confidential_warning_phones(
    session: AsyncSession,
    *,
    case_id: int,
    cache: dict[tuple[str, int | None], list[str]] | None = None,
) -> list[str]:
    """Whom the yellow/red warnings of a confidential case go to: those who may know it
    (`statemachine.can_view`) and handle it — its named handlers and its first receiver —,
    else the centre's supervisors; not every handler of the lead department. A sweep batch
    looks them up for all its confidential cases at once (`prefetch_confidential_phones`)."""
    key = ("confidential_case", case_id)
    if cache is not None and key in cache:
        return cache[key] or await role_recipients(
            session, role=Role.centre_supervisor.value, department_id=None, cache=cache
        )
    rows = await session.scalars(
        select(Staff.phone)
        .where(Staff.active.is_(True))
        .where(
            or_(
                Staff.id.in_(
                    select(CaseHandler.staff_id).where(
                        CaseHandler.case_id == case_id, CaseHandler.active.is_(True)
                    )
                ),
                Staff.id.in_(
                    select(PetitionCase.first_receiver_id).where(PetitionCase.id == case_id)
                ),
            )
        )
    )
    phones = sorted({p for p in rows if p})
    return phones or await role_recipients(
        session, role=Role.centre_supervisor.value, department_id=None, cache=cache
    )


async def prefetch_confidential_phones(
    session: AsyncSession,
    case_ids: list[int],
    cache: dict[tuple[str, int | None], list[str]],
) -> None:
    """`confidential_warning_phones`' own phones for many cases in two queries, into `cache`
    (a case with none still gets its entry: the supervisors then stand in)."""
    if not case_ids:
        return
    found: dict[int, set[str]] = {i: set() for i in case_ids}
    handlers = await session.execute(
        select(CaseHandler.case_id, Staff.phone)
        .join(Staff, Staff.id == CaseHandler.staff_id)
        .where(
            CaseHandler.case_id.in_(case_ids),
            CaseHandler.active.is_(True),
            Staff.active.is_(True),
        )
    )
    receivers = await session.execute(
        select(PetitionCase.id, Staff.phone)
        .join(Staff, Staff.id == PetitionCase.first_receiver_id)
        .where(PetitionCase.id.in_(case_ids), Staff.active.is_(True))
    )
    for case_id, phone in [*handlers.tuples(), *receivers.tuples()]:
        if phone:
            found[case_id].add(phone)
    for case_id, phones in found.items():
        cache[("confidential_case", case_id)] = sorted(phones)


def _recipient_role(role: str, department_id: int | None) -> tuple[str, int | None]:
    """Whose phones a (role, lead department) resolves to: a department's roles (handler,
    leader) of that department only, and with no lead department the centre's supervisors —
    never every department's (which would include an accused unit, #17 finding 2)."""
    if role in ("dept_leader", "dept_handler") and department_id is None:
        return Role.centre_supervisor.value, None
    if role not in ("dept_leader", "dept_handler"):
        return role, None
    return role, department_id


async def _query_recipients(
    session: AsyncSession, *, role: str, department_id: int | None
) -> list[str]:
    stmt = (
        select(Staff.phone)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(StaffRole.role == Role(role), Staff.active.is_(True))
    )
    if role in ("dept_leader", "dept_handler") and department_id is not None:
        stmt = stmt.where(Staff.department_id == department_id)
    return [p for p in await session.scalars(stmt) if p]


async def recipient_staff_ids(
    session: AsyncSession, *, department_id: int | None, level: int, role: str
) -> list[int]:
    """The staff members among the recipients of level `level` for a case led by
    `department_id`, chosen as `contacts_for` then `role_recipients` choose the phones: the
    department's reachable contacts, else the deployment's, else the holders of `role`."""
    rows = (
        await session.execute(
            select(
                EscalationContact.department_id,
                EscalationContact.phone,
                EscalationContact.staff_id,
                Staff.phone,
                Staff.active,
            )
            .outerjoin(Staff, Staff.id == EscalationContact.staff_id)
            .where(EscalationContact.active.is_(True), EscalationContact.level == level)
        )
    ).all()
    reachable = [r for r in rows if r[1] or (r[3] and r[4])]
    own = [r for r in reachable if department_id is not None and r[0] == department_id]
    listed = own or [r for r in reachable if r[0] is None]
    if listed:
        return sorted({int(r[2]) for r in listed if r[2] is not None and r[4]})
    role, department_id = _recipient_role(role, department_id)
    stmt = (
        select(Staff.id, Staff.phone)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(StaffRole.role == Role(role), Staff.active.is_(True))
    )
    if role in ("dept_leader", "dept_handler") and department_id is not None:
        stmt = stmt.where(Staff.department_id == department_id)
    return sorted({int(i) for i, phone in (await session.execute(stmt)).all() if phone})


async def record_recipients(
    session: AsyncSession,
    escalated: list[tuple[int, int | None, int, str]],
    *,
    now: datetime,
) -> None:
    """Remember who was told of each (case, lead department, level, role) escalation, so that
    they may open the case (CaseEscalationRecipient). The recipients of one (department,
    level, role) are looked up once per call: a sweep batch escalates many cases alike."""
    known: dict[tuple[int | None, int, str], list[int]] = {}
    rows = []
    for case_id, department_id, level, role in escalated:
        key = (department_id, level, role)
        if key not in known:
            known[key] = await recipient_staff_ids(
                session, department_id=department_id, level=level, role=role
            )
        rows += [
            CaseEscalationRecipient(case_id=case_id, staff_id=staff_id, level=level, created_at=now)
            for staff_id in known[key]
        ]
    session.add_all(rows)
    await session.flush()
