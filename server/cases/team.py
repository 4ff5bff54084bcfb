"""Who works on a case besides its departments: the mediator booked for one of its
mediations becomes a named handler (role `mediator`, no department), so they may open the
case they mediate (access.py's rule for named handlers) — never a member of the accused unit
of an accusation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.cases.access import CaseNotFound, check_not_accused
from server.cases.models import CaseEvent, CaseHandler, PetitionCase
from server.kernel.errors import InvalidInput
from server.org.models import Staff


async def name_mediator(
    session: AsyncSession,
    *,
    case_id: int,
    staff_id: int,
    added_by_id: int | None,
    actor: str,
    now: datetime,
) -> bool:
    """Make `staff_id` a named mediator of the case (once); True if they were added.

    Raises:
        CaseNotFound: no such case.
        InvalidInput: no such staff member (field `mediator_id`).
        ConfidentialTransferBlocked: they belong to the unit an accusation accuses.
    """
    row = await session.get(PetitionCase, case_id)
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    person = await session.get(Staff, staff_id)
    if person is None:
        raise InvalidInput("unknown staff member", field="mediator_id")
    check_not_accused(row, member_of=person.department_id)
    named = await session.scalar(
        select(CaseHandler.id).where(
            CaseHandler.case_id == case_id,
            CaseHandler.staff_id == staff_id,
            CaseHandler.role == "mediator",
            CaseHandler.active.is_(True),
        )
    )
    if named is not None:
        return False
    session.add(
        CaseHandler(
            case_id=case_id,
            department_id=None,  # the person, not their department
            staff_id=staff_id,
            role="mediator",
            task="调解",
            added_by_id=added_by_id,
            added_at=now,
            active=True,
        )
    )
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=added_by_id,
            type="handler_added",
            payload={"department_id": None, "staff_id": staff_id, "role": "mediator"},
            at=now,
        )
    )
    await record(
        session,
        actor=actor,
        action="case.add_handler",
        object_type="case",
        object_id=str(case_id),
        detail={"staff_id": staff_id, "role": "mediator", "via": "booking"},
        at=now,
    )
    await session.flush()
    return True
