"""The slot finder: the first N times at which one candidate from every requirement group is
free. Pure; `scheduling.loader` builds its input from the database.

A group is "this person", "any judicial mediator of department X" or "a mediation room at
street station S": a list of candidates with their free intervals and site. A slot needs one
distinct candidate per group. Slots are ranked earliest first, then by fewest sites involved
(one trip instead of two); at each start time the assignment with the fewest sites is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scheduling.intervals import Interval, IntervalSet, contains, intersect, normalize

MAX_GRID_POINTS = 20_000  # a safety bound on one search (e.g. 14 days at 1-minute steps)


@dataclass(frozen=True, slots=True)
class Candidate:
    key: str  # "staff:7" or "resource:3"
    site_id: int | None
    free: tuple[Interval, ...]  # normalised, UTC


@dataclass(frozen=True, slots=True)
class Group:
    label: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    assignment: tuple[str, ...]  # one candidate key per group, in group order
    sites: int

    @property
    def rank(self) -> tuple[datetime, int]:
        return (self.start, self.sites)


def _grid_start(t: datetime, step: timedelta, tz: ZoneInfo) -> datetime:
    """The first grid point at or after t (grid anchored at local midnight)."""
    local = t.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    n = -(-(local - midnight) // step)  # ceil
    return (midnight + n * step).astimezone(t.tzinfo)


def _best_assignment(
    options: Sequence[Sequence[Candidate]],
) -> tuple[tuple[str, ...], int] | None:
    """One distinct candidate per group with the fewest distinct sites (branch and bound)."""
    order = sorted(range(len(options)), key=lambda i: len(options[i]))
    best: list[tuple[tuple[str, ...], int] | None] = [None]
    chosen: dict[int, Candidate] = {}
    used: set[str] = set()

    def sites_of() -> set[int | None]:
        return {c.site_id for c in chosen.values()}

    def go(depth: int) -> None:
        current_sites = sites_of()
        if best[0] is not None and len(current_sites) >= best[0][1]:
            return
        if depth == len(order):
            keys = tuple(chosen[i].key for i in range(len(options)))
            best[0] = (keys, len(current_sites))
            return
        gi = order[depth]
        # Try candidates at already-used sites first; one candidate per new site is enough
        # unless the key is taken (then the next one at that site is tried).
        seen_new_sites: set[int | None] = set()
        ranked = sorted(options[gi], key=lambda c: c.site_id not in current_sites)
        for cand in ranked:
            if cand.key in used:
                continue
            if cand.site_id not in current_sites:
                if cand.site_id in seen_new_sites:
                    continue
                seen_new_sites.add(cand.site_id)
            chosen[gi] = cand
            used.add(cand.key)
            go(depth + 1)
            used.discard(cand.key)
            del chosen[gi]

    go(0)
    return best[0]


def find_slots(
    groups: Sequence[Group],
    *,
    duration: timedelta,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=30),
    limit: int = 5,
    tz: str = "Asia/Shanghai",
) -> list[Slot]:
    """The first `limit` slots of `duration` between `start` and `end`, ranked."""
    if duration <= timedelta(0) or step <= timedelta(0) or start >= end or not groups:
        return []
    # Where could a session start for each group (any candidate)? Intersect across groups.
    eps = timedelta(microseconds=1)
    possible: IntervalSet | None = None
    for group in groups:
        starts = normalize(
            (s, e - duration + eps)
            for c in group.candidates
            for s, e in c.free
            if e - s >= duration
        )
        possible = starts if possible is None else intersect(possible, starts)
        if not possible:
            return []
    assert possible is not None
    zone = ZoneInfo(tz)
    found: list[Slot] = []
    visited = 0
    for lo, hi in possible:
        t = _grid_start(max(lo, start), step, zone)
        while t < hi and t + duration <= end:
            visited += 1
            if visited > MAX_GRID_POINTS:
                return found
            options = [
                [c for c in g.candidates if contains(c.free, t, t + duration)] for g in groups
            ]
            if all(options):
                best = _best_assignment(options)
                if best is not None:
                    found.append(Slot(t, t + duration, best[0], best[1]))
                    if len(found) >= limit:
                        return sorted(found, key=lambda s: s.rank)
            t += step
    return sorted(found, key=lambda s: s.rank)
