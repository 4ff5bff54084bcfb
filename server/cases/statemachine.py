"""The case lifecycle (DOMAIN §7) as pure data and functions: no I/O, no ORM.

    registered ─accept─► accepted ─start_handling─► handling ─reply─► replied ─evaluate─► evaluated
        │  ▲                                           ▲                                  │
        │  └─accept── transferred ◄─transfer─┘         └──────────reopen──────────────────┤
        ├─not_accept──► not_accepted                                      revisit ─► revisited ─close─► closed
        ├─redirect_legal─► redirected_legal
        └ any open state ─terminate─► terminated
    review / re_review (child cases, parent_case_id) ─reply─► replied ─► … ─► closed (复核 is final)

Who may fire a transition is decided in two steps: the permission table (`Action`, one per
transition) and a scope rule on the case (`may_act`). Which cases a staff member may see at all
is `can_view`, which also enforces confidentiality of accusation cases (检举控告).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.auth.permissions import Action, StaffIdentity
from server.cases.models import CaseState
from server.kernel.errors import IllegalTransition, InvalidInput, PermissionDenied
from server.org.models import Role

S = CaseState

OPEN_STATES = frozenset(
    {
        S.registered,
        S.accepted,
        S.transferred,
        S.handling,
        S.replied,
        S.evaluated,
        S.revisited,
        S.review,
        S.re_review,
    }
)
FINAL_STATES = frozenset({S.not_accepted, S.redirected_legal, S.closed, S.terminated})
#: States from which the petitioner may ask for review (复查) or re-review (复核).
REVIEWABLE_STATES = frozenset({S.replied, S.evaluated, S.revisited, S.closed})
MAX_REVIEW_LEVEL = 2  # 0 original, 1 复查, 2 复核 (final)

#: The column on petition_case that stamps the time a state was entered.
STATE_TIMESTAMP = {state: f"{state.value}_at" for state in CaseState}


class MissingField(InvalidInput):
    code, message_zh = "missing_field", "缺少必填内容"


class ConfidentialTransferBlocked(PermissionDenied):
    code, message_zh = "confidential_transfer_blocked", "检举控告材料不得转送被检举单位"


class FinalDecision(IllegalTransition):
    code, message_zh = "final_decision", "复核意见为最终意见，不再受理复查复核"


class ReviewAlreadyRequested(IllegalTransition):
    code, message_zh = "review_already_requested", "该答复意见已登记复查（复核）申请，不能重复申请"


class ReviewWindowClosed(IllegalTransition):
    code, message_zh = "review_window_closed", "申请期限已届满，不再受理"

    def __init__(self, message: str = "", *, ends_local: str, **details: Any) -> None:
        super().__init__(message, ends=ends_local, **details)
        # the window's end (district zone) belongs in the message the clerk reads
        self.message_zh = f"申请期限已于{ends_local}届满，不再受理"  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    label_zh: str
    sources: frozenset[CaseState]
    target: CaseState
    action: Action
    required: tuple[str, ...] = ()
    #: Only the system (evaluation link, sweep) fires it, never a staff form.
    system_only: bool = False


def _t(
    name: str,
    label: str,
    sources: set[CaseState],
    target: CaseState,
    action: Action,
    required: tuple[str, ...] = (),
    *,
    system_only: bool = False,
) -> Transition:
    return Transition(name, label, frozenset(sources), target, action, required, system_only)


TRANSITIONS: Mapping[str, Transition] = {
    t.name: t
    for t in (
        _t("accept", "受理", {S.registered, S.transferred}, S.accepted, Action.case_handle),
        _t(
            "not_accept",
            "不予受理",
            {S.registered, S.transferred},
            S.not_accepted,
            Action.case_handle,
            ("reason",),
        ),
        _t(
            "redirect_legal",
            "导入法定途径",
            {S.registered, S.transferred},
            S.redirected_legal,
            Action.case_handle,
            ("legal_route", "reason"),
        ),
        _t(
            "transfer",
            "转送/交办",
            {S.registered, S.transferred, S.accepted},
            S.transferred,
            Action.case_transfer,
            ("target_department_id",),
        ),
        _t("start_handling", "开始办理", {S.accepted}, S.handling, Action.case_handle),
        _t(
            "reply",
            "书面答复",
            {S.handling, S.review, S.re_review},
            S.replied,
            Action.case_handle,
            ("reply",),
        ),
        _t("evaluate", "评价", {S.replied}, S.evaluated, Action.case_handle, system_only=True),
        _t(
            "revisit",
            "回访（已解决）",
            {S.replied, S.evaluated},
            S.revisited,
            Action.case_handle,
            ("note",),
        ),
        _t(
            "reopen",
            "回访未解决，退回办理",
            {S.replied, S.evaluated, S.revisited},
            S.handling,
            Action.case_handle,
            ("reason",),
        ),
        _t("close", "结案", {S.revisited}, S.closed, Action.case_handle),
        _t("terminate", "终止", set(OPEN_STATES), S.terminated, Action.case_assign, ("reason",)),
    )
}

LEGAL_ROUTES = {
    "arbitration": "仲裁",
    "review": "行政复议",
    "litigation": "诉讼",
    "mediation": "人民调解",
    "legal_aid": "法律援助",
    "police": "公安机关报案",  # no room at the centre: the notice names the organ only
}


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What the rules need to know about one case (built by the service from the rows)."""

    state: CaseState
    site_id: int
    first_receiver_id: int | None
    lead_dept_id: int | None
    review_level: int = 0
    #: The community agent who registered it (channel agent); sees it like the first receiver.
    agent_id: int | None = None
    confidential: bool = False
    accused_dept_id: int | None = None
    #: The case's site and its ancestors (community → street → district).
    site_path: frozenset[int] = frozenset()
    handler_staff_ids: frozenset[int] = frozenset()
    handler_dept_ids: frozenset[int] = frozenset()
    #: Staff told of the case by 三级抄告 or addressed by a 督办 (CaseEscalationRecipient).
    escalated_staff_ids: frozenset[int] = frozenset()
    #: The latest 督办 issued by a person: "" none or settled, "open" awaiting the unit's
    #: response, "responded" awaiting the supervisor's verdict.
    supervision: str = ""
    #: 梯次滤化 grade: simple, complex or hard (GRADES).
    grade: str = "simple"


