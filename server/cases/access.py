"""Who may see which case and who may be given a confidential one, in ONE place:
`visible_case` for one case (the same 404 as a missing case when it is out of scope),
`visibility_branches`/`visibility_clause` for lists, kept in step with the pure rules in
`statemachine` (`can_view`; the transfer block in `check_transition`), and
`check_not_accused` for adding handlers to an accusation (检举控告) case.
"""

from __future__ import annotations

from sqlalchemy import and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from server.auth.permissions import Action, StaffIdentity
from server.cases.models import (
    CaseEscalation,
    CaseEscalationRecipient,
    CaseEvent,
    CaseHandler,
    PetitionCase,
)
from server.cases.statemachine import (
    CaseFacts,
    ConfidentialTransferBlocked,
    can_view,
    is_accused_unit,
    may_see_petitioner,
)
from server.kernel.errors import NotFound
from server.org.models import Role, Site


class CaseNotFound(NotFound):
    code, message_zh = "case_not_found", "案件不存在或无权查看"


def check_not_accused(
    row: PetitionCase, *, department_id: int | None = None, member_of: int | None = None
) -> None:
    """A confidential case never goes to the accused unit: not as a handling department
    (`department_id`), nor to a member of it (`member_of`: the person's department).

    Raises:
        ConfidentialTransferBlocked: it would.
    """
    if not row.confidential or row.accused_dept_id is None:
        return
    if member_of is not None and member_of == row.accused_dept_id:
        raise ConfidentialTransferBlocked("a member of the accused unit may not handle it")
    if department_id is not None and department_id == row.accused_dept_id:
        raise ConfidentialTransferBlocked("accusation material may not go to the accused unit")


async def case_for_update(session: AsyncSession, case_id: int) -> PetitionCase:
    row = await session.scalar(
        select(PetitionCase).where(PetitionCase.id == case_id).with_for_update()
    )
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    return row


async def site_path(session: AsyncSession, site_id: int) -> frozenset[int]:
    path: list[int] = []
    current: int | None = site_id
    while current is not None and len(path) < 8:
        path.append(current)
        current = await session.scalar(select(Site.parent_id).where(Site.id == current))
    return frozenset(path)


async def load_facts(session: AsyncSession, row: PetitionCase) -> CaseFacts:
    handlers = (
        await session.scalars(
            select(CaseHandler).where(CaseHandler.case_id == row.id, CaseHandler.active.is_(True))
        )
    ).all()
    escalated = await session.scalars(
        select(CaseEscalationRecipient.staff_id).where(CaseEscalationRecipient.case_id == row.id)
    )
    return CaseFacts(
        state=row.state,
        site_id=row.site_id,
        first_receiver_id=row.first_receiver_id,
        agent_id=row.agent_id,
        lead_dept_id=row.lead_dept_id,
        review_level=row.review_level,
        confidential=row.confidential,
        accused_dept_id=row.accused_dept_id,
        site_path=await site_path(session, row.site_id),
        handler_staff_ids=frozenset(h.staff_id for h in handlers if h.staff_id is not None),
        handler_dept_ids=frozenset(
            h.department_id for h in handlers if h.department_id is not None
        ),
        escalated_staff_ids=frozenset(escalated),
        supervision=(await latest_supervision(session, row.id))[1],
        grade=row.grade,
    )


async def latest_supervision(
    session: AsyncSession, case_id: int
) -> tuple[CaseEscalation | None, str]:
    """The case's latest 督办 issued by a person (not the sweep's level-3 抄告) and where it
    stands: "open" (awaiting the unit's response), "responded" (awaiting the verdict), or ""
    (settled, or none)."""
    esc = await session.scalar(
        select(CaseEscalation)
        .where(CaseEscalation.case_id == case_id, CaseEscalation.created_by_id.is_not(None))
        .order_by(CaseEscalation.id.desc())
        .limit(1)
    )
    if esc is None:
        return None, ""
    if esc.responded_at is None:
        return esc, "open"
    verdicts = await session.scalars(
        select(CaseEvent.payload).where(
            CaseEvent.case_id == case_id, CaseEvent.type == "supervision_verdict"
        )
    )
    if any((p or {}).get("escalation_id") == esc.id for p in verdicts):
        return esc, ""
    return esc, "responded"


