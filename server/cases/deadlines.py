"""Statutory time limits as pure functions (DOMAIN §6): day counting in calendar or working
days with an editable holiday calendar (including 调休 make-up workdays), pauses that stop the
clock, one extension, the roll-over of a period that ends on a day off, and the
warning/escalation ladder the sweep walks.

All figures come from `DeadlinePolicy` rows (reference data) and the deployment's
`ClockRules` (settings); nothing here reads a clock. The rules are written down in
docs/deadlines.md.

Day counting (民法典 第二百零一条、第二百零三条): a limit of N days starting at instant t ends at
the end of the N-th day after t's local date (the start day does not count), i.e. at local
midnight starting day N+1. In working-day mode only working days count. With roll-over
(`Rollover.next_working_day`, the default of the deployment) a period whose last day is a
day off (weekend or public holiday, unless a 调休 make-up workday) ends at the end of the next
working day.

Pauses (中止计时, e.g. a hearing 听证) add back the time the clock stood still: wall-clock time
in calendar mode; in working-day mode the *working time* of the pause, i.e. its overlap with
the office hours (`ClockRules.office_hours`) of working days, added after the nominal end in
office hours of the following working days.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.kernel.clock import DEFAULT_OFFICE_HOURS as DEFAULT_OFFICE_HOURS
from server.kernel.clock import OfficeHours as OfficeHours
from server.kernel.clock import parse_office_hours as parse_office_hours
from server.kernel.errors import InvalidInput


class ExtensionRefused(InvalidInput):
    code, message_zh = "extension_refused", "延期申请不符合规定（只能延期一次，且不超过规定天数）"


class ExtensionTooLate(ExtensionRefused):
    code, message_zh = "extension_after_expiry", "期限已届满，不能再延期；逾期状态和抄告级别保留"


class DayMode(enum.StrEnum):
    calendar = "calendar"
    working = "working"


class Rollover(enum.StrEnum):
    """What happens to a period whose last day is a day off (setting
    `ONEDOOR_DEADLINE_HOLIDAY_ROLLOVER`)."""

    #: 民法典 第二百零三条: the period ends on the day after the days off (the default).
    next_working_day = "next_working_day"
    #: The period ends on its last day whatever that day is.
    none = "none"


#: How far the arithmetic looks for a working day before giving up (a calendar without one).
_MAX_SEARCH_DAYS = 3660


class WarnLevel(enum.StrEnum):
    none = "none"
    yellow = "yellow"
    red = "red"


WARN_ORDER = {WarnLevel.none: 0, WarnLevel.yellow: 1, WarnLevel.red: 2}


@dataclass(frozen=True, slots=True)
class HolidayCalendar:
    """Public holidays (days off) and 调休 make-up workdays (weekend days that are worked)."""

    days_off: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        if day in self.makeup_workdays:
            return True
        if day in self.days_off:
            return False
        return day.weekday() < 5


@dataclass(frozen=True, slots=True)
class ClockRules:
    """The deployment's counting rules (settings, not reference data)."""

    rollover: Rollover = Rollover.next_working_day
    office_hours: OfficeHours = DEFAULT_OFFICE_HOURS


@dataclass(frozen=True, slots=True)
class Policy:
    kind: str
    limit_days: int
    day_mode: DayMode = DayMode.calendar
    yellow_days: int = 3
    extension_max_days: int = 0
    #: Days after the due time at which escalation levels 1, 2, 3 (三级抄告) fire.
    escalation_days: tuple[int, ...] = (0, 3, 7)

    def __post_init__(self) -> None:
        if self.limit_days < 0 or self.yellow_days < 0 or self.extension_max_days < 0:
            raise ValueError("deadline policy figures must not be negative")
        if list(self.escalation_days) != sorted(self.escalation_days):
            raise ValueError("escalation days must be ascending")


@dataclass(frozen=True, slots=True)
class Pause:
    start: datetime
    end: datetime | None = None