def is_accused_unit(staff: StaffIdentity, facts: CaseFacts) -> bool:
    return (
        facts.confidential
        and facts.accused_dept_id is not None
        and staff.department_id == facts.accused_dept_id
    )


def can_view(staff: StaffIdentity, facts: CaseFacts) -> bool:
    """Scope of `case.view`. Confidential cases: named handlers and supervisors only, and never
    anyone in the accused unit."""
    if not staff.can(Action.case_view) or is_accused_unit(staff, facts):
        return False
    if staff.can(Action.case_view_all):
        return True
    if staff.staff_id == facts.first_receiver_id or staff.staff_id in facts.handler_staff_ids:
        return True
    if staff.staff_id == facts.agent_id:
        return True
    if staff.staff_id in facts.escalated_staff_ids:
        return True
    if facts.confidential:
        return False
    depts = facts.handler_dept_ids | ({facts.lead_dept_id} if facts.lead_dept_id else set())
    if (
        staff.department_id is not None
        and staff.department_id in depts
        and (staff.roles & {Role.dept_handler, Role.dept_leader})
    ):
        return True
    if Role.street_coordinator in staff.roles and staff.site_id in facts.site_path:
        return True
    return bool(
        staff.roles & {Role.window_officer, Role.community_agent} and staff.site_id == facts.site_id
    )


#: Deadlines that are a petitioner's or the parties' window, not a unit's obligation: when one
#: passes, nobody is late (no warning, no 抄告, never in a report against a department).
PARTY_WINDOWS = frozenset(
    {"review_request", "re_review_request", "evaluation", "judicial_confirmation"}
)

#: 梯次滤化 (DOMAIN §4): simple (初信初访, the departments' windows), complex (repeated or
#: complex: statutory procedures, 复查/复核), hard (疑难积案: the expert panel). A case's grade
#: only rises: a repeat petition, a review request or a legal route make it complex; the
#: supervisors mark long-standing cases hard.
GRADE_SIMPLE, GRADE_COMPLEX, GRADE_HARD = "simple", "complex", "hard"
GRADES = (GRADE_SIMPLE, GRADE_COMPLEX, GRADE_HARD)


