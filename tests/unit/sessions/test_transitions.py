"""The session lifecycle table: every legal change passes, every other one raises the typed
error with its stable code."""

from __future__ import annotations

import pytest

from server.kernel.errors import IllegalTransition
from server.sessions.errors import IllegalSessionTransition
from server.sessions.models import SessionState
from server.sessions.service import check_transition

S = SessionState
LEGAL = {
    (S.scheduled, S.lobby),
    (S.scheduled, S.live),
    (S.scheduled, S.ended),
    (S.scheduled, S.cancelled),
    (S.scheduled, S.no_show),
    (S.lobby, S.live),
    (S.lobby, S.ended),
    (S.lobby, S.no_show),
    (S.live, S.ended),
    (S.live, S.no_show),  # staff alone in the room while every party stayed away
    (S.no_show, S.ended),
}
ALL_PAIRS = [(a, b) for a in S for b in S]


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_transitions_pass(current: SessionState, target: SessionState) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_illegal_transitions_raise_a_typed_error(
    current: SessionState, target: SessionState
) -> None:
    with pytest.raises(IllegalSessionTransition) as info:
        check_transition(current, target)
    assert info.value.code == "illegal_transition"
    assert info.value.http_status == 409
    assert info.value.details == {"state": current.value, "target": target.value}
    assert isinstance(info.value, IllegalTransition)  # callers catching the old type still do


def test_closed_states_are_terminal_and_nothing_returns_to_scheduled() -> None:
    for state in (S.ended, S.cancelled):
        assert not [t for t in S if (state, t) in LEGAL]
    assert not [s for s in S if (s, S.scheduled) in LEGAL]
