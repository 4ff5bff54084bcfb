"""签发: a department handler's written reply or refusal is a draft until the lead
department's leader signs it off (DOMAIN §10: dept_handler drafts replies, dept_leader signs
them). Only the sign-off fires the transition (replied / not_accepted) and, for a reply, sends
the evaluation link; the leader may instead return the draft with a note. A leader's own
reply or refusal is signed as it is given. The deployment setting ONEDOOR_REPLY_SIGN_OFF
(default on) turns the step off (then every reply goes out directly).

Drafts are case events (no table): "reply_drafted" / "refusal_drafted" carry the text; the
draft is pending until a later "signed_off", "draft_returned" or a newer draft. Services take
the session first, never commit, and write the timeline and the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import StaffIdentity
from server.cases import lifecycle
from server.cases.access import visible_case
from server.cases.deadline_clock import DeadlineClock
from server.cases.evaluation import ReplyNotice
from server.cases.models import CaseEvent
from server.cases.schemas import CaseDetail, TransitionRequest
from server.cases.statemachine import TRANSITIONS, CaseFacts, check_transition
from server.kernel.errors import Conflict, InvalidInput, PermissionDenied
from server.org.models import Role

#: The transitions a leader signs off, with their draft event and notice kind.
DRAFT_EVENTS = {"reply": "reply_drafted", "not_accept": "refusal_drafted"}
NOTICE_KIND = {"reply": "reply", "not_accept": "refusal"}
_CLOSING = ("signed_off", "draft_returned")

#: The case-page actions on a pending draft (labels for forms and messages).
SIGN_OFF_ACTIONS = {"sign_off": "签发", "return_draft": "退回修改"}


class NoPendingDraft(Conflict):
    code, message_zh = (
        "no_pending_draft",
        "该草稿已经签发或退回（可能其他领导刚刚办理），本次操作未执行。请查看最新状态。",
    )


@dataclass(frozen=True, slots=True)
class Draft:
    event_id: int
    transition: str  # reply | not_accept
    text: str
    drafted_by: int | None
    drafted_at: datetime
    #: The leader's note when the latest draft of the case was returned (then not pending).
    returned_note: str = ""


def may_sign(staff: StaffIdentity, facts: CaseFacts) -> bool:
    """The lead department's leader signs its replies and refusals."""
    return (
        Role.dept_leader in staff.roles
        and facts.lead_dept_id is not None
        and staff.department_id == facts.lead_dept_id
    )


def needs_sign_off(staff: StaffIdentity, facts: CaseFacts, transition: str) -> bool:
    """A department handler's reply or refusal on a case with a lead department, unless they
    are also its leader. (The petition office's own decisions, e.g. a window officer refusing
    a petition at registration, go out as they are given.)"""
    return (
        transition in DRAFT_EVENTS
        and facts.lead_dept_id is not None
        and Role.dept_handler in staff.roles
        and not may_sign(staff, facts)
    )


async def latest_draft(session: AsyncSession, case_id: int) -> tuple[Draft | None, bool]:
    """(the latest draft of the case, whether it still awaits sign-off)."""
    events = list(
        await session.scalars(
            select(CaseEvent)
            .where(
                CaseEvent.case_id == case_id,
                CaseEvent.type.in_((*DRAFT_EVENTS.values(), *_CLOSING)),
            )
            .order_by(CaseEvent.at.desc(), CaseEvent.id.desc())
        )
    )
    for i, e in enumerate(events):
        if e.type in _CLOSING:
            continue
        p = e.payload or {}
        closing = events[:i]
        returned = next((c for c in closing if c.type == "draft_returned"), None)
        draft = Draft(
            event_id=e.id,
            transition=str(p.get("transition", "reply")),
            text=str(p.get("text", "")),
            drafted_by=e.actor_id,
            drafted_at=e.at,
            returned_note=str((returned.payload or {}).get("note", "")) if returned else "",
        )
        return draft, not closing
    return None, False