def escalated_grade(current: str, at_least: str) -> str:
    """`current` raised to `at_least` (never lowered)."""
    rank = {g: i for i, g in enumerate(GRADES)}
    return at_least if rank.get(at_least, 0) > rank.get(current, 0) else current


#: What a community agent (代办员) may do to a case besides registering it and following it
#: up (DOMAIN.md §10): the revisit. Accepting, refusing, replying and closing are the handling
#: unit's; an agent who registered a case is its first receiver but not its handler.
AGENT_TRANSITIONS = frozenset({"revisit"})


def agent_only(staff: StaffIdentity) -> bool:
    """The community agent role is the only business role this member of staff holds."""
    return Role.community_agent in staff.roles and not (
        staff.roles
        & {
            Role.window_officer,
            Role.street_coordinator,
            Role.centre_supervisor,
            Role.dept_handler,
            Role.dept_leader,
        }
    )


def may_act(staff: StaffIdentity, facts: CaseFacts, transition: Transition) -> bool:
    """Scope of a transition beyond the permission table."""
    if not can_view(staff, facts):
        return False
    if agent_only(staff):
        return transition.name in AGENT_TRANSITIONS
    if staff.can(Action.case_view_all) and transition.action in (
        Action.case_assign,
        Action.case_transfer,
    ):
        return True
    if staff.staff_id == facts.first_receiver_id:
        return True
    in_lead_dept = staff.department_id is not None and staff.department_id == facts.lead_dept_id
    if in_lead_dept and Role.dept_leader in staff.roles:
        return True
    if transition.action == Action.case_handle and (
        in_lead_dept or staff.staff_id in facts.handler_staff_ids
    ):
        return True
    return Role.street_coordinator in staff.roles and staff.site_id in facts.site_path


def check_transition(
    staff: StaffIdentity | None,
    facts: CaseFacts,
    name: str,
    fields: Mapping[str, Any],
) -> Transition:
    """Validate one transition; returns it, or raises without side effects.

    `staff=None` is the system (evaluation links, the deadline sweep).

    Raises:
        IllegalTransition: unknown transition or not allowed from the current state.
        PermissionDenied: the roles or the scope do not allow it.
        MissingField: a required field (reason, legal route, target department) is empty.
        ConfidentialTransferBlocked: a confidential case would go to the accused unit.
    """
    transition = TRANSITIONS.get(name)
    if transition is None:
        raise IllegalTransition(f"unknown transition {name!r}")
    if facts.state not in transition.sources:
        raise IllegalTransition(
            f"cannot {name} a case in state {facts.state.value}",
            state=facts.state.value,
            transition=name,
        )
    if staff is not None:
        if transition.system_only:
            raise PermissionDenied(f"{name} is recorded by the system only")
        if not staff.can(transition.action):
            raise PermissionDenied(f"your roles may not {name}")
        if not may_act(staff, facts, transition):
            raise PermissionDenied(f"this case is outside your scope for {name}")
    missing = [f for f in transition.required if _blank(fields.get(f))]
    if missing:
        raise MissingField(f"{name} needs {', '.join(missing)}", fields=missing)
    if name == "redirect_legal" and fields["legal_route"] not in LEGAL_ROUTES:
        raise InvalidInput(f"unknown legal route {fields['legal_route']!r}", field="legal_route")
    if (
        name == "transfer"
        and facts.confidential
        and facts.accused_dept_id is not None
        and int(fields["target_department_id"]) == facts.accused_dept_id
    ):
        raise ConfidentialTransferBlocked("accusation material may not go to the accused unit")
    return transition


def check_review_request(facts: CaseFacts) -> CaseState:
    """The state of the child case a review request would create (复查 or 复核)."""
    if facts.review_level >= MAX_REVIEW_LEVEL:
        raise FinalDecision("the re-review (复核) decision is final")
    if facts.state not in REVIEWABLE_STATES:
        raise IllegalTransition(
            f"a review needs a written reply first (state {facts.state.value})",
            state=facts.state.value,
            transition="request_review",
        )
    return S.review if facts.review_level == 0 else S.re_review


