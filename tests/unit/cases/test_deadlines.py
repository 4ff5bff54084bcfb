from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.cases.deadlines import (
    DayMode,
    ExtensionRefused,
    ExtensionTooLate,
    HolidayCalendar,
    Pause,
    Policy,
    Rollover,
    WarnLevel,
    add_days,
    check_extension,
    effective_due,
    sweep_step,
)
from tests.fakes import FakeClock

TZ = ZoneInfo("Asia/Shanghai")
NONE = HolidayCalendar()
HANDLING = Policy("handling", 60, yellow_days=7, extension_max_days=30)


def local(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=TZ)


@pytest.mark.parametrize(
    ("start", "days", "last"),
    [
        (date(2026, 1, 31), 30, date(2026, 3, 2)),  # through a short February
        (date(2028, 1, 31), 30, date(2028, 3, 1)),  # leap year
        (date(2026, 12, 20), 15, date(2027, 1, 4)),  # across the year end
        (date(2026, 4, 30), 1, date(2026, 5, 1)),
    ],
)
def test_calendar_days_across_month_ends(start: date, days: int, last: date) -> None:
    assert add_days(start, days, DayMode.calendar, NONE) == last


def test_due_is_the_end_of_the_last_local_day() -> None:
    p = Policy("acceptance", 15)
    due = effective_due(start=local(2026, 3, 31, 23), policy=p, calendar=NONE, tz=TZ)
    assert due == datetime(2026, 4, 16, 0, 0, tzinfo=TZ)
    # a start just after local midnight is the next local day although UTC says otherwise
    due2 = effective_due(
        start=datetime(2026, 3, 31, 16, 30, tzinfo=UTC), policy=p, calendar=NONE, tz=TZ
    )
    assert due2 == datetime(2026, 4, 17, 0, 0, tzinfo=TZ)


def test_working_days_skip_weekends_holidays_and_count_makeup_days() -> None:
    cal = HolidayCalendar(
        days_off=frozenset({date(2026, 10, d) for d in range(1, 8)}),
        makeup_workdays=frozenset({date(2026, 10, 10)}),
    )
    # Tue 29 Sep: Wed 30 (1), Oct 1-7 off, Thu 8 (2), Fri 9 (3), Sat 10 makeup (4), Mon 12 (5)
    assert add_days(date(2026, 9, 29), 5, DayMode.working, cal) == date(2026, 10, 12)
    assert not cal.is_workday(date(2026, 10, 3))
    assert cal.is_workday(date(2026, 10, 10))


def test_extension_adds_days_to_the_original_due_once_and_within_limit() -> None:
    start = local(2026, 1, 1)
    base = effective_due(start=start, policy=HANDLING, calendar=NONE, tz=TZ)
    ext = effective_due(start=start, policy=HANDLING, calendar=NONE, tz=TZ, extension_days=30)
    assert ext - base == timedelta(days=30)
    check_extension(HANDLING, days=30, already_extended=False)
    for days, already, reason in ((31, False, "limit"), (10, True, "once"), (0, False, "days")):
        with pytest.raises(ExtensionRefused) as err:
            check_extension(HANDLING, days=days, already_extended=already)
        assert err.value.details["reason"] == reason
    with pytest.raises(ExtensionRefused):
        check_extension(Policy("acceptance", 15), days=1, already_extended=False)


def test_pauses_stop_the_clock() -> None:
    clock = FakeClock(local(2026, 1, 1))
    start = clock.now()
    base = effective_due(start=start, policy=HANDLING, calendar=NONE, tz=TZ)
    clock.current += timedelta(days=10)
    pause = Pause(clock.now())
    clock.current += timedelta(days=5, hours=6)
    # an open pause counts up to now
    open_due = effective_due(
        start=start, policy=HANDLING, calendar=NONE, tz=TZ, pauses=[pause], now=clock.now()
    )
    assert open_due - base == timedelta(days=5, hours=6)
    closed = Pause(pause.start, clock.now())
    clock.current += timedelta(days=30)
    assert (
        effective_due(
            start=start, policy=HANDLING, calendar=NONE, tz=TZ, pauses=[closed], now=clock.now()
        )
        == open_due
    )


