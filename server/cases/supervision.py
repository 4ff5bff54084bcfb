"""督办 after it is issued (lifecycle.supervise issues it): the supervised unit's response
(`respond_supervision`, by a handler or leader of the lead department) and the supervisor's
verdict (`close_supervision`: satisfied, or not with a comment). The response is stored on the
CaseEscalation row; the verdict is a timeline event ("supervision_verdict") whose payload names
the escalation. Both write the timeline and the audit log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import StaffIdentity
from server.cases.access import latest_supervision, visible_case
from server.cases.models import CaseEvent
from server.cases.statemachine import other_actions
from server.kernel.errors import IllegalTransition, InvalidInput, PermissionDenied


class SupervisionSettled(IllegalTransition):
    code, message_zh = "supervision_settled", "该督办已答复或已评议，本次操作未执行"


async def _check(
    session: AsyncSession, staff: StaffIdentity, case_id: int, name: str, wanted: str
) -> int:
    _, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    if name in other_actions(staff, facts):
        esc, _ = await latest_supervision(session, case_id)
        if esc is None:  # cannot happen: facts.supervision came from it
            raise SupervisionSettled("no supervision on this case", transition=name)
        return esc.id
    if facts.supervision != wanted:
        raise SupervisionSettled(f"no supervision awaiting {name}", transition=name)
    raise PermissionDenied(f"you may not {name} on this case")


async def respond_supervision(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, response: str, now: datetime
) -> None:
    """The lead department answers the open 督办 (what it did, what it will do).

    Raises:
        CaseNotFound: the case is out of the staff member's scope.
        SupervisionSettled: no 督办 awaits a response (answered meanwhile).
        PermissionDenied: not a handler or leader of the lead department.
        InvalidInput: an empty response.
    """
    response = response.strip()
    if len(response) < 2:
        raise InvalidInput("a supervision response needs text", field="response")
    esc_id = await _check(session, staff, case_id, "respond_supervision", "open")
    esc, _ = await latest_supervision(session, case_id)
    if esc is None or esc.id != esc_id:
        raise SupervisionSettled("the supervision changed", transition="respond_supervision")
    esc.response = response
    esc.responded_at = now
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="supervision_response",
            payload={"escalation_id": esc_id, "response": response},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.supervision_respond",
        object_type="case",
        object_id=str(case_id),
        detail={"escalation_id": esc_id},
    )


async def close_supervision(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    satisfied: bool,
    comment: str,
    now: datetime,
) -> None:
    """The supervisor's verdict on the unit's response; "not satisfied" needs a comment (a
    new 督办 may follow).

    Raises:
        CaseNotFound, SupervisionSettled, PermissionDenied, InvalidInput (as above).
    """
    comment = comment.strip()
    if not satisfied and len(comment) < 2:
        raise InvalidInput(
            "a 'not satisfied' verdict needs a comment",
            field="comment",
            reason_zh="评议为不满意时请写明理由",
        )
    esc_id = await _check(session, staff, case_id, "close_supervision", "responded")
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="supervision_verdict",
            payload={"escalation_id": esc_id, "satisfied": satisfied, "comment": comment},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.supervision_close",
        object_type="case",
        object_id=str(case_id),
        detail={"escalation_id": esc_id, "satisfied": satisfied},
    )