def add_days(start: date, days: int, mode: DayMode, calendar: HolidayCalendar) -> date:
    """The last day of a period of `days` days after `start` (start itself not counted)."""
    if mode == DayMode.calendar:
        return start + timedelta(days=days)
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if calendar.is_workday(day):
            counted += 1
    return day


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The instant a local day ends (local midnight starting the next day)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def last_day(due: datetime, tz: ZoneInfo) -> date:
    """The local day a period ending at `due` ends on (midnight belongs to the day before)."""
    return (due - timedelta(microseconds=1)).astimezone(tz).date()


def next_working_day(day: date, calendar: HolidayCalendar) -> date:
    """`day` if it is a working day, else the first working day after it."""
    for _ in range(_MAX_SEARCH_DAYS):
        if calendar.is_workday(day):
            return day
        day += timedelta(days=1)
    raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days of {day}")


def roll_over(due: datetime, calendar: HolidayCalendar, tz: ZoneInfo) -> datetime:
    """A period ending on a day off ends at the end of the next working day instead."""
    last = last_day(due, tz)
    if calendar.is_workday(last):
        return due
    return end_of_day(next_working_day(last, calendar), tz)


def office_intervals(
    day: date, calendar: HolidayCalendar, tz: ZoneInfo, hours: OfficeHours
) -> list[tuple[datetime, datetime]]:
    """The office hours of a local day as UTC instants (none on a day off)."""
    if not calendar.is_workday(day):
        return []
    return [
        (
            datetime.combine(day, a, tzinfo=tz).astimezone(UTC),
            datetime.combine(day, b, tzinfo=tz).astimezone(UTC),
        )
        for a, b in hours
    ]


def working_time(
    start: datetime, end: datetime, calendar: HolidayCalendar, tz: ZoneInfo, hours: OfficeHours
) -> timedelta:
    """The office time of working days within [start, end)."""
    total = timedelta()
    if end <= start:
        return total
    day = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        for a, b in office_intervals(day, calendar, tz, hours):
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total


def add_working_time(
    instant: datetime,
    amount: timedelta,
    calendar: HolidayCalendar,
    tz: ZoneInfo,
    hours: OfficeHours,
) -> datetime:
    """The earliest instant after which `amount` of office time has passed since `instant`;
    one that falls on the close of a day's last office interval is moved to the end of that
    day (local midnight), so whole office days shift a deadline by whole working days."""
    if amount <= timedelta():
        return instant
    day = instant.astimezone(tz).date()
    for _ in range(_MAX_SEARCH_DAYS):
        intervals = office_intervals(day, calendar, tz, hours)
        for i, (a, b) in enumerate(intervals):
            lo = max(a, instant)
            if lo >= b:
                continue
            if amount <= b - lo:
                t = lo + amount
                if t == b and i == len(intervals) - 1:
                    return end_of_day(day, tz)
                return t
            amount -= b - lo
        day += timedelta(days=1)
    raise ValueError(f"no working time within {_MAX_SEARCH_DAYS} days of {instant}")


