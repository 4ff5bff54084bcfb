"""The case lifecycle: claiming a self-service case, transitions (with their deadlines and
the evaluation link on reply), review requests (复查/复核), handlers and supervision (督办).

Services take the session first, never commit, and return views. Every state change writes
the per-state timestamp, a CaseEvent and an audit entry in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.access import (
    CaseNotFound,
    case_for_update,
    check_not_accused,
    load_facts,
    visible_case,
)
from server.cases.deadline_clock import DeadlineClock
from server.cases.escalation import record_recipients
from server.cases.evaluation import ReplyNotice, issue_evaluation
from server.cases.intake import insert_case
from server.cases.models import (
    CaseDeadline,
    CaseEscalation,
    CaseEvent,
    CaseHandler,
    CaseState,
    MatterType,
    PetitionCase,
    RevisitTask,
)
from server.cases.queries import detail_of, summary_of
from server.cases.schemas import (
    CaseDetail,
    CaseSummary,
    HandlerRequest,
    HandlerView,
    SupervisionRequest,
    TransitionRequest,
)
from server.cases.statemachine import (
    GRADE_COMPLEX,
    GRADE_HARD,
    OPEN_STATES,
    STATE_TIMESTAMP,
    FinalDecision,
    ReviewAlreadyRequested,
    ReviewWindowClosed,
    check_review_request,
    check_transition,
    escalated_grade,
    is_accused_unit,
)
from server.kernel.crypto import PiiCipher
from server.kernel.errors import IllegalTransition, InvalidInput, PermissionDenied
from server.org.models import (
    Department,
    LegalRoute,
    Resource,
    ResourceType,
    Role,
    Staff,
    StaffRole,
)


class AlreadyClaimed(PermissionDenied):
    code, message_zh = "already_claimed", "该案件已由其他工作人员认领"


async def claim(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, now: datetime
) -> CaseSummary:
    """认领: the first staff member to claim a self-service or agent case becomes its first
    receiver (never the agent who registered it).
    Never a member of the unit an accusation accuses: to them the case does not exist."""
    if not staff.can(Action.case_create):
        raise PermissionDenied("your roles may not claim cases")
    row = await case_for_update(session, case_id)
    facts = await load_facts(session, row)
    if is_accused_unit(staff, facts):
        raise CaseNotFound(f"case {case_id} does not exist or is outside your scope")
    if row.first_receiver_id is not None:
        if row.first_receiver_id == staff.staff_id:
            return summary_of(row)
        raise AlreadyClaimed("this case already has a first receiver")
    if staff.site_id not in facts.site_path and not staff.can(Action.case_view_all):
        raise PermissionDenied("claim cases of your own site")
    if row.agent_id == staff.staff_id:
        raise PermissionDenied("the agent who registered it does not claim it: an officer does")
    row.first_receiver_id = staff.staff_id
    row.updated_at = now
    session.add(
        CaseEvent(case_id=row.id, actor_id=staff.staff_id, type="claimed", payload={}, at=now)
    )
    await record(
        session, actor=staff.actor, action="case.claim", object_type="case", object_id=str(case_id)
    )
    return summary_of(row)


async def transition(
    session: AsyncSession,
    *,
    staff: StaffIdentity | None,
    case_id: int,
    request: TransitionRequest,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str = "",
    reply_notice: ReplyNotice | None = None,
) -> CaseDetail:
    """Fire one lifecycle transition; all effects in the caller's transaction.

    Raises:
        CaseNotFound, IllegalTransition, PermissionDenied, MissingField,
        ConfidentialTransferBlocked: nothing is written.
    """
    if staff is not None:
        row, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    else:
        row = await case_for_update(session, case_id)
        facts = await load_facts(session, row)
    fields = request.model_dump(exclude={"transition", "attachments"})
    t = check_transition(staff, facts, request.transition, fields)
    if t.name == "transfer":
        target = await session.get(Department, request.target_department_id)
        if target is None:
            raise InvalidInput("unknown target department", field="target_department_id")
    before = row.state
    actor_id = staff.staff_id if staff else None
    payload: dict[str, Any] = {"from": before.value, "to": t.target.value}
    for key in ("reason", "legal_route", "target_department_id", "note"):
        if fields.get(key) not in (None, ""):
            payload[key] = fields[key]
    if request.attachments:
        payload["attachments"] = request.attachments

    match t.name:
        case "accept":
            if row.lead_dept_id is None and staff is not None and staff.department_id is not None:
                row.lead_dept_id = staff.department_id
                session.add(
                    CaseHandler(
                        case_id=row.id,
                        department_id=staff.department_id,
                        staff_id=staff.staff_id,
                        role="lead",
                        task="受理承办",
                        added_by_id=actor_id,
                        added_at=now,
                    )
                )
            await deadline_clock.meet_deadline(session, case_id=row.id, kind="acceptance", now=now)
            await deadline_clock.open_deadline(
                session,
                case_id=row.id,
                kind="handling",
                start=now,
                now=now,
                deadlines=deadlines,
                limit_days=await _matter_days(session, row, "handling"),
            )
        case "not_accept" | "redirect_legal":
            row.legal_route = request.legal_route
            if t.name == "redirect_legal":  # 诉访分离: a matter for the statutory procedures
                row.grade = escalated_grade(row.grade, GRADE_COMPLEX)
                payload |= await _hand_over_to_room(
                    session, row=row, route=request.legal_route or "", by=actor_id, now=now
                )
            await deadline_clock.meet_deadline(session, case_id=row.id, kind="acceptance", now=now)
            await deadline_clock.cancel_deadlines(session, case_id=row.id, now=now)
        case "transfer":
            target_id = int(fields["target_department_id"])
            await _deactivate_lead(session, row.id)
            session.add(
                CaseHandler(
                    case_id=row.id,
                    department_id=target_id,
                    role="lead",
                    task=request.reason or "转送/交办",
                    added_by_id=actor_id,
                    added_at=now,
                )
            )
            row.lead_dept_id = target_id
        case "reply":
            row.reply_text = request.reply
            kind = {0: "handling", 1: "review_decision", 2: "re_review_decision"}[row.review_level]
            await deadline_clock.meet_deadline(session, case_id=row.id, kind=kind, now=now)
            # A second reply (after reopening) starts both windows again.
            await deadline_clock.open_deadline(
                session,
                case_id=row.id,
                kind=deadline_clock.EVALUATION,
                start=now,
                now=now,
                deadlines=deadlines,
                limit_days=reply_notice.evaluation_days if reply_notice else None,
                restart=True,
            )
            await deadline_clock.open_deadline(
                session,
                case_id=row.id,
                kind="revisit",
                start=now,
                now=now,
                deadlines=deadlines,
                restart=True,
            )
            if row.review_level < 2:
                await deadline_clock.open_deadline(
                    session,
                    case_id=row.id,
                    now=now,
                    deadlines=deadlines,
                    start=now,
                    kind="review_request" if row.review_level == 0 else "re_review_request",
                )
        case "revisit" | "close":
            await deadline_clock.meet_deadline(session, case_id=row.id, kind="revisit", now=now)
            if t.name == "revisit":
                await _close_revisit_tasks(
                    session, row, resolved=True, note=request.note, new=t.target, now=now
                )
            if t.name == "close":
                await deadline_clock.cancel_deadlines(
                    session, case_id=row.id, now=now, keep=("review_request", "re_review_request")
                )
        case "reopen":
            payload["reopened"] = True
            await _close_revisit_tasks(
                session, row, resolved=False, note=request.reason, new=t.target, now=now
            )
            # back in handling: a new handling period runs from now (DOMAIN §6)
            await deadline_clock.open_deadline(
                session,
                case_id=row.id,
                kind="handling",
                start=now,
                now=now,
                deadlines=deadlines,
                limit_days=await _matter_days(session, row, "handling"),
                restart=True,
            )
        case "terminate":
            await deadline_clock.cancel_deadlines(session, case_id=row.id, now=now)
        case _:
            pass
    row.state = t.target
    setattr(row, STATE_TIMESTAMP[t.target], now)
    row.updated_at = now
    session.add(CaseEvent(case_id=row.id, actor_id=actor_id, type=t.name, payload=payload, at=now))
    await session.flush()
    if t.name == "reply" and reply_notice is not None:
        await issue_evaluation(session, case=row, staff_id=actor_id, now=now, notice=reply_notice)
    await record(
        session,
        actor=staff.actor if staff else "system",
        action=f"case.{t.name}",
        object_type="case",
        object_id=str(row.id),
        ip=ip,
        detail={"from": before.value, "to": t.target.value},
    )
    return await detail_of(session, row, await load_facts(session, row), staff)


async def _close_revisit_tasks(
    session: AsyncSession,
    row: PetitionCase,
    *,
    resolved: bool,
    note: str | None,
    new: CaseState,
    now: datetime,
) -> None:
    """A revisit answers the open revisit tasks of the case (a dissatisfied evaluation opens
    one): resolved, or not (the case goes back to handling), with the old and new state."""
    tasks = await session.scalars(
        select(RevisitTask).where(RevisitTask.case_id == row.id, RevisitTask.status == "open")
    )
    for task in tasks:
        task.status = "done"
        task.resolved = resolved
        task.new_state = new.value
        task.note = note or None
        task.done_at = now


async def _matter_days(session: AsyncSession, row: PetitionCase, kind: str) -> int | None:
    if row.matter_type is None:
        return None
    days = await session.scalar(
        select(MatterType.deadline_days).where(MatterType.code == row.matter_type)
    )
    value = (days or {}).get(kind)
    return int(value) if value is not None else None


async def _deactivate_lead(session: AsyncSession, case_id: int) -> None:
    for h in await session.scalars(
        select(CaseHandler).where(
            CaseHandler.case_id == case_id, CaseHandler.role == "lead", CaseHandler.active.is_(True)
        )
    ):
        h.active = False


async def request_review(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    reason: str,
    now: datetime,
    deadlines: DeadlineClock,
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    pii: PiiCipher | None = None,
) -> CaseSummary:
    """Register a 复查 (or 复核) request as a child case linked by parent_case_id."""
    if not staff.can(Action.case_create) and not staff.can(Action.case_handle):
        raise PermissionDenied("your roles may not register a review request")
    parent, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    state = check_review_request(facts)
    await _check_review_chain(session, parent, now=now, tz=deadlines.tz)
    if not reason.strip():
        raise InvalidInput("a review request needs the petitioner's reasons", field="reason")
    level = parent.review_level + 1
    child = await insert_case(
        session,
        pii=pii,
        site_id=parent.site_id,
        channel=parent.channel,
        summary=f"{'复查' if level == 1 else '复核'}申请：{reason}",
        petitioner=None,
        petitioner_id=parent.petitioner_id,
        first_receiver_id=staff.staff_id,
        now=now,
        matter_type=parent.matter_type,
        case_no_format=case_no_format,
        timezone=deadlines.timezone,
        state=state,
        parent_case_id=parent.id,
        review_level=level,
        category=parent.category,
        confidential=parent.confidential,
        accused_dept_id=parent.accused_dept_id,
    )
    child.attributes = {}
    child.grade = escalated_grade(parent.grade, GRADE_COMPLEX)  # 复查/复核: no longer simple
    await deadline_clock.meet_deadline(
        session,
        case_id=parent.id,
        kind="review_request" if level == 1 else "re_review_request",
        now=now,
    )
    await deadline_clock.open_deadline(
        session,
        case_id=child.id,
        now=now,
        deadlines=deadlines,
        start=now,
        kind="review_decision" if level == 1 else "re_review_decision",
    )
    session.add(
        CaseEvent(
            case_id=parent.id,
            actor_id=staff.staff_id,
            type="review_requested",
            payload={"child_case_no": child.case_no, "level": level},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.request_review",
        object_type="case",
        object_id=str(parent.id),
        detail={"child": child.id, "level": level},
    )
    return summary_of(child)


async def _check_review_chain(
    session: AsyncSession, parent: PetitionCase, *, now: datetime, tz: ZoneInfo
) -> None:
    """复核 is final for the whole chain (original, 复查, 复核: DOMAIN §6), each reply may be
    reviewed once, and only within its 30-day window (the case's review_request or
    re_review_request deadline, opened by the written reply)."""
    root = parent
    while root.parent_case_id is not None:
        up = await session.get(PetitionCase, root.parent_case_id)
        if up is None:
            break
        root = up
    chain_ids = [root.id]
    frontier = [root.id]
    while frontier:
        children = list(
            await session.scalars(
                select(PetitionCase.id).where(PetitionCase.parent_case_id.in_(frontier))
            )
        )
        frontier = [c for c in children if c not in chain_ids]
        chain_ids.extend(frontier)
    levels = list(
        await session.scalars(
            select(PetitionCase.review_level).where(PetitionCase.id.in_(chain_ids))
        )
    )
    if max(levels, default=0) >= 2:
        raise FinalDecision("the chain already has a re-review (复核) decision; it is final")
    if max(levels, default=0) > parent.review_level:
        raise ReviewAlreadyRequested("a review of this reply is already registered")
    window = await session.scalar(
        select(CaseDeadline).where(
            CaseDeadline.case_id == parent.id,
            CaseDeadline.kind.in_(("review_request", "re_review_request")),
        )
    )
    if window is not None and now > window.due_at:
        ends = window.due_at.astimezone(tz)
        raise ReviewWindowClosed(
            f"the review window closed at {window.due_at.isoformat()}",
            ends_local=f"{ends:%Y年%m月%d日 %H:%M}",
        )


async def _hand_over_to_room(
    session: AsyncSession, *, row: PetitionCase, route: str, by: int | None, now: datetime
) -> dict[str, Any]:
    """导入法定途径 hand-over: the centre's room for the route (法定途径解决矛盾纠纷接谈室, the
    department whose `legal_route` is it) becomes a handler of the case (role `legal_route`),
    so its officers may open it. Returns what the timeline records: the room's id and name,
    or nothing when the district has no room for the route (the notice names the organ)."""
    if route not in {r.value for r in LegalRoute}:
        return {}
    room = await session.scalar(
        select(Department)
        .where(Department.legal_route == LegalRoute(route))
        .order_by(Department.id)
        .limit(1)
    )
    if room is None or (row.confidential and room.id == row.accused_dept_id):
        return {}
    session.add(
        CaseHandler(
            case_id=row.id,
            department_id=room.id,
            role="legal_route",
            task="导入法定途径：接收移交",
            added_by_id=by,
            added_at=now,
            active=True,
        )
    )
    window = await session.scalar(  # the room itself where the district has one on file
        select(Resource.name)
        .where(Resource.department_id == room.id, Resource.type == ResourceType.legal_room)
        .order_by(Resource.id)
        .limit(1)
    )
    return {"room_department_id": room.id, "room": window or room.name}


async def add_handler(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    request: HandlerRequest,
    now: datetime,
) -> HandlerView:
    """Add a co-handling department or a named expert/supervisor/mediator. Never removes the
    first receiver; blocks the accused unit on confidential cases."""
    if not staff.can(Action.case_assign):
        raise PermissionDenied("your roles may not assign handlers")
    row, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    if request.department_id is None and request.staff_id is None:
        raise InvalidInput("name a department or a staff member", field="department_id")
    dept_id = request.department_id
    if request.staff_id is not None:
        person = await session.get(Staff, request.staff_id)
        if person is None:
            raise InvalidInput("unknown staff member", field="staff_id")
        dept_id = dept_id or person.department_id
        check_not_accused(row, member_of=person.department_id)
        if request.role == "expert" and Role.expert not in set(
            await session.scalars(select(StaffRole.role).where(StaffRole.staff_id == person.id))
        ):
            raise InvalidInput(
                "the staff member is not an expert", field="staff_id", reason_zh="所选人员不是专家"
            )
    if dept_id is not None and await session.get(Department, dept_id) is None:
        raise InvalidInput("unknown department", field="department_id")
    check_not_accused(row, department_id=dept_id)
    h = CaseHandler(
        case_id=case_id,
        department_id=dept_id,
        staff_id=request.staff_id,
        role=request.role,
        task=request.task,
        added_by_id=staff.staff_id,
        added_at=now,
        active=True,
    )
    session.add(h)
    row.updated_at = now
    await session.flush()
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="handler_added",
            payload={"department_id": dept_id, "staff_id": request.staff_id, "role": request.role},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.add_handler",
        object_type="case",
        object_id=str(case_id),
        detail={"department_id": dept_id, "role": request.role},
    )
    del facts
    return HandlerView(
        id=h.id,
        department_id=h.department_id,
        staff_id=h.staff_id,
        role=h.role,
        task=h.task,
        reply=h.reply,
        active=h.active,
    )


class NotInvitedExpert(PermissionDenied):
    code, message_zh = "expert_not_invited", "您不是本事项邀请的专家，不能出具专家意见"


async def _open_case_with_text(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    action: Action,
    text: str,
    field: str,
    required_zh: str,
    what: str,
) -> tuple[PetitionCase, str]:
    """The opening of an action that writes a required text on an open case: the permission,
    the case as its viewer may see it (locked), open, and the text stripped and not empty."""
    if not staff.can(action):
        raise PermissionDenied(f"your roles may not do {what}")
    row, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    if facts.state not in OPEN_STATES:
        raise IllegalTransition(f"{what} is for open cases only")
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInput(f"the {field} is empty", field=field, reason_zh=required_zh)
    return row, cleaned


async def record_expert_opinion(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    opinion: str,
    now: datetime,
) -> None:
    """专家意见: an expert invited to the case (an active expert handler naming them) records a
    written opinion; a later opinion replaces the earlier one on the handler row, and every
    opinion stays on the timeline. Confidential cases: only those who may see the case reach
    it (`visible_case`), and a member of the accused unit is never invited (`add_handler`)."""
    row, text = await _open_case_with_text(
        session,
        staff=staff,
        case_id=case_id,
        action=Action.case_opinion,
        text=opinion,
        field="opinion",
        required_zh="请填写专家意见",
        what="an expert opinion",
    )
    invite = await session.scalar(
        select(CaseHandler)
        .where(
            CaseHandler.case_id == case_id,
            CaseHandler.role == "expert",
            CaseHandler.staff_id == staff.staff_id,
            CaseHandler.active.is_(True),
        )
        .order_by(CaseHandler.id.desc())
        .limit(1)
    )
    if invite is None:
        raise NotInvitedExpert("the staff member is not an invited expert on this case")
    invite.reply = text
    invite.replied_at = now
    row.updated_at = now
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="expert_opinion",
            payload={"handler_id": invite.id, "opinion": text},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.expert_opinion",
        object_type="case",
        object_id=str(case_id),
        detail={"handler_id": invite.id, "length": len(text)},
    )
    await session.flush()


async def mark_hard(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, reason: str, now: datetime
) -> None:
    """列为疑难积案 (DOMAIN §4, 梯次滤化): a supervisor marks a long-standing open case hard,
    with a reason; the grade only rises (`escalated_grade`), and the case goes to the expert
    panel's stage. On the timeline and audited (`case.marked_hard`)."""
    row, text = await _open_case_with_text(
        session,
        staff=staff,
        case_id=case_id,
        action=Action.case_supervise,
        text=reason,
        field="reason",
        required_zh="请填写列为疑难积案的理由",
        what="marking a case hard",
    )
    if row.grade == GRADE_HARD:
        raise IllegalTransition("the case is already marked hard")
    before = row.grade
    row.grade = escalated_grade(row.grade, GRADE_HARD)
    row.updated_at = now
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="marked_hard",
            payload={"reason": text, "from": before},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.marked_hard",
        object_type="case",
        object_id=str(case_id),
        detail={"from": before},
    )
    await session.flush()


async def supervise(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    request: SupervisionRequest,
    now: datetime,
) -> int:
    """督办: attaches at any open state and never changes the state."""
    if not staff.can(Action.case_supervise):
        raise PermissionDenied("your roles may not issue supervision orders")
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    if facts.state not in OPEN_STATES:
        raise IllegalTransition("supervision attaches to open cases only")
    esc = CaseEscalation(
        case_id=case_id,
        type=request.type,
        level=1,
        to_role="dept_leader",
        note=request.note,
        due_at=now + timedelta(days=request.due_days),
        created_by_id=staff.staff_id,
        created_at=now,
    )
    session.add(esc)
    await session.flush()
    # the 督办 goes to the lead department's leaders: they may open the case even when it is
    # confidential (the lead department is never the accused unit)
    if row.lead_dept_id is not None:
        await record_recipients(session, [(case_id, row.lead_dept_id, 0, "dept_leader")], now=now)
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="supervision",
            payload={"type": request.type, "note": request.note},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.supervise",
        object_type="case",
        object_id=str(row.id),
        detail={"type": request.type},
    )
    return esc.id
