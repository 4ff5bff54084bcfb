"""Half-open time intervals [start, end) and sorted, disjoint interval sets. Pure."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

Interval = tuple[datetime, datetime]
IntervalSet = list[Interval]


def normalize(intervals: Iterable[Interval]) -> IntervalSet:
    """Sort, drop empty intervals and merge overlapping or touching ones."""
    out: IntervalSet = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract(base: Sequence[Interval], minus: Sequence[Interval]) -> IntervalSet:
    """`base` minus `minus`; both must be normalised."""
    out: IntervalSet = []
    j = 0
    for start, end in base:
        cur = start
        while j < len(minus) and minus[j][1] <= cur:
            j += 1
        k = j
        while k < len(minus) and minus[k][0] < end:
            m_start, m_end = minus[k]
            if m_start > cur:
                out.append((cur, m_start))
            cur = max(cur, m_end)
            if cur >= end:
                break
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> IntervalSet:
    """Intersection of two normalised sets."""
    out: IntervalSet = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def clip(intervals: Sequence[Interval], start: datetime, end: datetime) -> IntervalSet:
    return intersect(intervals, [(start, end)]) if start < end else []


def expand(intervals: Iterable[Interval], before: timedelta, after: timedelta) -> IntervalSet:
    return normalize((s - before, e + after) for s, e in intervals)


def starts_fitting(intervals: Sequence[Interval], duration: timedelta) -> IntervalSet:
    """The start times (as closed-open ranges [a, b - duration + ε)) at which a block of
    `duration` fits inside one interval. Returned as [a, b - duration] inclusive via end+1µs."""
    eps = timedelta(microseconds=1)
    return [(s, e - duration + eps) for s, e in intervals if e - s >= duration]


def contains(intervals: Sequence[Interval], start: datetime, end: datetime) -> bool:
    """True if [start, end) lies inside one interval of the normalised set."""
    i = bisect_right(intervals, (start, datetime.max.replace(tzinfo=start.tzinfo))) - 1
    return i >= 0 and intervals[i][0] <= start and end <= intervals[i][1]


def overlaps(intervals: Sequence[Interval], start: datetime, end: datetime) -> bool:
    """True if [start, end) overlaps any interval of the normalised set."""
    i = bisect_right(intervals, (end, end)) - 1
    while i >= 0:
        s, e = intervals[i]
        if s < end and start < e:
            return True
        if e <= start:
            return False
        i -= 1
    return False
