"""Availability of one person or resource as an interval set. Pure.

Working hours are RFC 5545 recurrence rules (python-dateutil) in local time (Asia/Shanghai by
default); the holiday calendar removes public holidays and adds 调休 make-up workdays; absences
(leave, maintenance) are subtracted, extra hours (加班) added. The result is in UTC.

Bookings block an owner's time padded by the owner's buffers: a claim is stored covering
[start - buffer_before, end + buffer_after), and a new booking's padded range must not overlap
any stored claim. So with buffer_after = 10 min two sessions are at least 10 minutes apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

from scheduling.intervals import Interval, IntervalSet, clip, normalize, subtract

DEFAULT_TZ = "Asia/Shanghai"


class RuleError(ValueError):
    """A recurrence rule or working-hours definition is malformed."""


@lru_cache(maxsize=1024)
def _compiled_rule(body: str, dtstart: date) -> rrule | rruleset:
    """A parsed RRULE expanding at midnight UTC from `dtstart` (parsing dominates expansion,
    and every search meets the same few rule bodies). dateutil rules without `cache=True`
    keep no iteration state, so one object may be shared."""
    return rrulestr(body, dtstart=datetime.combine(dtstart, time(0), tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class HolidayCalendar:
    """Public holidays (days off) and 调休 make-up workdays (weekend days that are worked)."""

    days_off: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """One recurring block of working time, e.g. Mon–Fri 08:30–12:00.

    `rrule` is an RFC 5545 RRULE body without DTSTART ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR").
    With `observe_holidays`, occurrences on public holidays are dropped and every 调休
    make-up workday gets this block too (it is worked like a regular weekday).
    """

    rrule: str
    start_local: time
    end_local: time
    valid_from: date
    valid_until: date | None = None
    observe_holidays: bool = True

    def __post_init__(self) -> None:
        if self.end_local <= self.start_local:
            raise RuleError("working hours must end after they start (same day)")
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise RuleError("valid_until is before valid_from")
        body = self.rrule.strip()
        if not body or "DTSTART" in body.upper() or "\n" in body:
            raise RuleError("rrule must be a single RRULE body without DTSTART")
        try:
            _compiled_rule(body, date(2000, 1, 1))
        except (ValueError, TypeError) as e:
            raise RuleError(f"invalid rrule: {e}") from None


@dataclass(frozen=True, slots=True)
class BookingPolicy:
    """Per owner: padding between bookings, how soon and how far ahead one may book, and
    the slot grid (slots start on multiples of `slot_step` from local midnight)."""

    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(hours=2)
    max_advance: timedelta = timedelta(days=60)
    slot_step: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        for name in ("buffer_before", "buffer_after", "min_notice", "max_advance"):
            if getattr(self, name) < timedelta(0):
                raise RuleError(f"{name} must not be negative")
        if self.slot_step <= timedelta(0) or timedelta(days=1) % self.slot_step:
            raise RuleError("slot_step must divide a day")


#: Built-in fallback when neither the owner nor the "default" owner has rules [cfg: override
#: with availability rows for owner "default"]: Mon–Fri 08:30–12:00 and 13:30–17:30.
FALLBACK_HOURS: tuple[WorkingHours, ...] = (
    WorkingHours("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", time(8, 30), time(12, 0), date(2020, 1, 1)),
    WorkingHours("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", time(13, 30), time(17, 30), date(2020, 1, 1)),
)


@dataclass(frozen=True, slots=True)
class Availability:
    """Everything that decides when one owner ("staff:7", "resource:3") can be booked."""

    hours: tuple[WorkingHours, ...] = FALLBACK_HOURS
    unavailable: tuple[Interval, ...] = ()  # leave, maintenance (UTC)
    extra: tuple[Interval, ...] = ()  # extra hours outside the rules (UTC)
    policy: BookingPolicy = field(default_factory=BookingPolicy)
    tz: str = DEFAULT_TZ


def _local_dt(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def working_intervals(
    hours: Iterable[WorkingHours],
    *,
    start: datetime,
    end: datetime,
    calendar: HolidayCalendar,
    tz: str = DEFAULT_TZ,
) -> IntervalSet:
    """Working time between `start` and `end` (UTC), before absences and bookings."""
    zone = ZoneInfo(tz)
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    return clip(list(_working_days(tuple(hours), first_day, last_day, calendar, tz)), start, end)


@lru_cache(maxsize=512)
def _working_days(
    hours: tuple[WorkingHours, ...],
    first_day: date,
    last_day: date,
    calendar: HolidayCalendar,
    tz: str,
) -> tuple[Interval, ...]:
    """The rules' working time over whole local days [first_day, last_day], unclipped.
    Keyed by days, not instants: most owners share the "default" hours, and searches
    starting at any moment of the same day reuse one expansion."""
    zone = ZoneInfo(tz)
    out: list[Interval] = []
    for wh in hours:
        lo = max(first_day, wh.valid_from)
        hi = last_day if wh.valid_until is None else min(last_day, wh.valid_until)
        if lo > hi:
            continue
        # Dates only: expand at midnight UTC and keep the calendar day.
        rule = _compiled_rule(wh.rrule, wh.valid_from)
        days = {
            d.date()
            for d in rule.between(
                datetime.combine(lo, time(0), tzinfo=UTC),
                datetime.combine(hi, time(0), tzinfo=UTC),
                inc=True,
            )
        }
        if wh.observe_holidays:
            days -= calendar.days_off
            days |= {d for d in calendar.makeup_workdays if lo <= d <= hi}
        for d in days:
            out.append((_local_dt(d, wh.start_local, zone), _local_dt(d, wh.end_local, zone)))
    return tuple(normalize(out))


def free_intervals(
    availability: Availability,
    *,
    busy: Sequence[Interval],
    start: datetime,
    end: datetime,
    now: datetime,
    calendar: HolidayCalendar,
) -> IntervalSet:
    """When a session may take place for this owner, within [start, end).

    `busy` are the owner's stored claims (already padded by the owner's buffers when they were
    made). A new session [s, e) pads itself too, so it fits when [s, e) lies in working time
    and [s - before, e + after) misses every claim: the claims are widened by the new
    session's buffers here. Minimum notice and maximum advance trim the window.
    """
    policy = availability.policy
    lo = max(start, now + policy.min_notice)
    hi = min(end, now + policy.max_advance)
    if lo >= hi:
        return []
    working = normalize(
        [
            *working_intervals(
                availability.hours, start=lo, end=hi, calendar=calendar, tz=availability.tz
            ),
            *clip(normalize(availability.extra), lo, hi),
        ]
    )
    blocked = normalize(
        [
            *availability.unavailable,
            *((s - policy.buffer_after, e + policy.buffer_before) for s, e in busy),
        ]
    )
    return subtract(working, blocked)


def padded(policy: BookingPolicy, start: datetime, end: datetime) -> Interval:
    """The range a booking claims for an owner: the session plus the owner's buffers."""
    return (start - policy.buffer_before, end + policy.buffer_after)