async def reply_or_draft(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    request: TransitionRequest,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str = "",
    reply_notice: ReplyNotice | None = None,
    require_sign_off: bool = True,
) -> bool:
    """Fire the transition, or keep a handler's reply/refusal as a draft for the leader.
    Returns True when a draft was stored (nothing else changed)."""
    _, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    name = request.transition
    if not (require_sign_off and needs_sign_off(staff, facts, name)):
        await lifecycle.transition(
            session,
            staff=staff,
            case_id=case_id,
            request=request,
            now=now,
            deadlines=deadlines,
            ip=ip,
            reply_notice=reply_notice,
        )
        return False
    fields = request.model_dump(exclude={"transition", "attachments"})
    check_transition(staff, facts, name, fields)  # state, roles, scope, required text
    text = request.reply if name == "reply" else request.reason
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type=DRAFT_EVENTS[name],
            payload={"transition": name, "text": text},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action=f"case.{DRAFT_EVENTS[name]}",
        object_type="case",
        object_id=str(case_id),
        ip=ip,
    )
    return True


async def _pending_for_leader(
    session: AsyncSession, staff: StaffIdentity, case_id: int
) -> tuple[Draft, CaseFacts]:
    _, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    if not may_sign(staff, facts):
        raise PermissionDenied("only the lead department's leader signs off replies")
    draft, pending = await latest_draft(session, case_id)
    if draft is None or not pending:
        raise NoPendingDraft(f"case {case_id} has no draft awaiting sign-off")
    return draft, facts


async def sign(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str = "",
    reply_notice: ReplyNotice | None = None,
) -> CaseDetail:
    """签发 the pending draft: the transition happens now, in the leader's name (and the
    evaluation link goes out for a reply).

    Raises:
        PermissionDenied: not the lead department's leader.
        NoPendingDraft: signed or returned meanwhile; nothing is written.
        IllegalTransition: the case's state no longer allows it.
    """
    draft, _ = await _pending_for_leader(session, staff, case_id)
    text_field = "reply" if draft.transition == "reply" else "reason"
    detail = await lifecycle.transition(
        session,
        staff=staff,
        case_id=case_id,
        request=TransitionRequest(transition=draft.transition, **{text_field: draft.text}),
        now=now,
        deadlines=deadlines,
        ip=ip,
        reply_notice=reply_notice,
    )
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="signed_off",
            payload={"kind": NOTICE_KIND[draft.transition], "draft_event_id": draft.event_id},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.sign_off",
        object_type="case",
        object_id=str(case_id),
        ip=ip,
        detail={"transition": draft.transition, "drafted_by": draft.drafted_by},
    )
    return detail


async def return_draft(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    note: str,
    now: datetime,
    ip: str = "",
) -> None:
    """退回修改: the draft goes back to its author with the leader's note; nothing else changes."""
    if not note.strip():
        raise InvalidInput("say what to change", field="note")
    draft, _ = await _pending_for_leader(session, staff, case_id)
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="draft_returned",
            payload={"note": note, "draft_event_id": draft.event_id},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.return_draft",
        object_type="case",
        object_id=str(case_id),
        ip=ip,
    )


async def draft_view(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int
) -> dict[str, object] | None:
    """The case's latest draft for the case page (None if there is none, or it was signed):
    its text, author, time, whether it awaits sign-off, a return note, and whether this viewer
    signs it."""
    _, facts = await visible_case(session, staff=staff, case_id=case_id)
    draft, pending = await latest_draft(session, case_id)
    if draft is None or not (pending or draft.returned_note):
        return None
    if facts.state not in TRANSITIONS[draft.transition].sources:
        return None  # decided meanwhile (e.g. the leader replied himself)
    return {
        "transition": draft.transition,
        "label": "书面答复意见" if draft.transition == "reply" else "不予受理理由",
        "text": draft.text,
        "drafted_by": draft.drafted_by,
        "drafted_at": draft.drafted_at,
        "pending": pending,
        "returned_note": draft.returned_note,
        "may_sign": pending and may_sign(staff, facts),
    }
