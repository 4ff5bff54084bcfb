"""The window of a booked session (issue #16): it opens `lobby_lead` before the planned start;
before that it can be neither started nor ended; once live it can always be ended; an
unplanned session is open at once. The clock is injected (tests/fakes.FakeClock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.kernel.settings import Settings
from server.sessions.errors import SessionNotOpen
from server.sessions.models import SessionKind, SessionState
from server.sessions.schemas import SessionView
from server.sessions.service import (
    DEFAULT_LOBBY_LEAD,
    check_can_end,
    check_can_start,
    opens_at,
)
from tests.fakes import FakeClock

START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # tomorrow, 17:00 in Shanghai
LEAD = timedelta(minutes=30)


def _view(state: SessionState = SessionState.scheduled, *, planned: bool = True) -> SessionView:
    return SessionView(
        id=1,
        room_id="r-1",
        kind=SessionKind.mediation,
        title="邻里纠纷调解",
        capacity=8,
        recording_allowed=False,
        state=state,
        case_id=None,
        planned_start=START if planned else None,
        planned_end=START + timedelta(hours=1) if planned else None,
    )


def test_the_default_window_opens_30_minutes_before_the_start() -> None:
    assert (
        timedelta(minutes=Settings.model_fields["session_lobby_open_min"].default)
        == DEFAULT_LOBBY_LEAD
    )
    assert opens_at(_view(), lobby_lead=LEAD) == START - LEAD
    assert opens_at(_view(planned=False), lobby_lead=LEAD) is None


@pytest.mark.parametrize("state", [SessionState.scheduled, SessionState.lobby])
def test_a_session_booked_for_tomorrow_can_be_neither_started_nor_ended_today(
    state: SessionState,
) -> None:
    clock = FakeClock(START - timedelta(days=1))
    for check in (check_can_start, check_can_end):
        with pytest.raises(SessionNotOpen) as info:
            check(_view(state), now=clock(), lobby_lead=LEAD)
        assert info.value.code == "session_not_open"
        assert info.value.message_zh
        assert info.value.details["opens_at"] == (START - LEAD).isoformat()


def test_the_window_opens_exactly_lobby_lead_before_the_start() -> None:
    clock = FakeClock(START - LEAD - timedelta(seconds=1))
    with pytest.raises(SessionNotOpen):
        check_can_end(_view(), now=clock(), lobby_lead=LEAD)
    clock.current += timedelta(seconds=1)
    check_can_start(_view(), now=clock(), lobby_lead=LEAD)
    check_can_end(_view(), now=clock(), lobby_lead=LEAD)
    clock.current += timedelta(days=2)  # long after the planned end: still closable
    check_can_end(_view(SessionState.lobby), now=clock(), lobby_lead=LEAD)


def test_a_configured_lead_moves_the_window() -> None:
    clock = FakeClock(START - timedelta(minutes=45))
    with pytest.raises(SessionNotOpen):
        check_can_start(_view(), now=clock(), lobby_lead=LEAD)
    check_can_start(_view(), now=clock(), lobby_lead=timedelta(hours=1))


def test_a_live_session_can_always_be_ended() -> None:
    early = START - timedelta(days=1)
    check_can_end(_view(SessionState.live), now=early, lobby_lead=LEAD)
    check_can_end(_view(), now=early, lobby_lead=LEAD, live=True)  # the room knows first


def test_an_unplanned_session_is_open_at_once() -> None:
    now = START - timedelta(days=30)
    check_can_start(_view(planned=False), now=now, lobby_lead=LEAD)
    check_can_end(_view(planned=False), now=now, lobby_lead=LEAD)
