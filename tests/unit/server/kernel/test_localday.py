from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from server.kernel.clock import day_bounds_utc

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_late_evening_in_the_district_is_still_that_local_day() -> None:
    # 2027-01-01 23:30 in Shanghai is 15:30 UTC: the UTC day would start 8 hours late
    instant = datetime(2027, 1, 1, 15, 30, tzinfo=UTC)
    assert instant == datetime(2027, 1, 1, 23, 30, tzinfo=SHANGHAI)
    start, end = day_bounds_utc(instant, tz="Asia/Shanghai")
    assert start == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert end == datetime(2027, 1, 1, 16, 0, tzinfo=UTC)


def test_early_morning_utc_belongs_to_the_next_local_day() -> None:
    # 17:00 UTC on 31 December is already 01:00 on 1 January in the district
    start, end = day_bounds_utc(datetime(2026, 12, 31, 17, 0, tzinfo=UTC), tz=SHANGHAI)
    assert (start, end) == (
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
        datetime(2027, 1, 1, 16, 0, tzinfo=UTC),
    )


def test_local_midnight_opens_a_new_day() -> None:
    start, _ = day_bounds_utc(datetime(2027, 1, 1, 16, 0, tzinfo=UTC), tz=SHANGHAI)
    assert start == datetime(2027, 1, 1, 16, 0, tzinfo=UTC)


def test_a_daylight_saving_day_is_23_hours_long() -> None:
    start, end = day_bounds_utc(datetime(2027, 3, 28, 12, 0, tzinfo=UTC), tz="Europe/Berlin")
    assert (end - start).total_seconds() == 23 * 3600


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        day_bounds_utc(datetime(2027, 1, 1, 12, 0), tz=SHANGHAI)  # noqa: DTZ001