async def facts_for_many(session: AsyncSession, rows: list[PetitionCase]) -> dict[int, CaseFacts]:
    """`load_facts` for many cases at once (a handful of queries, not a handful per case):
    for the home page's "waiting for my action" and the supervision board."""
    ids = [r.id for r in rows]
    if not ids:
        return {}
    handlers = (
        await session.scalars(
            select(CaseHandler).where(CaseHandler.case_id.in_(ids), CaseHandler.active.is_(True))
        )
    ).all()
    told = (
        await session.execute(
            select(CaseEscalationRecipient.case_id, CaseEscalationRecipient.staff_id).where(
                CaseEscalationRecipient.case_id.in_(ids)
            )
        )
    ).all()
    latest: dict[int, CaseEscalation] = {}
    for esc in await session.scalars(
        select(CaseEscalation)
        .where(CaseEscalation.case_id.in_(ids), CaseEscalation.created_by_id.is_not(None))
        .order_by(CaseEscalation.id)
    ):
        latest[esc.case_id] = esc
    judged: set[int] = set()
    answered = [e.case_id for e in latest.values() if e.responded_at is not None]
    if answered:
        for case_id, payload in await session.execute(
            select(CaseEvent.case_id, CaseEvent.payload).where(
                CaseEvent.case_id.in_(answered), CaseEvent.type == "supervision_verdict"
            )
        ):
            if (payload or {}).get("escalation_id") == latest[case_id].id:
                judged.add(case_id)
    paths: dict[int, frozenset[int]] = {}
    out: dict[int, CaseFacts] = {}
    for row in rows:
        if row.site_id not in paths:
            paths[row.site_id] = await site_path(session, row.site_id)
        last = latest.get(row.id)
        supervision = (
            ""
            if last is None or row.id in judged
            else ("open" if last.responded_at is None else "responded")
        )
        mine = [h for h in handlers if h.case_id == row.id]
        out[row.id] = CaseFacts(
            state=row.state,
            site_id=row.site_id,
            first_receiver_id=row.first_receiver_id,
            agent_id=row.agent_id,
            lead_dept_id=row.lead_dept_id,
            review_level=row.review_level,
            confidential=row.confidential,
            accused_dept_id=row.accused_dept_id,
            site_path=paths[row.site_id],
            handler_staff_ids=frozenset(h.staff_id for h in mine if h.staff_id is not None),
            handler_dept_ids=frozenset(h.department_id for h in mine if h.department_id),
            escalated_staff_ids=frozenset(s for c, s in told if c == row.id),
            supervision=supervision,
            grade=row.grade,
        )
    return out


async def visible_case(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, for_update: bool = False
) -> tuple[PetitionCase, CaseFacts]:
    """Load a case the staff member may see; otherwise the same 404 as a missing case (no
    disclosure that a confidential case exists)."""
    row = await (
        case_for_update(session, case_id) if for_update else session.get(PetitionCase, case_id)
    )
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    facts = await load_facts(session, row)
    if not can_view(staff, facts):
        raise CaseNotFound(f"case {case_id} does not exist or is outside your scope")
    return row, facts


async def check_visible(session: AsyncSession, *, staff: StaffIdentity, case_id: int) -> None:
    """Raise CaseNotFound unless the staff member may see the case (for handlers that act on
    a case through another service)."""
    await visible_case(session, staff=staff, case_id=case_id)


