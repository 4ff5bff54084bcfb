"""The holiday calendar (days off and 调休 make-up workdays), year by year: read, add or remove
a day, load a whole year from a JSON file (server/cases/holidays/<year>.json; format in
docs/deadlines.md). Every change is audited. Loading a year replaces that year's rows in the
caller's transaction; a bad file raises `HolidayFileInvalid` before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.cases.models import Holiday, HolidayYear
from server.kernel.errors import Conflict, InvalidInput, NotFound

#: The files shipped with onedoor (one per year).
SHIPPED_DIR = Path(__file__).parent / "holidays"
#: A calendar file is small; anything bigger is not one.
MAX_FILE_BYTES = 256 * 1024


class HolidayFileInvalid(InvalidInput):
    code, message_zh = "holiday_file_invalid", "节假日文件格式有误，未做任何更改"


class HolidayDayExists(Conflict):
    code, message_zh = "holiday_day_exists", "该日期已在节假日安排中"


class HolidayDayEntry(BaseModel, extra="forbid"):
    date: date
    workday: bool = False
    name: str = Field(min_length=1, max_length=64)


class HolidayFile(BaseModel, extra="forbid"):
    year: int = Field(ge=2000, le=2100)
    provisional: bool = False
    source: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=2000)
    days: list[HolidayDayEntry] = Field(min_length=1, max_length=366)

    @field_validator("days")
    @classmethod
    def _unique(cls, days: list[HolidayDayEntry]) -> list[HolidayDayEntry]:
        seen = [d.date for d in days]
        if len(seen) != len(set(seen)):
            raise ValueError("a date is listed twice")
        return days


@dataclass(frozen=True, slots=True)
class HolidayDay:
    day: date
    workday: bool
    name: str

    @property
    def iso(self) -> str:
        """The date as a form value (YYYY-MM-DD)."""
        return self.day.isoformat()


@dataclass(frozen=True, slots=True)
class HolidayYearView:
    year: int
    days: list[HolidayDay]
    provisional: bool
    source: str
    loaded_at: datetime | None
    loaded_by: str

    @property
    def days_off(self) -> int:
        return sum(1 for d in self.days if not d.workday)

    @property
    def workdays(self) -> int:
        return sum(1 for d in self.days if d.workday)


def parse_holiday_file(raw: bytes | str) -> HolidayFile:
    """A calendar file, checked: JSON, the fields above, every date inside `year`.

    Raises:
        HolidayFileInvalid: with `details.reason` in English (the page shows `message_zh`).
    """
    if len(raw) > MAX_FILE_BYTES:
        raise HolidayFileInvalid("file too large", reason="file too large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise HolidayFileInvalid("not JSON", reason=f"not JSON: {e}") from e
    try:
        parsed = HolidayFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HolidayFileInvalid("invalid holiday file", reason=f"{where}: {first['msg']}") from e
    outside = [d.date for d in parsed.days if d.date.year != parsed.year]
    if outside:
        raise HolidayFileInvalid(
            "date outside the year", reason=f"{outside[0].isoformat()} is not in {parsed.year}"
        )
    return parsed


async def years(session: AsyncSession) -> list[int]:
    """Every year with rows or a load record, newest first."""
    have = {d.year for d in await session.scalars(select(Holiday.day))}
    have |= set(await session.scalars(select(HolidayYear.year)))
    return sorted(have, reverse=True)


async def year_view(session: AsyncSession, year: int) -> HolidayYearView:
    rows = (
        await session.scalars(
            select(Holiday)
            .where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
            .order_by(Holiday.day)
        )
    ).all()
    meta = await session.get(HolidayYear, year)
    return HolidayYearView(
        year=year,
        days=[HolidayDay(r.day, r.workday, r.name) for r in rows],
        provisional=bool(meta and meta.provisional),
        source=meta.source if meta else "",
        loaded_at=meta.loaded_at if meta else None,
        loaded_by=meta.loaded_by if meta else "",
    )


async def load_year(
    session: AsyncSession, *, data: HolidayFile, actor: str, now: datetime, ip: str = ""
) -> int:
    """Replace `data.year`'s rows with the file's (in the caller's transaction); returns the
    number of days loaded."""
    year = data.year
    before = await session.scalar(
        select(Holiday.day)
        .where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
        .limit(1)
    )
    await session.execute(
        delete(Holiday).where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
    )
    for d in data.days:
        session.add(Holiday(day=d.date, workday=d.workday, name=d.name))
    meta = await session.get(HolidayYear, year)
    if meta is None:
        meta = HolidayYear(year=year)
        session.add(meta)
    meta.provisional = data.provisional
    meta.source = data.source
    meta.loaded_at = now
    meta.loaded_by = actor
    await session.flush()
    await record(
        session,
        actor=actor,
        action="holiday.year_loaded",
        object_type="holiday_year",
        object_id=str(year),
        ip=ip,
        detail={
            "days": len(data.days),
            "provisional": data.provisional,
            "source": data.source,
            "replaced": before is not None,
        },
        at=now,
    )
    return len(data.days)


async def load_shipped(session: AsyncSession, *, actor: str, now: datetime) -> list[int]:
    """Load every shipped year file that is not loaded yet (demo loader, fresh installs)."""
    loaded: list[int] = []
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        data = parse_holiday_file(path.read_bytes())
        if await session.get(HolidayYear, data.year) is not None:
            continue
        await load_year(session, data=data, actor=actor, now=now)
        loaded.append(data.year)
    return loaded


def shipped_days(year: int) -> list[HolidayDayEntry]:
    """The days of a shipped year file (none when there is no file for `year`)."""
    path = SHIPPED_DIR / f"{year}.json"
    return parse_holiday_file(path.read_bytes()).days if path.exists() else []


async def add_day(
    session: AsyncSession,
    *,
    day: date,
    workday: bool,
    name: str,
    actor: str,
    ip: str = "",
) -> None:
    """Raises:
    HolidayDayExists: the date is already listed (remove it first)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidInput("name required (1-64 characters)", field="name")
    if await session.get(Holiday, day) is not None:
        raise HolidayDayExists(f"{day.isoformat()} is already listed")
    session.add(Holiday(day=day, workday=workday, name=name))
    await session.flush()
    await record(
        session,
        actor=actor,
        action="holiday.day_added",
        object_type="holiday",
        object_id=day.isoformat(),
        ip=ip,
        detail={"workday": workday, "name": name},
    )


async def remove_day(session: AsyncSession, *, day: date, actor: str, ip: str = "") -> None:
    row = await session.get(Holiday, day)
    if row is None:
        raise NotFound(f"{day.isoformat()} is not listed")
    detail: dict[str, Any] = {"workday": row.workday, "name": row.name}
    await session.delete(row)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="holiday.day_removed",
        object_type="holiday",
        object_id=day.isoformat(),
        ip=ip,
        detail=detail,
    )
