"""/admin/holidays: the holiday calendar for the system administrator (settings.manage): a
year's days off and 调休 make-up workdays, add or remove a day, load a whole year from a JSON
file (the format of server/cases/holidays/<year>.json; docs/deadlines.md)."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from server.auth.permissions import Action
from server.cases.holiday_calendar import (
    MAX_FILE_BYTES,
    HolidayDayExists,
    HolidayFileInvalid,
    load_year,
    parse_holiday_file,
    remove_day,
    year_view,
    years,
)
from server.cases.holiday_calendar import add_day as add_holiday
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.kernel.clock import EdgeDay, zone
from server.kernel.db import utcnow
from server.kernel.errors import NotFound
from web.render import page

WEEKDAYS = "一二三四五六日"


class DayForm(BaseModel, extra="ignore"):
    day: EdgeDay
    kind: str = Field(pattern=r"^(off|workday)$")
    name: str = Field(min_length=1, max_length=64)


def _this_year(request: web.Request) -> int:
    return utcnow().astimezone(zone(request.app[keys.settings].timezone)).year


def _year_param(request: web.Request) -> int:
    try:
        year = int(request.query.get("year", "") or _this_year(request))
    except ValueError:
        year = _this_year(request)
    return year if 2000 <= year <= 2100 else _this_year(request)


async def _render(
    request: web.Request,
    year: int,
    *,
    typed: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        view = await year_view(session, year)
        known = await years(session)
    if year not in known:
        known = sorted({*known, year}, reverse=True)
    return page(
        request,
        "admin/holidays.html",
        {
            "view": view,
            "years": known,
            "weekday": lambda d: WEEKDAYS[d.weekday()],
            "typed": typed or {"day": "", "kind": "off", "name": ""},
            "errors": errors or {},
            "notice": notice,
        },
        status=status,
    )


@protected(Action.settings_manage)
async def holidays_page(request: web.Request) -> web.Response:
    return await _render(request, _year_param(request), notice=request.query.get("done", ""))


@protected(Action.settings_manage)
async def holidays_add(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    typed = {k: str(form.get(k, "")).strip() for k in ("day", "kind", "name")}
    errors: dict[str, str] = {}
    year = _this_year(request)
    try:
        valid = DayForm.model_validate(typed)
        year = valid.day.year
        async with request.app[keys.db].begin() as session:
            await add_holiday(
                session,
                day=valid.day,
                workday=valid.kind == "workday",
                name=valid.name,
                actor=staff.actor,
                ip=client_ip(request),
            )
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "day"
            errors[field] = {
                "day": "请填写有效的日期（如 2026-10-08）。",
                "kind": "请选择放假或调休上班。",
                "name": "请填写名称（1至64个字，如“国庆节”）。",
            }.get(field, "输入有误")
    except HolidayDayExists:
        errors["day"] = "该日期已在安排中；如需修改请先删除。"
    if errors:
        return await _render(request, year, typed=typed, errors=errors, status=422)
    raise web.HTTPSeeOther(f"/admin/holidays?year={year}&done=added")


@protected(Action.settings_manage)
async def holidays_remove(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    try:
        day = date.fromisoformat(str(form.get("day", "")))
    except ValueError as e:
        raise NotFound("no such day") from e
    async with request.app[keys.db].begin() as session:
        await remove_day(session, day=day, actor=staff.actor, ip=client_ip(request))
    raise web.HTTPSeeOther(f"/admin/holidays?year={day.year}&done=removed")


@protected(Action.settings_manage)
async def holidays_load(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    upload = form.get("file")
    year = _year_param(request)
    raw = b""
    if isinstance(upload, web.FileField):
        raw = upload.file.read(MAX_FILE_BYTES + 1)
    if not raw:
        return await _render(
            request, year, errors={"file": "请选择节假日文件（JSON）。"}, status=422
        )
    try:
        data = parse_holiday_file(raw)
    except HolidayFileInvalid as e:
        reason = str(e.details.get("reason", ""))
        return await _render(
            request,
            year,
            errors={"file": f"{HolidayFileInvalid.message_zh}（{reason}）"},
            status=422,
        )
    async with request.app[keys.db].begin() as session:
        await load_year(session, data=data, actor=staff.actor, now=utcnow(), ip=client_ip(request))
    raise web.HTTPSeeOther(f"/admin/holidays?year={data.year}&done=loaded")


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/holidays", holidays_page, name="admin_holidays")
    app.router.add_post("/admin/holidays/days", holidays_add, name="admin_holidays_add")
    app.router.add_post("/admin/holidays/remove", holidays_remove, name="admin_holidays_remove")
    app.router.add_post("/admin/holidays/load", holidays_load, name="admin_holidays_load")
