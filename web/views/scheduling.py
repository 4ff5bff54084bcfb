"""Scheduling pages (zh-CN first): my sessions, week calendars per person or resource, a
day view per site, the booking form with the slot finder, and the session record. Thin: they
call scheduling services and render."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from scheduling import loader, service
from scheduling.availability import working_intervals
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.http.common import path_int
from server.kernel import clock
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput, NotFound
from server.kernel.ids import parse_id
from server.org import service as org
from server.sessions.record import check_visible, hidden_sessions
from web.labels import SESSION_STATE_LABELS
from web.render import page

STATE_LABELS = SESSION_STATE_LABELS
TYPE_LABELS = {
    "mediation_room": "调解室",
    "video_terminal": "视频终端",
    "legal_room": "法律服务室",
    "window": "窗口",
    "kiosk": "自助机",
}
WEEKDAYS_ZH = "一二三四五六日"
#: What a calendar shows for a session whose case the viewer may not see (no title, no link).
BUSY = "已占用"


def _zone(request: web.Request) -> ZoneInfo:
    return clock.zone(request.app[keys.settings].timezone)


def _span(start: datetime, end: datetime, zone: ZoneInfo, style: clock.Style = "time") -> str:
    return f"{clock.format_local(start, style, zone)}–{clock.format_local(end, 'time', zone)}"


def _day(request: web.Request, name: str, default: date) -> date:
    try:
        return date.fromisoformat(request.query[name]) if request.query.get(name) else default
    except ValueError:
        raise InvalidInput(f"{name} must be YYYY-MM-DD") from None


@protected(Action.schedule_view)
async def my_sessions(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        rows = await service.my_sessions(
            session, staff_id=staff.staff_id, since=now - timedelta(days=1)
        )
    zone = _zone(request)
    items = [
        {
            "id": r.id,
            "title": r.title,
            "state": STATE_LABELS.get(r.state.value, r.state.value),
            "start": clock.format_local(r.planned_start, "minute", zone),
            "room_id": r.room_id,
        }
        for r in rows
    ]
    return page(request, "scheduling/mine.html", {"items": items, "me": f"staff:{staff.staff_id}"})


@protected(Action.schedule_view)
async def week_calendar(request: web.Request) -> web.Response:
    """A week per person or resource: ?owner=staff:7&week=2026-12-07."""
    staff = signed_in_staff(request)
    owner = request.query.get("owner") or f"staff:{staff.staff_id}"
    kind, _, ident = owner.partition(":")
    owner_id = parse_id(ident)
    if kind not in ("staff", "resource") or owner_id is None:
        raise InvalidInput("owner must be staff:<id> or resource:<id>")
    zone = _zone(request)
    today = clock.local_date(utcnow(), zone)
    monday = _day(request, "week", today)
    monday -= timedelta(days=monday.weekday())
    start = datetime.combine(monday, time(0), tzinfo=zone)
    end = start + timedelta(days=7)
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        label = (
            await org.staff_name(session, staff_id=owner_id)
            if kind == "staff"
            else await org.resource_name(session, resource_id=owner_id)
        )
        if label is None:
            raise NotFound(f"no {owner}")
        entries = await service.calendar_entries(
            session, keys=[owner], start=start, end=end, now=now
        )
        hidden = await hidden_sessions(
            session, viewer=staff, session_ids=(e.session_id for e in entries if e.session_id)
        )
        av = (
            await loader.load_availability(
                session, keys=[owner], start=start, end=end, tz=str(zone)
            )
        )[owner]
        cal = await loader.load_calendar(session)
    hours = working_intervals(av.hours, start=start, end=end, calendar=cal, tz=str(zone))
    days = []
    for i in range(7):
        d = monday + timedelta(days=i)
        days.append(
            {
                "date": d.isoformat(),
                "weekday": "周" + WEEKDAYS_ZH[i],
                "hours": [_span(s, e, zone) for s, e in hours if clock.local_date(s, zone) == d],
                "entries": [
                    {
                        "time": _span(e.start, e.end, zone),
                        "title": BUSY if e.session_id in hidden else e.title,
                        "status": e.status,
                        "session_id": None if e.session_id in hidden else e.session_id,
                    }
                    for e in entries
                    if clock.local_date(e.start, zone) == d
                ],
            }
        )
    return page(
        request,
        "scheduling/week.html",
        {
            "owner": owner,
            "label": label,
            "days": days,
            "prev": (monday - timedelta(days=7)).isoformat(),
            "next": (monday + timedelta(days=7)).isoformat(),
        },
    )


@protected(Action.schedule_view)
async def site_day(request: web.Request) -> web.Response:
    """One day of every resource at a site."""
    site_id = path_int(request, "site_id")
    zone = _zone(request)
    day = _day(request, "day", clock.local_date(utcnow(), zone))
    start = datetime.combine(day, time(0), tzinfo=zone)
    async with request.app[keys.db].begin() as session:
        try:
            site = await org.site_detail(session, site_id=site_id)
        except NotFound:
            raise NotFound("no such site") from None
        resources = site.resources
        entries = await service.calendar_entries(
            session,
            keys=[loader.resource_key(r.id) for r in resources],
            start=start,
            end=start + timedelta(days=1),
            now=utcnow(),
        )
        hidden = await hidden_sessions(
            session,
            viewer=signed_in_staff(request),
            session_ids=(e.session_id for e in entries if e.session_id),
        )
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "type": TYPE_LABELS.get(r.type.value, r.type.value),
            "entries": [
                {
                    "time": _span(e.start, e.end, zone),
                    "title": BUSY if e.session_id in hidden else e.title,
                    "session_id": None if e.session_id in hidden else e.session_id,
                }
                for e in entries
                if e.key == loader.resource_key(r.id)
            ],
        }
        for r in resources
    ]
    return page(
        request,
        "scheduling/site_day.html",
        {
            "site": site,
            "day": day.isoformat(),
            "rows": rows,
            "prev": (day - timedelta(days=1)).isoformat(),
            "next": (day + timedelta(days=1)).isoformat(),
        },
    )


@protected(Action.schedule_view)
async def session_page(request: web.Request) -> web.Response:
    return await render_session_page(request)


async def render_session_page(
    request: web.Request,
    *,
    links: list[dict[str, Any]] | None = None,
    change_errors: dict[str, str] | None = None,
    change_values: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    """The booking's page; `links`: join links just issued (with QR codes); `change_*`: the
    reschedule form as typed, with its errors."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        clear = await check_visible(session, viewer=staff, session_id=session_id)
        record = await service.session_record(session, session_id=session_id, guests_in_clear=clear)
    zone = _zone(request)
    start_local = (
        record.planned_start.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
        if record.planned_start
        else ""
    )
    duration = (
        int((record.planned_end - record.planned_start).total_seconds() // 60)
        if record.planned_start and record.planned_end
        else 60
    )
    may_book = staff.can(Action.schedule_book)
    return page(
        request,
        "scheduling/session.html",
        {
            "r": record,
            "state": STATE_LABELS.get(record.state, record.state),
            "links": links,
            "booked": request.query.get("booked") == "1",
            "moved": request.query.get("moved") == "1",
            "cancelled": request.query.get("cancelled") == "1",
            "can_issue_links": may_book
            and record.state in ("scheduled", "lobby", "live")
            and any(p.staff_id is None for p in record.participants),
            "can_change": may_book and record.state == "scheduled" and bool(record.bookings),
            "change_errors": change_errors or {},
            "change_values": change_values
            or {"start_local": start_local, "duration": str(duration), "reason": ""},
        },
        status=status,
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/scheduling", my_sessions, name="scheduling")
    app.router.add_get("/scheduling/calendar", week_calendar, name="scheduling_calendar")
    app.router.add_get(r"/scheduling/sites/{site_id:\d+}", site_day, name="scheduling_site")
    app.router.add_get(
        r"/scheduling/sessions/{session_id:\d+}", session_page, name="scheduling_session"
    )
