"""How a session ends: a reception's outcome at the desk (接访结果) — the session is closed (if
the room has not closed it yet) and the outcome recorded — and a mediation's outcome recorded
by its mediator or host (agreement, with the case's agreement linked; no agreement; withdrawn;
adjourned). The session record and the case timeline say how it ended.

Where outcomes are recorded (for integrators adding session events): `close_reception` and
`record_mediation_outcome`, both through `service.record_outcome`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record as audit
from server.auth.permissions import StaffIdentity
from server.cases import agreements as agreements_service
from server.cases.schemas import AgreementDraft
from server.kernel.errors import InvalidInput, PermissionDenied
from server.sessions import participants, service
from server.sessions.errors import IllegalSessionTransition
from server.sessions.models import ParticipantRole, SessionKind, SessionOutcome
from server.sessions.schemas import SessionView

#: The desk's outcome codes (web/views/desk.py OUTCOMES) as session outcomes.
RECEPTION_OUTCOMES: Mapping[str, SessionOutcome] = {
    "accepted": SessionOutcome.case_accepted,
    "answered": SessionOutcome.advice_given,
    "redirected": SessionOutcome.referred,
    "joint": SessionOutcome.joint_mediation,
    "interrupted": SessionOutcome.interrupted,
}


async def close_reception(
    session: AsyncSession, *, session_id: int, desk_outcome: str, now: datetime
) -> SessionView:
    """End the reception's session (a closed one stays as it is) and record its outcome
    (a session cancelled before it ever ran keeps none)."""
    view = await service.end_from_room(session, session_id=session_id, now=now)
    outcome = RECEPTION_OUTCOMES.get(desk_outcome)
    if outcome is None or view.state not in service.OUTCOME_STATES:
        return view
    return await service.record_outcome(session, session_id=session_id, outcome=outcome, now=now)


# --- a mediation's outcome, recorded by its mediator or host (issue #16 item 3) --------------

#: What the outcome form of a mediation offers (SessionOutcome values).
MEDIATION_OUTCOMES: tuple[SessionOutcome, ...] = (
    SessionOutcome.agreement,
    SessionOutcome.no_agreement,
    SessionOutcome.party_withdrew,
    SessionOutcome.adjourned,
)
#: Session roles whose staff member records the outcome.
OUTCOME_ROLES = frozenset({ParticipantRole.mediator, ParticipantRole.host})


class AgreementRequired(InvalidInput):
    code = "agreement_required"
    message_zh = "达成协议的，请选择本案的调解协议书，或起草一份。"


@dataclass(frozen=True, slots=True)
class OutcomeChoices:
    """What the outcome form needs: may the viewer record it, the outcomes, the case's
    agreements (id, label) and the session's parties for a new draft (name, side)."""

    allowed: bool
    outcomes: tuple[SessionOutcome, ...]
    agreements: tuple[tuple[int, str], ...]
    parties: tuple[tuple[str, str], ...]
    agreement_ids: tuple[int, ...]


async def _may_record(session: AsyncSession, view: SessionView, viewer: StaffIdentity) -> bool:
    if view.kind != SessionKind.mediation or view.state not in service.OUTCOME_STATES:
        return False
    if view.created_by_id == viewer.staff_id:
        return True
    people = await participants.participants_of(session, session_id=view.id)
    return any(p.staff_id == viewer.staff_id and p.role in OUTCOME_ROLES for p in people)


async def outcome_choices(
    session: AsyncSession, *, session_id: int, viewer: StaffIdentity
) -> OutcomeChoices:
    """The outcome form of a session the viewer may see (the caller has checked that)."""
    view = await service.get_session_by_id(session, session_id=session_id)
    allowed = await _may_record(session, view, viewer)
    agreements: list[tuple[int, str]] = []
    if view.case_id is not None:
        for a in await agreements_service.case_agreements(session, case_id=view.case_id):
            names = "、".join(str(p.get("name", "")) for p in a["parties"])
            agreements.append((int(a["id"]), f"#{a['id']} {names}"))
    people = await participants.participants_of(session, session_id=session_id)
    parties = tuple(
        (p.display_name, p.side or "applicant")
        for p in people
        if p.required_party and p.staff_id is None
    )
    return OutcomeChoices(
        allowed=allowed,
        outcomes=MEDIATION_OUTCOMES,
        agreements=tuple(agreements),
        parties=parties,
        agreement_ids=tuple(
            await agreements_service.session_agreement_ids(session, session_id=session_id)
        ),
    )


async def record_mediation_outcome(
    session: AsyncSession,
    *,
    session_id: int,
    viewer: StaffIdentity,
    outcome: SessionOutcome,
    now: datetime,
    agreement_id: int | None = None,
    draft: AgreementDraft | None = None,
) -> SessionView:
    """The mediator (or host) records how a mediation ended; "agreement" names an agreement of
    the case (an existing one, or `draft`, drafted now) and files it under the session. The
    case timeline says so (session_outcome). Audited.

    Raises:
        PermissionDenied: not the session's mediator, host or booker; not a mediation.
        AgreementRequired: "agreement" without an agreement.
        IllegalSessionTransition: the session has not run.
    """
    view = await service.get_session_by_id(session, session_id=session_id)
    if outcome not in MEDIATION_OUTCOMES:
        raise InvalidInput(f"{outcome} is not a mediation's outcome", field="outcome")
    if view.state not in service.OUTCOME_STATES:
        raise IllegalSessionTransition(
            f"a {view.state.value} session has no outcome yet",
            state=view.state.value,
            target="outcome",
        )
    if not await _may_record(session, view, viewer):
        raise PermissionDenied("only the session's mediator or host records its outcome")
    if outcome == SessionOutcome.agreement:
        if view.case_id is None:
            raise AgreementRequired(
                "a session without a case has no agreement", field="agreement_id"
            )
        if draft is not None:
            drafted = await agreements_service.draft_agreement(
                session,
                staff=viewer,
                case_id=view.case_id,
                draft=draft.model_copy(update={"session_id": session_id}),
                now=now,
            )
            agreement_id = drafted.id
        if agreement_id is None:
            raise AgreementRequired(
                "an agreement outcome names its agreement", field="agreement_id"
            )
        await agreements_service.link_session(
            session, agreement_id=agreement_id, case_id=view.case_id, session_id=session_id
        )
    result = await service.record_outcome(session, session_id=session_id, outcome=outcome, now=now)
    await audit(
        session,
        actor=viewer.actor,
        action="session.outcome_recorded",
        object_type="call_session",
        object_id=str(session_id),
        detail={"outcome": outcome.value, "agreement_id": agreement_id},
        at=now,
    )
    return result
