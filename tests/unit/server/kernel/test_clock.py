"""The district's clock: stored UTC instants shown in the district's zone, days counted there."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from server.kernel import clock
from server.kernel.settings import Settings, SettingsError

#: 07:30 on 1 April in Beijing, still 31 March in UTC.
NEAR_MIDNIGHT = datetime(2027, 3, 31, 23, 30, tzinfo=UTC)


def test_local_time_and_day_are_beijings() -> None:
    local = clock.to_local(NEAR_MIDNIGHT)
    assert (local.date(), local.hour, local.minute) == (date(2027, 4, 1), 7, 30)
    assert clock.local_date(NEAR_MIDNIGHT) == date(2027, 4, 1)
    assert clock.format_local(NEAR_MIDNIGHT) == "2027-04-01 07:30"
    assert clock.format_local(NEAR_MIDNIGHT, "second") == "2027-04-01 07:30:00"
    assert clock.format_local(NEAR_MIDNIGHT, "date") == "2027-04-01"
    assert clock.format_local(NEAR_MIDNIGHT, "time") == "07:30"
    assert clock.format_local(NEAR_MIDNIGHT, "month_day_time") == "04-01 07:30"


def test_naive_means_utc_and_none_is_empty() -> None:
    assert clock.format_local(NEAR_MIDNIGHT.replace(tzinfo=None)) == "2027-04-01 07:30"
    assert clock.format_local(None) == ""
    assert clock.format_local(date(2027, 4, 1), "minute") == "2027-04-01"  # a day stays a day


def test_another_zone() -> None:
    assert clock.format_local(NEAR_MIDNIGHT, tz="Asia/Urumqi") == "2027-04-01 05:30"
    assert clock.format_local(NEAR_MIDNIGHT, tz="UTC") == "2027-03-31 23:30"


def test_last_day_of_a_deadline_ending_at_local_midnight() -> None:
    # Due at the start of 1 May in Beijing (16:00 UTC on 30 April): act by 30 April.
    due = datetime(2027, 4, 30, 16, 0, tzinfo=UTC)
    assert clock.format_local(due) == "2027-05-01 00:00"
    assert clock.last_local_day(due) == date(2027, 4, 30)
    assert clock.format_local(due, "last_day") == "2027-04-30"


def test_the_district_day_starts_at_beijing_midnight() -> None:
    start = clock.local_day_start(NEAR_MIDNIGHT)  # 07:30 on 1 April in Beijing
    assert start == datetime(2027, 3, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 April in Beijing
    assert start.tzinfo == UTC


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        clock.zone("Asia/Beijing")


def test_setting_defaults_to_shanghai_and_is_checked_at_start() -> None:
    assert Settings.from_env({}).timezone == "Asia/Shanghai"
    assert Settings.from_env({"ONEDOOR_TIMEZONE": "Asia/Urumqi"}).timezone == "Asia/Urumqi"
    with pytest.raises(SettingsError, match="ONEDOOR_TIMEZONE"):
        Settings.from_env({"ONEDOOR_TIMEZONE": "Beijing"})
    with pytest.raises(SettingsError, match="ONEDOOR_TIMEZONE"):
        Settings.from_env({"ONEDOOR_TIMEZONE": "../etc/passwd"})
