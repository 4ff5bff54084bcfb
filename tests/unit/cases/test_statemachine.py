from __future__ import annotations

from typing import Any

import pytest

from server.auth.permissions import StaffIdentity
from server.cases.models import CaseState
from server.cases.statemachine import (
    TRANSITIONS,
    CaseFacts,
    ConfidentialTransferBlocked,
    FinalDecision,
    MissingField,
    available_transitions,
    can_view,
    check_review_request,
    check_transition,
    escalated_grade,
)
from server.kernel.errors import IllegalTransition, PermissionDenied
from server.org.models import Role

S = CaseState
CENTRE, STREET, COMMUNITY, OTHER_STREET = 1, 2, 3, 9
HOUSING, URBAN = 20, 21


def who(staff_id: int, *roles: Role, site: int = CENTRE, dept: int | None = None) -> StaffIdentity:
    return StaffIdentity(
        staff_id=staff_id,
        username=f"u{staff_id}",
        display_name="x",
        site_id=site,
        department_id=dept,
        roles=frozenset(roles),
    )


WINDOW = who(1, Role.window_officer, dept=HOUSING)
HANDLER = who(2, Role.dept_handler, dept=HOUSING)
LEADER = who(3, Role.dept_leader, dept=HOUSING)
OTHER_HANDLER = who(4, Role.dept_handler, dept=URBAN)
SUPERVISOR = who(5, Role.centre_supervisor)
AGENT = who(6, Role.community_agent, site=COMMUNITY)
COORD = who(7, Role.street_coordinator, site=STREET)
OTHER_COORD = who(8, Role.street_coordinator, site=OTHER_STREET)
EXPERT = who(10, Role.expert)
SYSADMIN = who(11, Role.sys_admin)
AUDITOR = who(12, Role.audit_admin)


def facts(state: CaseState = S.registered, **kw: Any) -> CaseFacts:
    base: dict[str, Any] = {
        "state": state,
        "site_id": COMMUNITY,
        "first_receiver_id": AGENT.staff_id,
        "lead_dept_id": HOUSING,
        "site_path": frozenset({COMMUNITY, STREET, CENTRE}),
    }
    base.update(kw)
    return CaseFacts(**base)


@pytest.mark.parametrize(
    ("staff", "name", "state", "ok"),
    [
        (HANDLER, "accept", S.registered, True),
        (LEADER, "accept", S.registered, True),
        (OTHER_HANDLER, "accept", S.registered, False),  # not the lead department
        # the agent registered it (first receiver) but handling is the unit's (#17 finding 11)
        (AGENT, "accept", S.registered, False),
        (AGENT, "not_accept", S.registered, False),
        (AGENT, "reply", S.handling, False),
        (AGENT, "close", S.revisited, False),
        (AGENT, "revisit", S.replied, True),  # follow-up visits are the agent's
        (COORD, "accept", S.registered, True),  # own street
        (OTHER_COORD, "accept", S.registered, False),
        (EXPERT, "accept", S.registered, False),  # read and opine only
        (SYSADMIN, "accept", S.registered, False),  # no case content
        (AUDITOR, "reply", S.handling, False),
        (HANDLER, "reply", S.handling, True),
        (HANDLER, "transfer", S.registered, False),  # handlers do not transfer
        (LEADER, "transfer", S.registered, True),
        (WINDOW, "transfer", S.registered, False),  # not first receiver, other site
        (SUPERVISOR, "terminate", S.handling, True),
        (HANDLER, "terminate", S.handling, False),
        (SUPERVISOR, "accept", S.registered, False),  # supervises, does not handle
    ],
)
def test_roles_and_scope(staff: StaffIdentity, name: str, state: CaseState, ok: bool) -> None:
    fields = {"reply": "答复", "note": "已回访", "reason": "理由", "target_department_id": URBAN}
    if ok:
        assert check_transition(staff, facts(state), name, fields).name == name
    else:
        with pytest.raises(PermissionDenied):
            check_transition(staff, facts(state), name, fields)


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("reply", S.registered),
        ("close", S.handling),
        ("accept", S.closed),
        ("start_handling", S.registered),
        ("terminate", S.closed),
        ("bogus", S.registered),
    ],
)
def test_illegal_transitions(name: str, state: CaseState) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(HANDLER, facts(state), name, {"reply": "x", "reason": "y"})


def test_the_happy_path_is_connected() -> None:
    state = S.registered
    for name in ("accept", "start_handling", "reply", "revisit", "close"):
        t = check_transition(HANDLER, facts(state), name, {"reply": "答复", "note": "已解决"})
        state = t.target
    assert state == S.closed


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("not_accept", "reason"),
        ("redirect_legal", "legal_route"),
        ("terminate", "reason"),
        ("transfer", "target_department_id"),
        ("reply", "reply"),
    ],
)
def test_required_fields(name: str, missing: str) -> None:
    state = S.handling if name in ("reply", "terminate") else S.registered
    with pytest.raises(MissingField) as err:
        check_transition(
            SUPERVISOR if name == "terminate" else LEADER, facts(state), name, {"reason": "  "}
        )
    assert missing in err.value.details["fields"]


def test_evaluation_is_system_only() -> None:
    with pytest.raises(PermissionDenied):
        check_transition(HANDLER, facts(S.replied), "evaluate", {})
    assert check_transition(None, facts(S.replied), "evaluate", {}).target == S.evaluated


def test_confidential_case_visibility_and_transfer_block() -> None:
    secret = facts(
        S.registered,
        confidential=True,
        accused_dept_id=URBAN,
        handler_staff_ids=frozenset({HANDLER.staff_id}),
    )
    assert can_view(HANDLER, secret)  # named handler
    assert can_view(SUPERVISOR, secret)
    assert not can_view(LEADER, secret)  # same department, but not named
    assert not can_view(COORD, secret)
    assert not can_view(OTHER_HANDLER, secret)  # the accused unit
    accused_supervisor = who(13, Role.centre_supervisor, dept=URBAN)
    assert not can_view(accused_supervisor, secret)
    with pytest.raises(ConfidentialTransferBlocked):
        check_transition(SUPERVISOR, secret, "transfer", {"target_department_id": URBAN})


def test_review_levels_and_final_re_review() -> None:
    assert check_review_request(facts(S.replied)) == S.review
    assert check_review_request(facts(S.closed, review_level=1)) == S.re_review
    with pytest.raises(FinalDecision):
        check_review_request(facts(S.closed, review_level=2))
    with pytest.raises(IllegalTransition):
        check_review_request(facts(S.handling))


def test_available_transitions_for_buttons() -> None:
    names = {t.name for t in available_transitions(LEADER, facts(S.registered))}
    assert {"accept", "not_accept", "redirect_legal", "transfer"} <= names
    assert "evaluate" not in {t.name for t in available_transitions(LEADER, facts(S.replied))}
    assert set(TRANSITIONS) >= names


def test_a_grade_only_rises() -> None:
    assert escalated_grade("simple", "complex") == "complex"
    assert escalated_grade("complex", "hard") == "hard"
    assert escalated_grade("hard", "complex") == "hard"  # a hard case stays hard
    assert escalated_grade("complex", "simple") == "complex"