def test_pause_in_working_day_mode_shifts_by_its_office_time() -> None:
    p = Policy("handling", 10, day_mode=DayMode.working)
    start = local(2026, 3, 2)  # Monday
    base = effective_due(start=start, policy=p, calendar=NONE, tz=TZ)
    assert base == datetime(2026, 3, 17, tzinfo=TZ)  # 10 working days: Tue 3 … Mon 16
    # paused Fri 6 10:00 → Mon 9 10:00: 7.5 + 1.5 office hours (08:30-17:30) = one office day
    due = effective_due(
        start=start,
        policy=p,
        calendar=NONE,
        tz=TZ,
        pauses=[Pause(local(2026, 3, 6), local(2026, 3, 9))],
    )
    assert due == datetime(2026, 3, 18, tzinfo=TZ)


def test_finding_9_a_one_hour_pause_adds_one_office_hour_not_a_working_day() -> None:
    p = Policy("handling", 10, day_mode=DayMode.working)
    start = local(2026, 3, 2)
    due = effective_due(
        start=start,
        policy=p,
        calendar=NONE,
        tz=TZ,
        pauses=[Pause(local(2026, 3, 4, 10), local(2026, 3, 4, 11))],  # Wednesday 10-11
    )
    # one office hour after the nominal end (Mon 16, 24:00): Tue 17 09:30
    assert due == datetime(2026, 3, 17, 9, 30, tzinfo=TZ)


def test_finding_9_a_weekend_pause_adds_no_working_time() -> None:
    p = Policy("handling", 10, day_mode=DayMode.working)
    start = local(2026, 3, 2)
    base = effective_due(start=start, policy=p, calendar=NONE, tz=TZ)
    due = effective_due(
        start=start,
        policy=p,
        calendar=NONE,
        tz=TZ,
        pauses=[Pause(local(2026, 3, 6, 18), local(2026, 3, 9, 8))],  # Fri 18:00 → Mon 08:00
    )
    assert due == base


def test_finding_9_calendar_days_ending_on_a_holiday_roll_to_the_next_working_day() -> None:
    national_day = HolidayCalendar(
        days_off=frozenset({date(2026, 10, d) for d in range(1, 8)}),
        makeup_workdays=frozenset({date(2026, 10, 10)}),
    )
    p = Policy("review_request", 30)
    start = local(2026, 9, 1)  # 30 calendar days: last day Thu 1 Oct (国庆)
    assert effective_due(start=start, policy=p, calendar=national_day, tz=TZ) == datetime(
        2026, 10, 2, tzinfo=TZ
    )
    rolled = effective_due(
        start=start, policy=p, calendar=national_day, tz=TZ, rollover=Rollover.next_working_day
    )
    assert rolled == datetime(2026, 10, 9, tzinfo=TZ)  # ends with Thu 8 Oct
    # a 调休 make-up Saturday is a working day: a period ending on it does not move
    sat = effective_due(
        start=local(2026, 9, 10),
        policy=p,
        calendar=national_day,
        tz=TZ,
        rollover=Rollover.next_working_day,
    )
    assert sat == datetime(2026, 10, 11, tzinfo=TZ)


def test_extension_is_refused_once_the_deadline_has_expired() -> None:
    due = local(2026, 3, 1, 0)
    check_extension(HANDLING, days=30, already_extended=False, due=due, now=due - timedelta(1))
    with pytest.raises(ExtensionTooLate) as err:
        check_extension(HANDLING, days=30, already_extended=False, due=due, now=due)
    assert err.value.code == "extension_after_expiry"


def test_sweep_ladder_is_monotonic_and_idempotent() -> None:
    p = Policy("handling", 60, yellow_days=7, escalation_days=(0, 3, 7))
    due = local(2026, 3, 1, 0)
    clock = FakeClock(due - timedelta(days=8))
    s = sweep_step(
        due=due, policy=p, now=clock.now(), current_warn=WarnLevel.none, current_escalation=0
    )
    assert s.warn_level == WarnLevel.none and s.next_action_at == due - timedelta(days=7)
    clock.current = due - timedelta(days=1)
    s = sweep_step(
        due=due, policy=p, now=clock.now(), current_warn=s.warn_level, current_escalation=0
    )
    assert s.new_warnings == (WarnLevel.yellow,) and not s.overdue
    again = sweep_step(
        due=due,
        policy=p,
        now=clock.now(),
        current_warn=s.warn_level,
        current_escalation=s.escalation_level,
    )
    assert again.new_warnings == () and again.new_escalations == ()
    clock.current = due + timedelta(days=10)  # a long outage: everything at once, in order
    s = sweep_step(
        due=due, policy=p, now=clock.now(), current_warn=WarnLevel.yellow, current_escalation=0
    )
    assert s.new_warnings == (WarnLevel.red,) and s.new_escalations == (1, 2, 3)
    assert s.overdue and s.next_action_at is None
