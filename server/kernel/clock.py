"""The district's clock: times are stored in UTC and shown, printed, texted and invited in the
district's zone (`ONEDOOR_TIMEZONE`, Asia/Shanghai by default).

    database (UTC) ──► to_local / local_date / format_local(dt, style, tz=settings.timezone)
                   ──► pages (the `local` Jinja filter), SMS, PDFs, ICS descriptions

Every conversion for people goes through this module, so no page or message prints a UTC time
or a UTC date (an agreement signed at 07:30 Beijing time on 1 April is effective on 1 April,
not on 31 March). A naive datetime is taken as UTC, as the database stores it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

DEFAULT_TIMEZONE = "Asia/Shanghai"

#: "last_day": the last district day before a deadline that ends at local midnight (a due of
#: 2027-05-01 00:00 is printed 2027-04-30, the day by which to act).
Style = Literal["minute", "second", "date", "time", "month_day_time", "last_day"]

FORMATS: dict[Style, str] = {
    "minute": "%Y-%m-%d %H:%M",
    "second": "%Y-%m-%d %H:%M:%S",
    "date": "%Y-%m-%d",
    "time": "%H:%M",
    "month_day_time": "%m-%d %H:%M",
    "last_day": "%Y-%m-%d",
}

Zone = str | ZoneInfo

#: Office hours on a working day, local wall-clock [start, end) intervals, ascending
#: (`ONEDOOR_DEADLINE_OFFICE_HOURS`: working-day deadlines count a pause's office time).
OfficeHours = tuple[tuple[time, time], ...]
DEFAULT_OFFICE_HOURS: OfficeHours = ((time(8, 30), time(17, 30)),)


def parse_office_hours(text: str) -> OfficeHours:
    """`"08:30-12:00,13:30-17:30"` → intervals; raises ValueError naming the problem."""
    out: list[tuple[time, time]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            a, b = (time.fromisoformat(x.strip()) for x in part.split("-"))
        except ValueError:
            raise ValueError(f"office hours {part!r}: write HH:MM-HH:MM") from None
        if a >= b:
            raise ValueError(f"office hours {part!r}: the end must come after the start")
        if out and a < out[-1][1]:
            raise ValueError(f"office hours {part!r}: intervals must be ascending, not overlapping")
        out.append((a, b))
    if not out:
        raise ValueError("office hours: at least one interval, e.g. 08:30-17:30")
    return tuple(out)


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone(tz: Zone = DEFAULT_TIMEZONE) -> ZoneInfo:
    """The zone named `tz` (cached); raises ValueError for an unknown name."""
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:  # OSError: a directory, e.g. "Asia"
        raise ValueError(f"unknown time zone {tz!r} (an IANA name, e.g. Asia/Shanghai)") from e


def to_local(dt: datetime, tz: Zone = DEFAULT_TIMEZONE) -> datetime:
    """`dt` (aware, or naive meaning UTC) as wall-clock time in the district's zone."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(zone(tz))


def local_date(dt: datetime, tz: Zone = DEFAULT_TIMEZONE) -> date:
    """The district's calendar day at `dt` (deadlines count Beijing days)."""
    return to_local(dt, tz).date()


def format_local(
    dt: datetime | date | None, style: Style = "minute", tz: Zone = DEFAULT_TIMEZONE
) -> str:
    """`dt` for people, in the district's zone, without a zone label; "" for None.

    A `date` (already a district day, e.g. a term's 履行期限) is printed as it is."""
    if dt is None:
        return ""
    if not isinstance(dt, datetime):
        return dt.strftime(FORMATS["date"])
    if style == "last_day":
        return last_local_day(dt, tz).strftime(FORMATS["date"])
    return to_local(dt, tz).strftime(FORMATS[style])


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
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day_start(dt: datetime, tz: Zone = DEFAULT_TIMEZONE) -> datetime:
    """The instant (UTC) the district's day containing `dt` began: "today" for queries."""
    local = to_local(dt, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def last_local_day(due: datetime, tz: Zone = DEFAULT_TIMEZONE) -> date:
    """The last district day before `due` (an instant that ends a period: local midnight)."""
    return local_date(due - timedelta(microseconds=1), tz)


# ---------------------------------------------------------------- instants from outside

#: The instants an edge accepts. A petition office means nothing outside them, and a time at
#: the ends of Python's range (0001-01-01T00:00+14:00) overflows when converted to UTC or to the
#: district's zone: the long fuzz run found one reaching a handler as a 500.
INSTANT_MIN = datetime(1900, 1, 1, tzinfo=UTC)
INSTANT_MAX = datetime(2200, 1, 1, tzinfo=UTC)


def instant_in_range(value: datetime) -> datetime:
    """`value` unchanged if it lies in [INSTANT_MIN, INSTANT_MAX) (naive meaning UTC), else a
    ValueError (pydantic's 422 naming the field)."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        utc = INSTANT_MAX
    if not INSTANT_MIN <= utc < INSTANT_MAX:
        raise ValueError("a time between 1900 and 2199")
    return value


#: A datetime field of a request model (body or query).
EdgeInstant = Annotated[datetime, AfterValidator(instant_in_range)]


def day_in_range(value: date) -> date:
    """`value` unchanged if its whole day lies in the range above in any zone, else ValueError
    (date.min in Asia/Shanghai begins before year 1 in UTC)."""
    if not INSTANT_MIN.date() < value < INSTANT_MAX.date():
        raise ValueError("a day between 1900 and 2199")
    return value


#: A date field of a request model or form.
EdgeDay = Annotated[date, AfterValidator(day_in_range)]
