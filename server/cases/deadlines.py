"""Statutory time limits as pure functions (DOMAIN §6): day counting in calendar or working
days with an editable holiday calendar (including 调休 make-up workdays), pauses that stop the
clock, one extension, and the warning/escalation ladder the sweep walks.

All figures come from `DeadlinePolicy` rows (reference data); nothing here reads a clock.

Day counting: a limit of N days starting at instant t ends at the end of the N-th day after
t's local date (the start day does not count), i.e. at local midnight starting day N+1. In
working-day mode only working days count.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.kernel.errors import InvalidInput


class ExtensionRefused(InvalidInput):
    code, message_zh = "extension_refused", "延期申请不符合规定（只能延期一次，且不超过规定天数）"


class DayMode(enum.StrEnum):
    calendar = "calendar"
    working = "working"


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


def base_due(start: datetime, policy: Policy, calendar: HolidayCalendar, tz: ZoneInfo) -> datetime:
    last = add_days(start.astimezone(tz).date(), policy.limit_days, policy.day_mode, calendar)
    return end_of_day(last, tz)


def _paused_days(
    pauses: Iterable[Pause], mode: DayMode, calendar: HolidayCalendar, tz: ZoneInfo, now: datetime
) -> tuple[timedelta, int]:
    """Total paused time (calendar mode) and paused working days (working mode)."""
    total = timedelta()
    workdays = 0
    for pause in pauses:
        end = pause.end or now
        if end <= pause.start:
            continue
        total += end - pause.start
        day = pause.start.astimezone(tz).date()
        last = end.astimezone(tz).date()
        while day <= last:
            if calendar.is_workday(day) and mode == DayMode.working:
                workdays += 1
            day += timedelta(days=1)
    return total, workdays


def effective_due(
    *,
    start: datetime,
    policy: Policy,
    calendar: HolidayCalendar,
    tz: ZoneInfo,
    pauses: Sequence[Pause] = (),
    extension_days: int = 0,
    now: datetime | None = None,
) -> datetime:
    """The due instant after the extension and every pause.

    An extension adds days (in the policy's day mode) to the original due date. A pause shifts
    the due time by its length (calendar mode) or by the working days it touched (working mode);
    an open pause counts up to `now`.
    """
    due = base_due(start, policy, calendar, tz)
    if extension_days:
        last = (due - timedelta(microseconds=1)).astimezone(tz).date()
        due = end_of_day(add_days(last, extension_days, policy.day_mode, calendar), tz)
    if pauses:
        ref = now or max((p.end or p.start) for p in pauses)
        total, workdays = _paused_days(pauses, policy.day_mode, calendar, tz, ref)
        if policy.day_mode == DayMode.calendar:
            due += total
        elif workdays:
            last = (due - timedelta(microseconds=1)).astimezone(tz).date()
            due = end_of_day(add_days(last, workdays, DayMode.working, calendar), tz)
    return due


def check_extension(policy: Policy, *, days: int, already_extended: bool) -> None:
    """Extensions: once, by a positive number of days, at most the policy's maximum.

    Raises:
        ExtensionRefused: with `reason` once / days / limit.
    """
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
