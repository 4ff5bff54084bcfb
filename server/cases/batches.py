"""集中交办 (concentrated assignment) and 红牌 (red card warnings).

A centre supervisor or supervising leader (`Action.case_supervise`) assigns a batch of
prominent open cases to one responsible leader (a staff member holding dept_leader or
supervising_leader) with a deadline. Each case gets a timeline event ("batch_assigned"), the
leader becomes a level-0 escalation recipient of each case (so they may open it, as a 督办
target may; see access.load_facts), the leader is told through the outbox, and the audit log
records the batch.

A centre supervisor (`Action.red_card_issue`) issues a red card to a department that shirks
(推诿), with the reason and optionally a case; red cards count in 双考
(evaluation.dashboard: each lowers the department's score by RED_CARD_PENALTY points).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.access import visible_case
from server.cases.labels import STATE_LABELS
from server.cases.models import (
    CaseEscalationRecipient,
    CaseEvent,
    PetitionCase,
    RedCard,
    SupervisionBatch,
    SupervisionBatchCase,
)
from server.cases.outbox import StaffPhone, enqueue
from server.cases.statemachine import OPEN_STATES
from server.cases.worklist import deadline_marks
from server.kernel.errors import InvalidInput, PermissionDenied
from server.org.models import Department, Role, Staff, StaffRole

#: Roles a batch's responsible leader must hold.
LEADER_ROLES = (Role.dept_leader, Role.supervising_leader)
#: The most cases in one batch.
MAX_BATCH = 50
#: Points one red card takes off a department's 双考 score (evaluation.dashboard).
RED_CARD_PENALTY = 10


class BatchEmpty(InvalidInput):
    code, message_zh = "batch_empty", "请至少选择一件信访事项"


class BatchDeadlinePast(InvalidInput):
    code, message_zh = "batch_deadline_past", "办结期限必须晚于当前时间"


class BatchLeaderInvalid(InvalidInput):
    code, message_zh = "batch_leader_invalid", "责任领导不存在或不具有部门领导、督办领导角色"


class BatchCaseClosed(InvalidInput):
    code, message_zh = "batch_case_closed", "所选事项中有已办结或已终止的事项，不能交办"


class RedCardInvalid(InvalidInput):
    code, message_zh = "red_card_invalid", "请选择责任单位并填写红牌理由"


@dataclass(frozen=True, slots=True)
class BatchCaseProgress:
    case_id: int
    case_no: str
    state_label: str
    closed: bool
    overdue: bool
    lead_dept_id: int | None


@dataclass(frozen=True, slots=True)
class BatchView:
    id: int
    title: str
    note: str
    leader_id: int
    leader_name: str
    due_at: datetime
    created_at: datetime
    overdue: bool
    cases: list[BatchCaseProgress]

    @property
    def closed_count(self) -> int:
        return sum(1 for c in self.cases if c.closed)


@dataclass(frozen=True, slots=True)
class RedCardView:
    id: int
    department_id: int
    department_name: str
    case_id: int | None
    case_no: str
    reason: str
    issued_by_name: str
    issued_at: datetime


async def leader_choices(session: AsyncSession) -> list[tuple[int, str]]:
    """Active staff holding dept_leader or supervising_leader (the batch form's choices)."""
    rows = await session.execute(
        select(Staff.id, Staff.display_name)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(Staff.active.is_(True), StaffRole.role.in_(LEADER_ROLES))
        .distinct()
        .order_by(Staff.id)
    )
    return [(int(i), str(n)) for i, n in rows.all()]


async def create_batch(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    title: str,
    leader_id: int,
    due_at: datetime,
    case_ids: list[int],
    note: str = "",
    now: datetime,
) -> int:
    """集中交办: assign the open cases `case_ids` to the leader `leader_id` by `due_at`.

    Raises:
        PermissionDenied: the staff member may not supervise.
        BatchEmpty: no case chosen.
        BatchDeadlinePast: `due_at` is not in the future.
        BatchLeaderInvalid: unknown or inactive leader, or without a leader role.
        CaseNotFound: a case is missing or outside the staff member's scope.
        BatchCaseClosed: a case is no longer open.
        InvalidInput: an empty title or too many cases.
    """
    if not staff.can(Action.case_supervise):
        raise PermissionDenied("your roles may not assign supervision batches")
    title = title.strip()
    if not title:
        raise InvalidInput("a batch needs a title", field="title")
    ids = sorted(set(case_ids))
    if not ids:
        raise BatchEmpty("no case in the batch", field="case_ids")
    if len(ids) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} cases in one batch", field="case_ids")
    if due_at <= now:
        raise BatchDeadlinePast("the deadline is not in the future", field="due_at")
    leader = await session.get(Staff, leader_id)
    if leader is None or not leader.active or not (leader.role_set & set(LEADER_ROLES)):
        raise BatchLeaderInvalid(f"staff {leader_id} is not a leader", field="leader_id")
    rows: list[PetitionCase] = []
    for case_id in ids:
        row, facts = await visible_case(session, staff=staff, case_id=case_id)
        if facts.state not in OPEN_STATES:
            raise BatchCaseClosed(f"case {case_id} is not open", field="case_ids")
        rows.append(row)
    batch = SupervisionBatch(
        title=title,
        note=note.strip(),
        leader_id=leader.id,
        due_at=due_at,
        created_by_id=staff.staff_id,
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    for row in rows:
        session.add(SupervisionBatchCase(batch_id=batch.id, case_id=row.id))
        session.add(
            CaseEscalationRecipient(case_id=row.id, staff_id=leader.id, level=0, created_at=now)
        )
        session.add(
            CaseEvent(
                case_id=row.id,
                actor_id=staff.staff_id,
                type="batch_assigned",
                payload={
                    "batch_id": batch.id,
                    "title": title,
                    "leader_id": leader.id,
                    "leader": leader.display_name,
                    "due_at": due_at.isoformat(),
                },
                at=now,
            )
        )
    if leader.phone:
        await enqueue(
            session,
            key=f"batch:{batch.id}",
            case_id=None,
            to=StaffPhone(leader.phone),
            subject="集中交办",
            body=f"您有{len(rows)}件集中交办的信访事项（{title}），请按期办结。",
            now=now,
        )
    await record(
        session,
        actor=staff.actor,
        action="case.batch_assign",
        object_type="supervision_batch",
        object_id=str(batch.id),
        detail={"leader_id": leader.id, "case_ids": [r.id for r in rows]},
    )
    return batch.id


async def _views(
    session: AsyncSession, batches: list[SupervisionBatch], now: datetime
) -> list[BatchView]:
    if not batches:
        return []
    ids = [b.id for b in batches]
    links = (
        await session.execute(
            select(SupervisionBatchCase.batch_id, PetitionCase)
            .join(PetitionCase, PetitionCase.id == SupervisionBatchCase.case_id)
            .where(SupervisionBatchCase.batch_id.in_(ids))
            .order_by(PetitionCase.id)
        )
    ).all()
    marks = await deadline_marks(session, [c.id for _, c in links], now)
    leader_rows = await session.execute(
        select(Staff.id, Staff.display_name).where(Staff.id.in_({b.leader_id for b in batches}))
    )
    names: dict[int, str] = {int(i): str(n) for i, n in leader_rows.all()}
    out = []
    for b in batches:
        cases = [
            BatchCaseProgress(
                case_id=c.id,
                case_no=c.case_no,
                state_label=STATE_LABELS[c.state.value],
                closed=c.state not in OPEN_STATES,
                overdue=(
                    c.state in OPEN_STATES
                    and (now > b.due_at or (c.id in marks and marks[c.id].overdue))
                ),
                lead_dept_id=c.lead_dept_id,
            )
            for bid, c in links
            if bid == b.id
        ]
        out.append(
            BatchView(
                id=b.id,
                title=b.title,
                note=b.note,
                leader_id=b.leader_id,
                leader_name=str(names.get(b.leader_id, "")),
                due_at=b.due_at,
                created_at=b.created_at,
                overdue=now > b.due_at and any(not c.closed for c in cases),
                cases=cases,
            )
        )
    return out


async def list_batches(
    session: AsyncSession, *, staff: StaffIdentity, now: datetime
) -> list[BatchView]:
    """Every batch for a supervisor; a leader's own batches otherwise; newest first."""
    stmt = select(SupervisionBatch).order_by(SupervisionBatch.id.desc()).limit(200)
    if not staff.can(Action.case_supervise):
        stmt = stmt.where(SupervisionBatch.leader_id == staff.staff_id)
    return await _views(session, list(await session.scalars(stmt)), now)


async def my_batches(
    session: AsyncSession, *, staff: StaffIdentity, now: datetime
) -> list[BatchView]:
    """The batches assigned to the staff member (the home page)."""
    stmt = (
        select(SupervisionBatch)
        .where(SupervisionBatch.leader_id == staff.staff_id)
        .order_by(SupervisionBatch.due_at)
        .limit(50)
    )
    return await _views(session, list(await session.scalars(stmt)), now)


# --- red cards ---------------------------------------------------------------------------------


async def issue_red_card(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    department_id: int,
    reason: str,
    case_id: int | None,
    now: datetime,
) -> int:
    """红牌警告 to a department, with the reason and optionally a case (its timeline records it).

    Raises:
        PermissionDenied: not a centre supervisor.
        RedCardInvalid: unknown department or an empty reason.
        CaseNotFound: the case is missing or outside the staff member's scope.
    """
    if not staff.can(Action.red_card_issue):
        raise PermissionDenied("your roles may not issue red cards")
    reason = reason.strip()
    if len(reason) < 2:
        raise RedCardInvalid("a red card needs a reason", field="reason")
    if await session.get(Department, department_id) is None:
        raise RedCardInvalid(f"department {department_id} does not exist", field="department_id")
    if case_id is not None:
        await visible_case(session, staff=staff, case_id=case_id)
    card = RedCard(
        department_id=department_id,
        case_id=case_id,
        reason=reason,
        issued_by_id=staff.staff_id,
        issued_at=now,
    )
    session.add(card)
    await session.flush()
    if case_id is not None:
        session.add(
            CaseEvent(
                case_id=case_id,
                actor_id=staff.staff_id,
                type="red_card",
                payload={"red_card_id": card.id, "department_id": department_id, "reason": reason},
                at=now,
            )
        )
    await record(
        session,
        actor=staff.actor,
        action="case.red_card",
        object_type="red_card",
        object_id=str(card.id),
        detail={"department_id": department_id, "case_id": case_id},
    )
    return card.id


async def list_red_cards(session: AsyncSession, *, staff: StaffIdentity) -> list[RedCardView]:
    """Red cards, newest first (readers of 双考: Action.case_assess)."""
    if not staff.can(Action.case_assess):
        raise PermissionDenied("your roles may not read red cards")
    issuer = select(Staff.id, Staff.display_name).subquery()
    stmt = (
        select(RedCard, Department.name, PetitionCase.case_no, issuer.c.display_name)
        .join(Department, Department.id == RedCard.department_id)
        .join(issuer, issuer.c.id == RedCard.issued_by_id)
        .outerjoin(PetitionCase, PetitionCase.id == RedCard.case_id)
        .order_by(RedCard.id.desc())
        .limit(500)
    )
    return [
        RedCardView(
            id=c.id,
            department_id=c.department_id,
            department_name=str(dn),
            case_id=c.case_id,
            case_no=str(no or ""),
            reason=c.reason,
            issued_by_name=str(who),
            issued_at=c.issued_at,
        )
        for c, dn, no, who in (await session.execute(stmt)).all()
    ]


async def red_card_counts(
    session: AsyncSession, *, since: datetime | None, until: datetime | None
) -> dict[int, int]:
    """Red cards per department issued in [since, until)."""
    stmt = select(RedCard.department_id, func.count()).group_by(RedCard.department_id)
    if since is not None:
        stmt = stmt.where(RedCard.issued_at >= since)
    if until is not None:
        stmt = stmt.where(RedCard.issued_at < until)
    return {int(d): int(n) for d, n in (await session.execute(stmt)).all()}
