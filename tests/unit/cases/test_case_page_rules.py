"""Who is offered which case-page action besides the transitions, and who sees the
petitioner in clear (server.cases.statemachine.other_actions, may_see_petitioner)."""

from __future__ import annotations

import pytest

from server.auth.permissions import StaffIdentity
from server.cases.models import CaseState
from server.cases.statemachine import may_see_petitioner, other_actions
from tests.unit.cases.test_statemachine import (
    AGENT,
    COORD,
    EXPERT,
    HANDLER,
    LEADER,
    OTHER_HANDLER,
    SUPERVISOR,
    URBAN,
    WINDOW,
    facts,
)

S = CaseState


def test_an_unclaimed_registration_is_offered_for_claiming_in_its_own_site_only() -> None:
    unclaimed = facts(first_receiver_id=None, site_id=1)
    assert "claim" in other_actions(WINDOW, unclaimed)
    assert "claim" not in other_actions(WINDOW, facts(site_id=1))  # already has a receiver
    assert "claim" not in other_actions(WINDOW, facts(S.accepted, first_receiver_id=None))
    assert "claim" not in other_actions(EXPERT, unclaimed)  # may not register cases


@pytest.mark.parametrize(
    ("staff", "expected"),
    [
        (LEADER, {"add_handler", "invite_expert", "extend", "pause", "resume"}),
        (SUPERVISOR, {"add_handler", "invite_expert", "pause", "resume", "supervise", "mark_hard"}),
        (HANDLER, set()),
        (COORD, {"add_handler", "invite_expert"}),
    ],
)
def test_open_case_actions_follow_the_permission_table(
    staff: StaffIdentity, expected: set[str]
) -> None:
    assert set(other_actions(staff, facts(S.handling))) == expected


def test_a_review_request_is_offered_after_a_reply_and_never_after_re_review() -> None:
    assert "request_review" in other_actions(HANDLER, facts(S.replied))
    assert "request_review" not in other_actions(HANDLER, facts(S.handling))
    assert "request_review" not in other_actions(HANDLER, facts(S.closed, review_level=2))


def test_nothing_is_offered_to_who_may_not_see_the_case() -> None:
    assert other_actions(OTHER_HANDLER, facts(S.handling)) == []


def test_the_petitioner_is_shown_in_clear_to_the_case_s_own_people_only() -> None:
    case = facts(S.handling)
    assert may_see_petitioner(AGENT, case)  # first receiver
    assert may_see_petitioner(HANDLER, case) and may_see_petitioner(LEADER, case)
    assert may_see_petitioner(SUPERVISOR, case)
    assert not may_see_petitioner(COORD, case)  # sees the case, not the person
    assert not may_see_petitioner(OTHER_HANDLER, case)
    accusation = facts(S.handling, confidential=True, accused_dept_id=URBAN)
    assert may_see_petitioner(SUPERVISOR, accusation)
    assert not may_see_petitioner(HANDLER, accusation)  # not a named handler
    named = facts(
        S.handling,
        confidential=True,
        accused_dept_id=URBAN,
        handler_staff_ids=frozenset({HANDLER.staff_id}),
    )
    assert may_see_petitioner(HANDLER, named)