def merge_pauses(
    pauses: Iterable[Pause], *, since: datetime, now: datetime
) -> list[tuple[datetime, datetime]]:
    """The pauses as disjoint [start, end) intervals from `since` on (an open one ends at
    `now`; overlapping ones count once)."""
    spans = sorted(
        (max(p.start, since), p.end or now) for p in pauses if (p.end or now) > max(p.start, since)
    )
    merged: list[tuple[datetime, datetime]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def base_due(
    start: datetime,
    policy: Policy,
    calendar: HolidayCalendar,
    tz: ZoneInfo,
    *,
    rollover: Rollover = Rollover.none,
) -> datetime:
    last = add_days(start.astimezone(tz).date(), policy.limit_days, policy.day_mode, calendar)
    due = end_of_day(last, tz)
    return roll_over(due, calendar, tz) if rollover == Rollover.next_working_day else due


def effective_due(
    *,
    start: datetime,
    policy: Policy,
    calendar: HolidayCalendar,
    tz: ZoneInfo,
    pauses: Sequence[Pause] = (),
    extension_days: int = 0,
    now: datetime | None = None,
    rollover: Rollover = Rollover.none,
    office_hours: OfficeHours = DEFAULT_OFFICE_HOURS,
) -> datetime:
    """The due instant after the extension, every pause and the roll-over.

    The nominal period (start day not counted) is extended by `extension_days` days in the
    policy's day mode from its last day; pauses then add the time the clock stood still
    (calendar mode: its length; working-day mode: its office time on working days, added in
    office time); an open pause counts up to `now`. With `Rollover.next_working_day`, a
    period whose last day is a day off ends at the end of the next working day: the rule is
    applied to the period in days (extension included) before the pauses are added, and again
    after, so neither an extension nor a pause ever moves the due earlier (a 15-minute pause
    after a period ending on a Sunday must not end it on Monday 00:15 instead of Monday's end).
    """
    last = add_days(start.astimezone(tz).date(), policy.limit_days, policy.day_mode, calendar)
    if extension_days:
        last = add_days(last, extension_days, policy.day_mode, calendar)
    due = end_of_day(last, tz)
    if rollover == Rollover.next_working_day:
        due = roll_over(due, calendar, tz)
    if pauses:
        ref = now or max((p.end or p.start) for p in pauses)
        spans = merge_pauses(pauses, since=start, now=ref)
        if policy.day_mode == DayMode.calendar:
            due += sum((b - a for a, b in spans), timedelta())
        else:
            paused = sum(
                (working_time(a, b, calendar, tz, office_hours) for a, b in spans), timedelta()
            )
            due = add_working_time(due, paused, calendar, tz, office_hours)
    if rollover == Rollover.next_working_day:
        due = roll_over(due, calendar, tz)
    return due


def check_extension(
    policy: Policy,
    *,
    days: int,
    already_extended: bool,
    due: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Extensions: before the deadline expires, once, by a positive number of days, at most
    the policy's maximum (信访工作条例: 延长期限不得超过三十日).

    Raises:
        ExtensionTooLate: `now` is at or after `due` (code extension_after_expiry).
        ExtensionRefused: with `reason` once / days / limit.
    """
    if due is not None and now is not None and now >= due:
        raise ExtensionTooLate(
            "the deadline has expired; an extension must be approved before it",
            reason="expired",
            due_at=due.isoformat(),
        )
    if already_extended:
        raise ExtensionRefused("a deadline may be extended once only", reason="once")
    if days <= 0:
        raise ExtensionRefused("an extension needs a positive number of days", reason="days")
    if days > policy.extension_max_days:
        raise ExtensionRefused(
            f"at most {policy.extension_max_days} days may be added to {policy.kind}",
            reason="limit",
            max_days=policy.extension_max_days,
        )


@dataclass(frozen=True, slots=True)
class SweepStep:
    """What the sweep should record for one deadline at `now` (compared with what it has)."""

    warn_level: WarnLevel
    overdue: bool
    escalation_level: int
    #: When the next change can happen; None when the ladder is complete.
    next_action_at: datetime | None
    new_warnings: tuple[WarnLevel, ...] = field(default=())
    new_escalations: tuple[int, ...] = field(default=())


def sweep_step(
    *,
    due: datetime,
    policy: Policy,
    now: datetime,
    current_warn: WarnLevel,
    current_escalation: int,
) -> SweepStep:
    """Idempotent: calling it again with the new state and the same `now` changes nothing."""
    yellow_at = due - timedelta(days=policy.yellow_days)
    target = WarnLevel.none
    if now >= yellow_at:
        target = WarnLevel.yellow
    if now >= due:
        target = WarnLevel.red
    if WARN_ORDER[target] < WARN_ORDER[current_warn]:
        target = current_warn  # a warning, once raised, stays (e.g. after an extension)
    new_warnings = tuple(
        level
        for level in (WarnLevel.yellow, WarnLevel.red)
        if WARN_ORDER[current_warn] < WARN_ORDER[level] <= WARN_ORDER[target]
    )
    overdue = now >= due
    esc_times = [due + timedelta(days=d) for d in policy.escalation_days]
    level = max(current_escalation, sum(1 for at in esc_times if now >= at))
    new_escalations = tuple(range(current_escalation + 1, level + 1))
    candidates = [t for t in (yellow_at, due, *esc_times) if t > now]
    return SweepStep(
        warn_level=target,
        overdue=overdue,
        escalation_level=level,
        next_action_at=min(candidates) if candidates else None,
        new_warnings=new_warnings,
        new_escalations=new_escalations,
    )
