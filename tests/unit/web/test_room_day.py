"""'My sessions today' counts the district's day (Asia/Shanghai), not UTC's."""

from __future__ import annotations

from datetime import UTC, datetime

from server.kernel.clock import local_day_start as start_of_local_day

TZ = "Asia/Shanghai"


def test_early_morning_in_the_district_is_already_the_next_day() -> None:
    # 2026-12-02 17:30 UTC is 01:30 on 3 December in the district: the day began at 16:00 UTC.
    start = start_of_local_day(datetime(2026, 12, 2, 17, 30, tzinfo=UTC), TZ)
    assert start == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)


def test_a_morning_session_before_utc_midnight_counts_for_today() -> None:
    # 09:00 local on 3 December is 01:00 UTC; a session created at 07:00 local (23:00 UTC on the
    # 2nd) is today's, which a UTC midnight would have dropped.
    now = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    created = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    assert start_of_local_day(now, TZ) <= created
    assert now.replace(hour=0) > created
