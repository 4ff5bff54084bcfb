"""Property tests of the deadline arithmetic (server.cases.deadlines) against a slow reference
written here: days are stepped one by one, time in 15-minute slots, over random start times,
limits, extensions, pauses, office hours and holiday calendars (with 调休 make-up days)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.cases.deadlines import (
    DayMode,
    HolidayCalendar,
    OfficeHours,
    Pause,
    Policy,
    Rollover,
    effective_due,
    working_time,
)

TZ = ZoneInfo("Asia/Shanghai")
SLOT = timedelta(minutes=15)
ORIGIN = datetime(2026, 1, 1, tzinfo=TZ)  # local midnight, on the slot grid
PROPS = settings(max_examples=200, deadline=None)


# --- the reference: one day, one slot at a time --------------------------------------------


def ref_is_workday(cal: HolidayCalendar, day: date) -> bool:
    if day in cal.makeup_workdays:
        return True
    return day not in cal.days_off and day.isoweekday() <= 5


def ref_last_day(start_day: date, days: int, mode: DayMode, cal: HolidayCalendar) -> date:
    day, counted = start_day, 0
    while counted < days:
        day = day + timedelta(days=1)
        if mode == DayMode.calendar or ref_is_workday(cal, day):
            counted += 1
    return day


def ref_midnight_after(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ) + timedelta(days=1)


def ref_is_office(slot: datetime, cal: HolidayCalendar, hours: OfficeHours) -> bool:
    local = slot.astimezone(TZ)
    if not ref_is_workday(cal, local.date()):
        return False
    return any(a <= local.time() < b for a, b in hours)


def ref_due(
    start: datetime,
    limit: int,
    mode: DayMode,
    cal: HolidayCalendar,
    *,
    extension: int,
    pauses: list[tuple[datetime, datetime]],
    rollover: bool,
    hours: OfficeHours,
) -> datetime:
    last = ref_last_day(start.astimezone(TZ).date(), limit, mode, cal)
    if extension:
        last = ref_last_day(last, extension, mode, cal)
    due = ref_midnight_after(last)
    if rollover:  # the period in days first (extension included), then again after the pauses
        due = ref_roll(due, cal)
    # Count the paused slots after the start (overlapping pauses count once).
    paused = 0
    if pauses:
        t = min(a for a, _ in pauses)
        end = max(b for _, b in pauses)
        while t < end:
            in_pause = t >= start and any(a <= t < b for a, b in pauses)
            if in_pause and (mode == DayMode.calendar or ref_is_office(t, cal, hours)):
                paused += 1
            t += SLOT
    if mode == DayMode.calendar:
        due += paused * SLOT
    elif paused:
        t = due
        while paused:
            if ref_is_office(t, cal, hours):
                paused -= 1
            t += SLOT
        local = t.astimezone(TZ)
        if local.time() == hours[-1][1]:  # the close of the day: the whole day is used
            t = ref_midnight_after(local.date())
        due = t
    return ref_roll(due, cal) if rollover else due


def ref_roll(due: datetime, cal: HolidayCalendar) -> datetime:
    day = (due - timedelta(microseconds=1)).astimezone(TZ).date()
    if ref_is_workday(cal, day):
        return due
    while not ref_is_workday(cal, day):
        day += timedelta(days=1)
    return ref_midnight_after(day)


# --- strategies --------------------------------------------------------------------------------

slot_offsets = st.integers(min_value=0, max_value=96 * 420)  # 15-minute slots within ~14 months


@st.composite
def calendars(draw: st.DrawFn) -> HolidayCalendar:
    days = st.integers(min_value=0, max_value=520).map(lambda n: date(2026, 1, 1) + timedelta(n))
    off = draw(st.sets(days, max_size=60))
    weekend = days.filter(lambda d: d.isoweekday() >= 6)
    makeup = draw(st.sets(weekend, max_size=12))
    return HolidayCalendar(days_off=frozenset(off), makeup_workdays=frozenset(makeup - off))


@st.composite
def office_hours(draw: st.DrawFn) -> OfficeHours:
    """One or two intervals on the 15-minute grid, e.g. 08:30-12:00,13:30-17:30."""
    marks = sorted(draw(st.sets(st.integers(min_value=1, max_value=95), min_size=2, max_size=4)))
    if len(marks) % 2:
        marks = marks[:-1]
    t = [time(m // 4, (m % 4) * 15) for m in marks]
    return tuple((t[i], t[i + 1]) for i in range(0, len(t), 2))


@st.composite
def pause_lists(draw: st.DrawFn, start: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        a = start + draw(st.integers(min_value=-96 * 3, max_value=96 * 70)) * SLOT
        out.append((a, a + draw(st.integers(min_value=1, max_value=96 * 12)) * SLOT))
    return out


@st.composite
def cases(draw: st.DrawFn) -> dict[str, object]:
    start = ORIGIN + draw(slot_offsets) * SLOT
    return {
        "start": start,
        "limit": draw(st.integers(min_value=0, max_value=70)),
        "mode": draw(st.sampled_from(DayMode)),
        "cal": draw(calendars()),
        "extension": draw(st.sampled_from([0, 0, 1, 15, 30])),
        "pauses": draw(pause_lists(start)),
        "rollover": draw(st.booleans()),
        "hours": draw(office_hours()),
    }


# --- properties --------------------------------------------------------------------------------


@PROPS
@given(cases())
def test_due_matches_the_day_by_day_reference(c: dict[str, object]) -> None:
    start, limit, mode, cal = c["start"], c["limit"], c["mode"], c["cal"]
    assert isinstance(start, datetime) and isinstance(limit, int)
    assert isinstance(mode, DayMode) and isinstance(cal, HolidayCalendar)
    extension, pauses, rollover, hours = c["extension"], c["pauses"], c["rollover"], c["hours"]
    assert isinstance(extension, int) and isinstance(pauses, list)
    assert isinstance(rollover, bool) and isinstance(hours, tuple)
    expected = ref_due(
        start,
        limit,
        mode,
        cal,
        extension=extension,
        pauses=pauses,
        rollover=rollover,
        hours=hours,
    )
    got = effective_due(
        start=start.astimezone(UTC),
        policy=Policy("k", limit, day_mode=mode),
        calendar=cal,
        tz=TZ,
        pauses=[Pause(a.astimezone(UTC), b.astimezone(UTC)) for a, b in pauses],
        extension_days=extension,
        rollover=Rollover.next_working_day if rollover else Rollover.none,
        office_hours=hours,
    )
    assert got == expected


@PROPS
@given(cases())
def test_an_open_pause_counts_up_to_now_like_a_closed_one(c: dict[str, object]) -> None:
    start, cal, hours, pauses = c["start"], c["cal"], c["hours"], c["pauses"]
    assert isinstance(start, datetime) and isinstance(cal, HolidayCalendar)
    assert isinstance(hours, tuple) and isinstance(pauses, list)
    if not pauses:
        return
    a, b = pauses[-1]
    policy = Policy("k", 60, day_mode=DayMode.working)
    common = {"start": start, "policy": policy, "calendar": cal, "tz": TZ, "office_hours": hours}
    open_ = effective_due(**common, pauses=[Pause(a)], now=b)  # type: ignore[arg-type]
    closed = effective_due(**common, pauses=[Pause(a, b)], now=b + timedelta(days=40))  # type: ignore[arg-type]
    assert open_ == closed


@PROPS
@given(cases())
def test_working_time_matches_slot_counting(c: dict[str, object]) -> None:
    cal, hours, pauses = c["cal"], c["hours"], c["pauses"]
    assert isinstance(cal, HolidayCalendar) and isinstance(hours, tuple)
    assert isinstance(pauses, list)
    for a, b in pauses:
        slots, t = 0, a
        while t < b:
            slots += ref_is_office(t, cal, hours)
            t += SLOT
        assert working_time(a, b, cal, TZ, hours) == slots * SLOT


@PROPS
@given(cases())
@example(  # found by CI: a period ending on a Sunday, extended by 1 day and paused 15 minutes
    {
        "start": ORIGIN,
        "limit": 2,
        "mode": DayMode.calendar,
        "cal": HolidayCalendar(days_off=frozenset(), makeup_workdays=frozenset()),
        "extension": 1,
        "pauses": [(ORIGIN + timedelta(hours=1), ORIGIN + timedelta(hours=1, minutes=15))],
        "rollover": True,
        "hours": ((time(8, 30), time(17, 30)),),
    }
)
def test_the_due_never_moves_earlier_with_pauses_or_extension(c: dict[str, object]) -> None:
    start, limit, mode, cal, pauses, hours = (
        c["start"],
        c["limit"],
        c["mode"],
        c["cal"],
        c["pauses"],
        c["hours"],
    )
    assert isinstance(start, datetime) and isinstance(limit, int) and isinstance(mode, DayMode)
    assert isinstance(cal, HolidayCalendar) and isinstance(pauses, list)
    assert isinstance(hours, tuple)
    policy = Policy("k", limit, day_mode=mode)
    roll = Rollover.next_working_day
    plain = effective_due(start=start, policy=policy, calendar=cal, tz=TZ, rollover=roll)
    more = effective_due(
        start=start,
        policy=policy,
        calendar=cal,
        tz=TZ,
        rollover=roll,
        extension_days=1,
        pauses=[Pause(a, b) for a, b in pauses],
        office_hours=hours,
    )
    assert more >= plain
    # with roll-over, the last day of a period is always a working day
    last = (more - timedelta(microseconds=1)).astimezone(TZ).date()
    assert ref_is_workday(cal, last)
