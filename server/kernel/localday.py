"""The district's calendar day: "today" is a day in the deployment's time zone
(ONEDOOR_TIMEZONE, Asia/Shanghai), not a UTC day, which would start at 08:00 there."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def day_bounds_utc(instant: datetime, *, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """The local day containing `instant`, as [start, end) in UTC.

    The end is the next local midnight, so a day that gains or loses an hour to a
    daylight-saving change (not in China, but the zone is a setting) is 23 or 25 hours long.
    """
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    day = instant.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))
