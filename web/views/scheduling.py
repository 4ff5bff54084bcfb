"""Scheduling pages (zh-CN first): my sessions, week calendars per person or resource, a
day view per site, the booking form with the slot finder, and the session record. Thin: they
call scheduling services and render."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError

from scheduling import loader, service
from scheduling.availability import working_intervals
from scheduling.case_link import link_case
from scheduling.handover import issue_handover_links
from scheduling.schemas import BookingRequest, SlotQuery
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.http.common import path_int
from server.kernel import clock
from server.kernel.db import utcnow
from server.kernel.errors import AppError, InvalidInput, NotFound
from server.kernel.ids import parse_id
from server.org import service as org
from server.org.schemas import ResourceType
from server.sessions.record import check_visible, hidden_sessions
from server.sessions.service import JoinLinks
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


#: Fields of the booking form an error can be shown next to.
BOOKING_FIELDS = frozenset({"case_no", "title", "guest_name", "guest_phone"})


async def _form_options(request: web.Request) -> dict[str, Any]:
    async with request.app[keys.db].begin() as session:
        depts = await org.departments(session)
        streets = await org.sites(session, community=False)
        communities = await org.sites(session, community=True)
    return {"depts": depts, "streets": streets, "communities": communities}


@protected(Action.schedule_book)
async def book_form(request: web.Request) -> web.Response:
    """GET: the form, and slots once asked; POST: book the chosen slot."""
    staff = signed_in_staff(request)
    zone = _zone(request)
    options = await _form_options(request)
    values: dict[str, Any] = (
        dict(request.query) if request.method == "GET" else dict(await request.post())
    )
    context: dict[str, Any] = {
        **options,
        "values": values,
        "slots": [],
        "error": None,
        "error_detail": "",
        "searched": False,
        "field_errors": {},
        "chosen": None,
    }
    if request.method == "POST":
        field_errors: dict[str, str] = {}
        context["field_errors"] = field_errors
        try:
            start = datetime.fromisoformat(str(values["start"]))
            end = datetime.fromisoformat(str(values["end"]))
            context["chosen"] = _span(start, end, zone, "month_day_time")
            body = BookingRequest.model_validate(
                {
                    "start": start,
                    "end": end,
                    "staff": [{"staff_id": int(values["staff_id"]), "as_role": "mediator"}],
                    "resources": [
                        {"resource_id": int(r)}
                        for r in str(values.get("resource_ids", "")).split(",")
                        if r
                    ],
                    "guests": (
                        [
                            {
                                "display_name": values["guest_name"],
                                "phone": values.get("guest_phone", ""),
                            }
                        ]
                        if values.get("guest_name")
                        else []
                    ),
                    "title": values.get("title", ""),
                    "case_no": str(values.get("case_no", "")).strip() or None,
                }
            )
            async with request.app[keys.db].begin() as session:
                out = await service.book(
                    session,
                    request=await link_case(session, body, booker=staff),
                    actor=staff.actor,
                    actor_staff_id=staff.staff_id,
                    now=utcnow(),
                    tz=str(zone),
                    cipher=request.app[keys.pii],
                )
            raise web.HTTPSeeOther(f"/scheduling/sessions/{out.session_id}?booked=1")
        except (ValidationError, KeyError, ValueError) as e:
            context["error"], context["error_detail"] = "输入有误", str(e)
        except AppError as e:
            field = e.details.get("field")
            if isinstance(field, str) and field in BOOKING_FIELDS:
                field_errors[field] = e.message_zh
                context["error"] = "请更正下列标出的内容。"
            else:
                context["error"], context["error_detail"] = e.message_zh, str(e)
        status = 404 if field_errors.get("case_no") else 422
        return page(request, "scheduling/book.html", context, status=status)
    if values.get("dept"):
        try:
            resources: list[dict[str, Any]] = []
            if values.get("room_site"):
                resources.append(
                    {"type": ResourceType.mediation_room, "site_ids": [int(values["room_site"])]}
                )
            for name in ("terminal_a", "terminal_b"):
                if values.get(name):
                    resources.append(
                        {"type": ResourceType.video_terminal, "site_ids": [int(values[name])]}
                    )
            query = SlotQuery.model_validate(
                {
                    "people": [{"role": "mediator", "department_id": int(values["dept"])}],
                    "resources": resources,
                    "duration_min": int(values.get("duration", 60)),
                    "limit": 8,
                }
            )
            async with request.app[keys.db].begin() as session:
                slots = await loader.search_slots(session, query=query, now=utcnow(), tz=str(zone))
            context["slots"] = [
                {
                    "label": _span(s.start, s.end, zone, "month_day_time"),
                    "start": s.start.isoformat(),
                    "end": s.end.isoformat(),
                    "staff_id": s.staff_ids[0],
                    "resource_ids": ",".join(str(r) for r in s.resource_ids),
                    "sites": s.sites,
                }
                for s in slots
            ]
            context["searched"] = True
        except (ValidationError, ValueError) as e:
            context["error"], context["error_detail"] = "输入有误", str(e)
    return page(request, "scheduling/book.html", context)


@protected(Action.schedule_view)
async def session_page(request: web.Request) -> web.Response:
    return await _session_page(request)


async def _session_page(request: web.Request, *, links: list[Any] | None = None) -> web.Response:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=staff, session_id=session_id)
        record = await service.session_record(session, session_id=session_id)
    return page(
        request,
        "scheduling/session.html",
        {
            "r": record,
            "state": STATE_LABELS.get(record.state, record.state),
            "links": links,
            "booked": request.query.get("booked") == "1",
            "can_issue_links": staff.can(Action.schedule_book)
            and record.state in ("scheduled", "lobby", "live")
            and any(p.staff_id is None for p in record.participants),
        },
    )


@protected(Action.schedule_book)
async def session_links(request: web.Request) -> web.Response:
    """POST: fresh join links for the session's guests, shown to the staff member to hand
    over (copy, print, read out) besides the SMS."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=staff, session_id=session_id)
        links = await issue_handover_links(
            session,
            session_id=session_id,
            issuer=JoinLinks(settings.secret_bytes(), settings.effective_public_url),
            actor=staff.actor,
            now=utcnow(),
        )
    return await _session_page(request, links=links)


def setup(app: web.Application) -> None:
    app.router.add_get("/scheduling", my_sessions, name="scheduling")
    app.router.add_get("/scheduling/calendar", week_calendar, name="scheduling_calendar")
    app.router.add_get(r"/scheduling/sites/{site_id:\d+}", site_day, name="scheduling_site")
    app.router.add_route("GET", "/scheduling/book", book_form, name="scheduling_book")
    app.router.add_route("POST", "/scheduling/book", book_form)
    app.router.add_get(
        r"/scheduling/sessions/{session_id:\d+}", session_page, name="scheduling_session"
    )
    app.router.add_post(
        r"/scheduling/sessions/{session_id:\d+}/links", session_links, name="scheduling_links"
    )