async def visible_case_id(session: AsyncSession, *, staff: StaffIdentity, case_no: str) -> int:
    """The id of the case with this case number (案件编号), if the staff member may see it;
    otherwise the same CaseNotFound as for a number that does not exist (nothing disclosed)."""
    case_id = await session.scalar(
        select(PetitionCase.id).where(PetitionCase.case_no == case_no.strip())
    )
    if case_id is None:
        raise CaseNotFound(f"no case numbered {case_no!r}")
    await visible_case(session, staff=staff, case_id=case_id)
    return case_id


async def check_not_accused_unit(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int
) -> None:
    """Raise CaseNotFound if the staff member belongs to the unit the (confidential) case
    accuses, or it does not exist: for acting on a case found by number, not by listing."""
    row = await session.get(PetitionCase, case_id)
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    if is_accused_unit(staff, await load_facts(session, row)):
        raise CaseNotFound(f"case {case_id} does not exist or is outside your scope")


def masked_name(name: str) -> str:
    """A person's name as those who may not know the petitioner see it: 王**."""
    return name[:1] + "*" * max(len(name) - 1, 1)


async def petitioner_in_clear(session: AsyncSession, *, staff: StaffIdentity, case_id: int) -> bool:
    """Whether the staff member may know who petitioned (`may_see_petitioner`: for an
    accusation only the first receiver, the named handlers and the supervisors): the case
    page's petitioner, and the names residents gave in the case's sessions and chats."""
    row = await session.get(PetitionCase, case_id)
    if row is None:
        return False
    return may_see_petitioner(staff, await load_facts(session, row))


def visibility_branches(staff: StaffIdentity) -> list[ColumnElement[bool]]:
    """`can_view` for lists, as disjuncts: a case is visible iff it satisfies one of them.

    Kept in step with statemachine.can_view. Each disjunct is one index-friendly shape
    (first receiver, named handler, told by 抄告/督办, lead department, co-handling department, site), so
    `list_cases` runs them as separate queries: ORed together, no index serves the whole.
    An empty list means the staff member sees nothing.
    """
    if not staff.can(Action.case_view):
        return []
    not_accused: ColumnElement[bool] = or_(
        PetitionCase.confidential.is_(False),
        PetitionCase.accused_dept_id.is_(None),
        PetitionCase.accused_dept_id != (staff.department_id or -1),
    )
    if staff.can(Action.case_view_all):
        return [not_accused]
    named = PetitionCase.id.in_(
        select(CaseHandler.case_id).where(
            CaseHandler.staff_id == staff.staff_id, CaseHandler.active.is_(True)
        )
    )
    told = PetitionCase.id.in_(
        select(CaseEscalationRecipient.case_id).where(
            CaseEscalationRecipient.staff_id == staff.staff_id
        )
    )
    branches: list[ColumnElement[bool]] = [
        and_(not_accused, PetitionCase.first_receiver_id == staff.staff_id),
        and_(not_accused, PetitionCase.agent_id == staff.staff_id),
        and_(not_accused, named),
        and_(not_accused, told),
    ]
    open_case = and_(not_accused, PetitionCase.confidential.is_(False))
    if staff.department_id is not None and staff.roles & {Role.dept_handler, Role.dept_leader}:
        branches.append(and_(open_case, PetitionCase.lead_dept_id == staff.department_id))
        branches.append(
            and_(
                open_case,
                PetitionCase.id.in_(
                    select(CaseHandler.case_id).where(
                        CaseHandler.department_id == staff.department_id,
                        CaseHandler.active.is_(True),
                    )
                ),
            )
        )
    if Role.street_coordinator in staff.roles:
        streets = select(Site.id).where(
            or_(Site.id == staff.site_id, Site.parent_id == staff.site_id)
        )
        branches.append(and_(open_case, PetitionCase.site_id.in_(streets)))
    if staff.roles & {Role.window_officer, Role.community_agent}:
        branches.append(and_(open_case, PetitionCase.site_id == staff.site_id))
    return branches


def visibility_clause(staff: StaffIdentity) -> ColumnElement[bool]:
    """SQL form of `can_view` (the OR of `visibility_branches`)."""
    branches = visibility_branches(staff)
    return or_(*branches) if branches else false()
