"""The no-show rule per role (issue #16 item 5), pure, with an injected clock: a party who has
not come within the configured time after the planned start is absent; the session is a
no-show once every required party (applicant and respondent parties) is absent, whatever
staff are present."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.sessions.no_show import decide
from server.sessions.schemas import (
    ParticipantRole,
    ParticipantView,
    SessionKind,
    SessionState,
    SessionView,
)
from tests.fakes import FakeClock

START = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
AFTER = timedelta(minutes=15)


def _session(state: SessionState = SessionState.lobby) -> SessionView:
    return SessionView(
        id=1, room_id="r-1", kind=SessionKind.mediation, title="调解", capacity=8,
        recording_allowed=True, state=state, case_id=None,
        planned_start=START, planned_end=START + timedelta(hours=1),
    )  # fmt: skip


def _p(
    pid: int,
    role: ParticipantRole,
    *,
    staff: bool = False,
    joined: bool = False,
    side: str | None = None,
) -> ParticipantView:
    return ParticipantView(
        id=pid, session_id=1, identity=f"staff:{pid}" if staff else f"guest:{pid}", role=role,
        staff_id=pid if staff else None, display_name=f"p{pid}", site_id=None,
        side="applicant" if side == "applicant" else "respondent" if side else None,
        joined_at=START + timedelta(minutes=2) if joined else None,
    )  # fmt: skip


MEDIATOR_IN = _p(1, ParticipantRole.mediator, staff=True, joined=True)
OFFICIAL_IN = _p(2, ParticipantRole.official, staff=True, joined=True)
APPLICANT = _p(3, ParticipantRole.party, side="applicant")
RESPONDENT = _p(4, ParticipantRole.party, side="respondent")
AGENT = _p(5, ParticipantRole.agent, side="applicant")


def test_nothing_happens_before_the_threshold() -> None:
    clock = FakeClock(START + AFTER - timedelta(seconds=1))
    people = [MEDIATOR_IN, APPLICANT, RESPONDENT]
    decision = decide(_session(), people, now=clock.now(), after=AFTER)
    assert decision.absent_ids == () and not decision.session_no_show


def test_staff_present_but_both_parties_absent_is_a_no_show() -> None:
    clock = FakeClock(START)
    clock.current += AFTER
    people = [MEDIATOR_IN, OFFICIAL_IN, APPLICANT, RESPONDENT]
    for state in (SessionState.scheduled, SessionState.lobby, SessionState.live):
        decision = decide(_session(state), people, now=clock.now(), after=AFTER)
        assert decision.session_no_show, state
        assert set(decision.absent_ids) == {APPLICANT.id, RESPONDENT.id}  # staff never


def test_one_party_came_is_not_a_no_show_but_the_other_is_marked_absent() -> None:
    clock = FakeClock(START + AFTER + timedelta(minutes=5))
    came = _p(3, ParticipantRole.party, joined=True, side="applicant")
    decision = decide(_session(), [MEDIATOR_IN, came, RESPONDENT], now=clock.now(), after=AFTER)
    assert not decision.session_no_show
    assert decision.absent_ids == (RESPONDENT.id,)


def test_a_reconnect_row_counts_as_having_come() -> None:
    """A party's first row (booked) never joined, the later one (reconnect) did."""
    again = ParticipantView(
        id=9, session_id=1, identity=APPLICANT.identity, role=ParticipantRole.party,
        staff_id=None, display_name="p3", site_id=None, joined_at=START,
    )  # fmt: skip
    decision = decide(_session(), [APPLICANT, again, RESPONDENT], now=START + AFTER, after=AFTER)
    assert not decision.session_no_show and decision.absent_ids == (RESPONDENT.id,)


def test_agents_and_observers_are_marked_but_never_required() -> None:
    """Only the agent came: the parties are absent, the session is a no-show; an absent agent
    alone (both parties came) is marked absent without making it one."""
    agent_in = _p(5, ParticipantRole.agent, joined=True, side="applicant")
    observer = _p(6, ParticipantRole.observer)
    decision = decide(
        _session(), [agent_in, APPLICANT, RESPONDENT, observer], now=START + AFTER, after=AFTER
    )
    assert decision.session_no_show
    assert set(decision.absent_ids) == {APPLICANT.id, RESPONDENT.id, observer.id}
    both = [_p(3, ParticipantRole.party, joined=True), _p(4, ParticipantRole.party, joined=True)]
    decision = decide(_session(), [*both, AGENT], now=START + AFTER, after=AFTER)
    assert not decision.session_no_show and decision.absent_ids == (AGENT.id,)


def test_closed_unplanned_or_partyless_sessions_are_left_alone() -> None:
    late = START + timedelta(hours=3)
    for state in (SessionState.ended, SessionState.cancelled, SessionState.no_show):
        assert decide(_session(state), [APPLICANT], now=late, after=AFTER).absent_ids == ()
    unplanned = SessionView(
        id=2, room_id="r-2", kind=SessionKind.reception, title="接访", capacity=8,
        recording_allowed=False, state=SessionState.lobby, case_id=None,
    )  # fmt: skip
    assert not decide(unplanned, [APPLICANT], now=late, after=AFTER).session_no_show
    assert not decide(_session(), [MEDIATOR_IN], now=late, after=AFTER).session_no_show


def test_already_marked_parties_are_not_marked_twice() -> None:
    marked = ParticipantView(
        id=3, session_id=1, identity="guest:3", role=ParticipantRole.party, staff_id=None,
        display_name="p3", site_id=None, no_show=True,
    )  # fmt: skip
    decision = decide(_session(), [marked, RESPONDENT], now=START + AFTER, after=AFTER)
    assert decision.session_no_show and decision.absent_ids == (RESPONDENT.id,)
