"""Pure availability and slot finding: rules, holidays and 调休, leave, buffers, notice and
advance across weeks; ranking by earliest then fewest sites."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduling.availability import (
    Availability,
    BookingPolicy,
    HolidayCalendar,
    RuleError,
    WorkingHours,
    free_intervals,
    padded,
    working_intervals,
)
from scheduling.intervals import contains, intersect, normalize, overlaps, subtract
from scheduling.slots import Candidate, Group, find_slots

CST = timedelta(hours=8)
NOW = datetime(2026, 9, 28, 0, 0, tzinfo=UTC)  # Monday 08:00 Hangzhou
WEEKDAYS = WorkingHours("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", time(9), time(17), date(2026, 1, 1))
# National Day 2026: 1–7 Oct off; Sunday 27 Sep and Saturday 10 Oct are 调休 workdays.
CALENDAR = HolidayCalendar(
    days_off=frozenset(date(2026, 10, d) for d in range(1, 8)),
    makeup_workdays=frozenset({date(2026, 9, 27), date(2026, 10, 10)}),
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - CST


def days_with_work(intervals: list[tuple[datetime, datetime]]) -> list[date]:
    return sorted({(s + CST).date() for s, _ in intervals})


def test_rules_holidays_and_makeup_days_across_weeks() -> None:
    got = working_intervals(
        [WEEKDAYS],
        start=local(date(2026, 9, 26), 0),
        end=local(date(2026, 10, 13), 0),
        calendar=CALENDAR,
    )
    assert days_with_work(got) == [
        date(2026, 9, 27),  # Sunday, 调休
        date(2026, 9, 28),
        date(2026, 9, 29),
        date(2026, 9, 30),
        date(2026, 10, 8),
        date(2026, 10, 9),
        date(2026, 10, 10),  # Saturday, 调休
        date(2026, 10, 12),
    ]
    assert got[0] == (local(date(2026, 9, 27), 9), local(date(2026, 9, 27), 17))


def test_leave_notice_advance_and_buffers() -> None:
    av = Availability(
        hours=(WEEKDAYS,),
        unavailable=((local(date(2026, 9, 29), 0), local(date(2026, 9, 30), 0)),),  # leave Tue
        policy=BookingPolicy(
            buffer_before=timedelta(minutes=15),
            buffer_after=timedelta(minutes=10),
            min_notice=timedelta(hours=4),
            max_advance=timedelta(days=2, hours=6),
        ),
    )
    busy = [padded(av.policy, local(date(2026, 9, 30), 10), local(date(2026, 9, 30), 11))]
    free = free_intervals(
        av, busy=busy, start=NOW, end=NOW + timedelta(days=30), now=NOW, calendar=CALENDAR
    )
    assert free == [
        (local(date(2026, 9, 28), 12), local(date(2026, 9, 28), 17)),  # notice: from 12:00
        # Tuesday on leave; Wednesday: the 10–11 booking claims 09:45–11:10, so a new session
        # (itself padded 15 before, 10 after) may end by 09:35 and start from 11:25.
        (local(date(2026, 9, 30), 9), local(date(2026, 9, 30), 9, 35)),
        (local(date(2026, 9, 30), 11, 25), local(date(2026, 9, 30), 14)),  # advance: 2d 6h
    ]


def test_bad_rules_are_refused() -> None:
    with pytest.raises(RuleError):
        WorkingHours("FREQ=SOMETIMES", time(9), time(17), date(2026, 1, 1))
    with pytest.raises(RuleError):
        WorkingHours("FREQ=DAILY", time(17), time(9), date(2026, 1, 1))
    with pytest.raises(RuleError):
        BookingPolicy(slot_step=timedelta(minutes=7))


def cand(key: str, site: int, *spans: tuple[datetime, datetime]) -> Candidate:
    return Candidate(key, site, tuple(normalize(spans)))


def test_slots_need_everyone_and_prefer_fewer_sites() -> None:
    day = date(2026, 9, 28)
    mediators = Group(
        "mediator",
        (
            cand("staff:1", 10, (local(day, 9), local(day, 11))),
            cand("staff:2", 20, (local(day, 9), local(day, 17))),
        ),
    )
    room = Group(
        "room at street 20 or 30",
        (
            cand("resource:5", 20, (local(day, 10), local(day, 17))),
            cand("resource:6", 30, (local(day, 9), local(day, 17))),
        ),
    )
    terminal = Group("terminal", (cand("resource:9", 40, (local(day, 9, 30), local(day, 17))),))
    slots = find_slots(
        [mediators, room, terminal],
        duration=timedelta(hours=1),
        start=local(day, 0),
        end=local(day, 23),
        limit=3,
    )
    assert [s.start for s in slots] == [local(day, 9, 30), local(day, 10), local(day, 10, 30)]
    # 09:30: only room 6 (site 30) is free: mediator 1 (10) or 2 (20) → three sites.
    assert slots[0].sites == 3
    # 10:00: mediator 2 and room 5 share site 20 → two sites, chosen over staff:1.
    assert slots[1].assignment == ("staff:2", "resource:5", "resource:9") and slots[1].sites == 2


def test_the_same_person_cannot_fill_two_groups() -> None:
    day = date(2026, 9, 28)
    only = cand("staff:1", 1, (local(day, 9), local(day, 17)))
    assert (
        find_slots(
            [Group("a", (only,)), Group("b", (only,))],
            duration=timedelta(hours=1),
            start=local(day, 0),
            end=local(day, 23),
        )
        == []
    )


spans = st.lists(
    st.tuples(st.integers(0, 200), st.integers(1, 50)).map(
        lambda t: (NOW + timedelta(minutes=t[0]), NOW + timedelta(minutes=t[0] + t[1]))
    ),
    max_size=8,
)


@given(spans, spans)
def test_interval_algebra_matches_minute_sets(a: list, b: list) -> None:  # type: ignore[type-arg]
    def minutes(iv: list[tuple[datetime, datetime]]) -> set[int]:
        return {
            m
            for s, e in iv
            for m in range(
                int((s - NOW).total_seconds() // 60), int((e - NOW).total_seconds() // 60)
            )
        }

    na, nb = normalize(a), normalize(b)
    assert minutes(subtract(na, nb)) == minutes(na) - minutes(nb)
    assert minutes(intersect(na, nb)) == minutes(na) & minutes(nb)
    for s, e in nb:
        assert overlaps(na, s, e) == bool(minutes(na) & minutes([(s, e)]))
        assert contains(na, s, e) == any(x <= s and e <= y for x, y in na)
