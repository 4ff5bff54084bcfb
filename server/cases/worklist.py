"""Work lists: what waits for a staff member now (the home page) and the supervision board
(overdue cases and cases with yellow or red warnings). Who may act is decided by the rules
in statemachine (`available_transitions`, `other_actions`), who may see by access; this
module only gathers the cases and their most urgent deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.permissions import Action, StaffIdentity
from server.cases.access import facts_for_many, visibility_clause
from server.cases.labels import STATE_LABELS
from server.cases.models import CaseDeadline, CaseEscalationRecipient, CaseState, PetitionCase
from server.cases.statemachine import (
    OPEN_STATES,
    CaseFacts,
    available_transitions,
    can_view,
    in_lead_unit,
    other_actions,
)
from server.kernel.errors import PermissionDenied

#: Transitions that are always possible for some roles and so do not make a case "wait" for
#: them (a supervisor may terminate or transfer any open case).
NOT_WAITING = frozenset({"terminate", "transfer"})
#: Other actions that do make a case wait for the viewer.
WAITING_ACTIONS = frozenset({"claim", "respond_supervision", "close_supervision"})
#: How many open cases the home page examines (newest first).
POOL = 400
RUNNING = ("open", "overdue")


@dataclass(frozen=True, slots=True)
class Mark:
    """A case's most urgent running deadline and its colour (as the case page's clock)."""

    kind: str
    due_at: datetime
    colour: str  # green / yellow / red
    overdue: bool
    escalation_level: int


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: int
    case_no: str
    summary: str
    state: CaseState
    state_label: str
    lead_dept_id: int | None
    confidential: bool
    mark: Mark | None
    supervision: str = ""
    actions: tuple[str, ...] = ()


@dataclass
class MyWork:
    waiting: list[WorkItem] = field(default_factory=list)
    overdue: list[WorkItem] = field(default_factory=list)
    escalated: list[WorkItem] = field(default_factory=list)
    supervisions: list[WorkItem] = field(default_factory=list)


def colour_of(status: str, warn_level: str, due_at: datetime, now: datetime) -> tuple[str, bool]:
    """(colour, overdue) of a running deadline: red when overdue or warned red, yellow when
    warned yellow, else green (web/views/case_file.deadline_clock_text is the same rule)."""
    overdue = status == "overdue" or due_at < now
    if overdue or warn_level == "red":
        return "red", overdue
    return ("yellow" if warn_level == "yellow" else "green"), False


async def deadline_marks(
    session: AsyncSession, case_ids: list[int], now: datetime
) -> dict[int, Mark]:
    """The most urgent running deadline of each case (cases without one are absent)."""
    out: dict[int, Mark] = {}
    if not case_ids:
        return out
    rows = await session.scalars(
        select(CaseDeadline)
        .where(CaseDeadline.case_id.in_(case_ids), CaseDeadline.status.in_(RUNNING))
        .order_by(CaseDeadline.due_at)
    )
    for d in rows:
        if d.case_id in out:
            continue
        colour, overdue = colour_of(d.status, d.warn_level, d.due_at, now)
        out[d.case_id] = Mark(d.kind, d.due_at, colour, overdue, d.escalation_level)
    return out


def _item(row: PetitionCase, facts: CaseFacts, mark: Mark | None, actions: list[str]) -> WorkItem:
    return WorkItem(
        id=row.id,
        case_no=row.case_no,
        summary=row.summary,
        state=row.state,
        state_label=STATE_LABELS[row.state.value],
        lead_dept_id=row.lead_dept_id,
        confidential=row.confidential,
        mark=mark,
        supervision=facts.supervision,
        actions=tuple(actions),
    )


def _urgency(item: WorkItem) -> tuple[int, float]:
    """Overdue and nearest deadlines first; cases without a running deadline last."""
    return (1, 0.0) if item.mark is None else (0, item.mark.due_at.timestamp())


async def my_work(session: AsyncSession, *, staff: StaffIdentity, now: datetime) -> MyWork:
    """The open cases waiting for the staff member's action (a transition the rules let them
    fire now, a claim, a 督办 to answer or to judge), the overdue ones among those they see,
    those escalated (抄告) to them, and the 督办 addressed to their unit; most urgent first."""
    work = MyWork()
    if not staff.can(Action.case_view):
        return work
    open_states = list(OPEN_STATES)
    pool = list(
        await session.scalars(
            select(PetitionCase)
            .where(visibility_clause(staff), PetitionCase.state.in_(open_states))
            .order_by(PetitionCase.id.desc())
            .limit(POOL)
        )
    )
    told_ids = set(
        await session.scalars(
            select(CaseEscalationRecipient.case_id).where(
                CaseEscalationRecipient.staff_id == staff.staff_id,
                CaseEscalationRecipient.level >= 1,
            )
        )
    )
    facts = await facts_for_many(session, pool)
    marks = await deadline_marks(session, [r.id for r in pool], now)
    for row in pool:
        f = facts[row.id]
        if not can_view(staff, f):
            continue
        names = [t.name for t in available_transitions(staff, f) if t.name not in NOT_WAITING]
        names += [a for a in other_actions(staff, f) if a in WAITING_ACTIONS]
        item = _item(row, f, marks.get(row.id), names)
        if names:
            work.waiting.append(item)
        if item.mark is not None and item.mark.overdue:
            work.overdue.append(item)
        if row.id in told_ids:
            work.escalated.append(item)
        if f.supervision == "open" and in_lead_unit(staff, f):
            work.supervisions.append(item)
    for items in (work.waiting, work.overdue, work.escalated, work.supervisions):
        items.sort(key=_urgency)
    return work


BOARD_LEVELS = {"overdue": "已逾期", "red": "红色预警", "yellow": "黄色预警"}


async def supervision_board(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    now: datetime,
    department_id: int | None = None,
    level: str | None = None,
    limit: int = 200,
) -> list[WorkItem]:
    """Open cases the supervisor may see with an overdue deadline or a yellow or red warning,
    most urgent first; `level` narrows to overdue / red / yellow, `department_id` to the lead
    department.

    Raises:
        PermissionDenied: the roles may not supervise.
    """
    if not staff.can(Action.case_supervise):
        raise PermissionDenied("your roles may not open the supervision board")
    warned = or_(
        CaseDeadline.status == "overdue",
        CaseDeadline.due_at < now,
        CaseDeadline.warn_level.in_(("yellow", "red")),
    )
    stmt = (
        select(PetitionCase)
        .where(
            visibility_clause(staff),
            PetitionCase.state.in_(list(OPEN_STATES)),
            PetitionCase.id.in_(
                select(CaseDeadline.case_id).where(CaseDeadline.status.in_(RUNNING), warned)
            ),
        )
        .order_by(PetitionCase.id.desc())
        .limit(limit)
    )
    if department_id is not None:
        stmt = stmt.where(PetitionCase.lead_dept_id == department_id)
    rows = list(await session.scalars(stmt))
    facts = await facts_for_many(session, rows)
    marks = await deadline_marks(session, [r.id for r in rows], now)
    out = []
    for row in rows:
        mark = marks.get(row.id)
        if mark is None or mark.colour == "green" or not can_view(staff, facts[row.id]):
            continue
        if level == "overdue" and not mark.overdue:
            continue
        if level == "red" and (mark.colour != "red" or mark.overdue):
            continue
        if level == "yellow" and mark.colour != "yellow":
            continue
        out.append(_item(row, facts[row.id], mark, other_actions(staff, facts[row.id])))
    out.sort(key=_urgency)
    return out