def available_transitions(staff: StaffIdentity, facts: CaseFacts) -> list[Transition]:
    """Transitions this staff member could fire now (for buttons on the case page)."""
    return [
        t
        for t in TRANSITIONS.values()
        if facts.state in t.sources
        and not t.system_only
        and staff.can(t.action)
        and may_act(staff, facts, t)
    ]


#: Case-page actions besides the transitions (each has its own service in lifecycle or
#: deadline_clock, which checks again): the labels the forms and success messages use.
OTHER_ACTIONS = {
    "claim": "认领",
    "add_handler": "增加协办单位",
    "extend": "延长办理期限",
    "pause": "中止计时",
    "resume": "恢复计时",
    "supervise": "督办",
    "request_review": "登记复查/复核申请",
    "respond_supervision": "答复督办",
    "close_supervision": "督办评议",
    "invite_expert": "邀请专家",
    "expert_opinion": "出具专家意见",
    "mark_hard": "列为疑难积案",
}


def other_actions(staff: StaffIdentity, facts: CaseFacts) -> list[str]:
    """The non-transition actions this staff member could take on the case now (for the
    forms on the case page); the services behind them decide again."""
    if not can_view(staff, facts):
        return []
    out: list[str] = []
    if (
        facts.state == S.registered
        and facts.first_receiver_id is None
        and staff.staff_id != facts.agent_id
        and staff.can(Action.case_create)
        and (staff.site_id in facts.site_path or staff.can(Action.case_view_all))
    ):
        out.append("claim")
    if facts.state in OPEN_STATES:
        if staff.can(Action.case_assign):
            out += ["add_handler", "invite_expert"]
        if staff.can(Action.case_extend_approve) and facts.lead_dept_id in (
            None,
            staff.department_id,
        ):
            out.append("extend")
        if staff.can(Action.case_extend_approve) or staff.can(Action.case_supervise):
            out += ["pause", "resume"]
        if staff.can(Action.case_supervise):
            out.append("supervise")
            if facts.grade != GRADE_HARD:
                out.append("mark_hard")
        if staff.can(Action.case_opinion) and staff.staff_id in facts.handler_staff_ids:
            out.append("expert_opinion")  # an invited expert (the service checks the role)
    if (
        facts.state in REVIEWABLE_STATES
        and facts.review_level < MAX_REVIEW_LEVEL
        and (staff.can(Action.case_create) or staff.can(Action.case_handle))
    ):
        out.append("request_review")
    if facts.supervision == "open" and in_lead_unit(staff, facts):
        out.append("respond_supervision")
    if facts.supervision == "responded" and staff.can(Action.case_supervise):
        out.append("close_supervision")
    return out


def in_lead_unit(staff: StaffIdentity, facts: CaseFacts) -> bool:
    """A handler or leader of the case's lead department (who answers a 督办)."""
    return (
        facts.lead_dept_id is not None
        and staff.department_id == facts.lead_dept_id
        and bool(staff.roles & {Role.dept_handler, Role.dept_leader})
    )


def may_see_petitioner(staff: StaffIdentity, facts: CaseFacts) -> bool:
    """Whether the case page shows the petitioner's name and phone in clear: the first
    receiver, the named handlers, the handling departments' handlers and leaders, and the
    centre's supervisors; for an accusation (检举控告) only the first receiver, the named
    handlers and the supervisors. Everyone else sees them masked."""
    if not can_view(staff, facts):
        return False
    if staff.can(Action.case_view_all):
        return True
    if staff.staff_id == facts.first_receiver_id or staff.staff_id in facts.handler_staff_ids:
        return True
    if staff.staff_id == facts.agent_id:
        return True
    if facts.confidential:
        return False
    depts = facts.handler_dept_ids | ({facts.lead_dept_id} if facts.lead_dept_id else set())
    return (
        staff.department_id is not None
        and staff.department_id in depts
        and bool(staff.roles & {Role.dept_handler, Role.dept_leader})
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass(frozen=True, slots=True)
class TransitionRequest:
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
