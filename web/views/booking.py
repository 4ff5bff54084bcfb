"""Booking a mediation from the case (issue #16 item 2): the form takes the case number, the
mediator as a person and the room, then several parties (applicants, respondents, their
agents, an interpreter, observers) with name and phone; recording is on by default for a
mediation. From the booking's page: reschedule, cancel (after a confirmation page), and the
printable join-link sheet with a QR code per party. Thin: scheduling services do the work."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import segno
from aiohttp import web
from pydantic import ValidationError

from scheduling import choices, loader, service
from scheduling.case_link import link_case
from scheduling.handover import HandoverLink, issue_handover_links
from scheduling.schemas import BookingRequest, Guest, SlotQuery
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.http.common import path_int
from server.kernel import clock
from server.kernel.db import utcnow
from server.kernel.errors import AppError, InvalidInput
from server.org import service as org
from server.org.schemas import ResourceType
from server.sessions.record import check_visible
from server.sessions.service import JoinLinks
from web.render import page
from web.views.scheduling import render_session_page

#: A party row's kind on the form: (participant role, side).
PARTY_KINDS: dict[str, tuple[str, str | None]] = {
    "applicant": ("party", "applicant"),
    "respondent": ("party", "respondent"),
    "applicant_agent": ("agent", "applicant"),
    "respondent_agent": ("agent", "respondent"),
    "interpreter": ("interpreter", None),
    "observer": ("observer", None),
}
PARTY_KIND_LABELS = {
    "applicant": "申请人",
    "respondent": "被申请人",
    "applicant_agent": "申请人代理人",
    "respondent_agent": "被申请人代理人",
    "interpreter": "翻译人员",
    "observer": "旁听人员",
}
#: The rows the form offers, and the kind each starts with.
DEFAULT_ROWS = ("applicant", "respondent", "applicant_agent", "respondent_agent", "interpreter")
MAX_ROWS = 8
#: Fields of the booking form an error can be shown next to.
BOOKING_FIELDS = frozenset({"case_no", "title", "guest_name", "guest_phone", "staff_id"})
#: What the slot finder and the chosen-slot form carry along.
CARRIED = ("case_no", "mediator_id", "room_id", "duration", "title", "from_session")


def _zone(request: web.Request) -> Any:
    return clock.zone(request.app[keys.settings].timezone)


def _span(start: datetime, end: datetime, zone: Any, style: clock.Style = "time") -> str:
    return f"{clock.format_local(start, style, zone)}–{clock.format_local(end, 'time', zone)}"


def qr_svg(url: str) -> str:
    """A QR code of `url` as an SVG data URI (as web/follow_links.py makes them)."""
    return str(segno.make(url, error="m").svg_data_uri(scale=4, border=2))


def party_rows(values: dict[str, Any]) -> list[dict[str, str]]:
    """The party rows as typed (or prefilled), padded with the default kinds."""
    rows: list[dict[str, str]] = []
    for i in range(MAX_ROWS):
        kind = str(values.get(f"party_kind_{i}", ""))
        name = str(values.get(f"party_name_{i}", ""))
        phone = str(values.get(f"party_phone_{i}", ""))
        if not (kind or name or phone) and i >= len(DEFAULT_ROWS):
            continue
        default = DEFAULT_ROWS[i] if i < len(DEFAULT_ROWS) else "observer"
        rows.append({"i": str(i), "kind": kind or default, "name": name, "phone": phone})
    if values.get("guest_name") and not any(r["name"] for r in rows):
        rows[0] |= {"name": str(values["guest_name"]), "phone": str(values.get("guest_phone", ""))}
    return rows


def guests_from(values: dict[str, Any], field_errors: dict[str, str]) -> list[dict[str, Any]]:
    """The guests of the form's party rows (empty rows skipped); a bad row's error goes next
    to its field."""
    guests = []
    for row in party_rows(values):
        if not row["name"].strip():
            if row["phone"].strip():
                field_errors[f"party_name_{row['i']}"] = "请填写姓名"
            continue
        role, side = PARTY_KINDS.get(row["kind"], ("party", None))
        data = {
            "display_name": row["name"].strip(),
            "phone": row["phone"].strip(),
            "as_role": role,
            "side": side,
        }
        try:
            Guest.model_validate(data)
        except ValidationError as e:
            field = "phone" if "phone" in str(e) else "name"
            field_errors[f"party_{field}_{row['i']}"] = (
                "手机号码格式不正确" if field == "phone" else "姓名过长"
            )
            continue
        guests.append(data)
    return guests


async def _options(request: web.Request) -> dict[str, Any]:
    async with request.app[keys.db].begin() as session:
        return {
            "mediators": await choices.mediators(session),
            "rooms": await choices.rooms(session),
            "depts": await org.departments(session),
        }


async def _prefill(request: web.Request, values: dict[str, Any]) -> None:
    """Booking again after a no-show or adjournment: the earlier session's parties."""
    staff = signed_in_staff(request)
    source = str(values.get("from_session", ""))
    if not source.isdigit() or any(k.startswith("party_name_") for k in values):
        return
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=staff, session_id=int(source))
        guests = await choices.booked_guests(
            session, session_id=int(source), cipher=request.app[keys.pii]
        )
    kinds = {v: k for k, v in PARTY_KINDS.items()}
    for i, g in enumerate(guests[:MAX_ROWS]):
        values[f"party_kind_{i}"] = kinds.get((g.role, g.side), "applicant")
        values[f"party_name_{i}"] = g.display_name
        values[f"party_phone_{i}"] = g.phone


async def _slots(request: web.Request, values: dict[str, Any], zone: Any) -> list[dict[str, Any]]:
    people: list[dict[str, Any]]
    if str(values.get("mediator_id", "")).isdigit():
        people = [{"staff_id": int(values["mediator_id"]), "as_role": "mediator"}]
    else:  # the department's any mediator (the API's older way)
        people = [{"role": "mediator", "department_id": int(values["dept"])}]
    resources: list[dict[str, Any]] = []
    if str(values.get("room_id", "")).isdigit():
        resources.append({"resource_id": int(values["room_id"])})
    if values.get("room_site"):
        resources.append(
            {"type": ResourceType.mediation_room, "site_ids": [int(values["room_site"])]}
        )
    query = SlotQuery.model_validate(
        {
            "people": people,
            "resources": resources,
            "duration_min": int(values.get("duration") or 60),
            "limit": 8,
        }
    )
    async with request.app[keys.db].begin() as session:
        found = await loader.search_slots(session, query=query, now=utcnow(), tz=str(zone))
    return [
        {
            "label": _span(s.start, s.end, zone, "month_day_time"),
            "start": s.start.isoformat(),
            "end": s.end.isoformat(),
            "staff_id": s.staff_ids[0],
            "resource_ids": ",".join(str(r) for r in s.resource_ids),
            "sites": s.sites,
        }
        for s in found
    ]


def _chosen(values: dict[str, Any], options: dict[str, Any], zone: Any) -> dict[str, Any]:
    start = datetime.fromisoformat(str(values["start"]))
    end = datetime.fromisoformat(str(values["end"]))
    staff_id = str(values.get("staff_id", ""))
    room_ids = {r for r in str(values.get("resource_ids", "")).split(",") if r}
    return {
        "when": _span(start, end, zone, "month_day_time"),
        "mediator": next((m for m in options["mediators"] if str(m.id) == staff_id), None),
        "rooms": [r for r in options["rooms"] if str(r.id) in room_ids],
    }


@protected(Action.schedule_book)
async def book_form(request: web.Request) -> web.Response:
    """GET: the form (and the slots once asked); POST: book the chosen slot."""
    staff = signed_in_staff(request)
    zone = _zone(request)
    options = await _options(request)
    values: dict[str, Any] = (
        dict(request.query) if request.method == "GET" else dict(await request.post())
    )
    if request.method == "GET":
        await _prefill(request, values)
    field_errors: dict[str, str] = {}
    context: dict[str, Any] = {
        **options,
        "values": values,
        "slots": [],
        "error": None,
        "error_detail": "",
        "searched": False,
        "field_errors": field_errors,
        "chosen": None,
        "party_kinds": PARTY_KIND_LABELS,
        "carried": CARRIED,
    }
    try:
        if values.get("start") and values.get("end"):
            context["chosen"] = _chosen(values, options, zone)
    except ValueError as e:
        context["error"], context["error_detail"] = "输入有误", str(e)
    context["parties"] = party_rows(values)
    if request.method == "POST":
        try:
            guests = guests_from(values, field_errors)
            if field_errors:
                raise InvalidInput("a party row is wrong", field="party")
            recording = (
                values.get("recording") == "on" if values.get("recording_sent") == "1" else None
            )
            body = BookingRequest.model_validate(
                {
                    "start": datetime.fromisoformat(str(values["start"])),
                    "end": datetime.fromisoformat(str(values["end"])),
                    "staff": [{"staff_id": int(values["staff_id"]), "as_role": "mediator"}],
                    "resources": [
                        {"resource_id": int(r)}
                        for r in str(values.get("resource_ids", "")).split(",")
                        if r
                    ],
                    "guests": guests,
                    "title": values.get("title", ""),
                    "case_no": str(values.get("case_no", "")).strip() or None,
                    "recording_allowed": recording,
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
                    lobby_lead=timedelta(minutes=request.app[keys.settings].session_lobby_open_min),
                )
            runner = request.app.get(keys.jobs)
            if runner is not None:
                runner.wake()
            raise web.HTTPSeeOther(f"/scheduling/sessions/{out.session_id}?booked=1")
        except (ValidationError, KeyError, ValueError) as e:
            context["error"], context["error_detail"] = "输入有误", str(e)
        except AppError as e:
            field = e.details.get("field")
            if field_errors or (isinstance(field, str) and field in BOOKING_FIELDS):
                if isinstance(field, str) and field in BOOKING_FIELDS:
                    field_errors[field] = e.message_zh
                context["error"] = "请更正下列标出的内容。"
            else:
                context["error"], context["error_detail"] = e.message_zh, str(e)
        status = 404 if field_errors.get("case_no") else 422
        return page(request, "scheduling/book.html", context, status=status)
    if values.get("mediator_id") or values.get("dept"):
        try:
            context["slots"] = await _slots(request, values, zone)
            context["searched"] = True
        except (ValidationError, ValueError) as e:
            context["error"], context["error_detail"] = "输入有误", str(e)
    return page(request, "scheduling/book.html", context)


# --- changing a booking from its page -------------------------------------------------------


async def _booking_of(request: web.Request, session_id: int) -> int:
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=signed_in_staff(request), session_id=session_id)
        booking = await choices.current_booking(session, session_id=session_id)
    if booking is None:
        raise InvalidInput("this session was not booked", field="booking")
    return booking.id


@protected(Action.schedule_book)
async def reschedule(request: web.Request) -> web.Response:
    """POST from the booking's page: a new date and time (district zone) and a reason."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    zone = _zone(request)
    form = dict(await request.post())
    errors: dict[str, str] = {}
    try:
        start = datetime.fromisoformat(str(form.get("start_local", ""))).replace(tzinfo=zone)
        minutes = int(str(form.get("duration") or "60"))
        if not 15 <= minutes <= 480:
            raise ValueError("duration")
    except ValueError:
        errors["start_local"] = "请填写新的日期和时间"
    else:
        try:
            booking_id = await _booking_of(request, session_id)
            async with request.app[keys.db].begin() as session:
                await service.reschedule(
                    session,
                    booking_id=booking_id,
                    start=start,
                    end=start + timedelta(minutes=minutes),
                    reason=str(form.get("reason", "")),
                    actor=staff.actor,
                    actor_staff_id=staff.staff_id,
                    now=utcnow(),
                    tz=str(zone),
                    lobby_lead=timedelta(minutes=request.app[keys.settings].session_lobby_open_min),
                )
            runner = request.app.get(keys.jobs)
            if runner is not None:
                runner.wake()
            raise web.HTTPSeeOther(f"/scheduling/sessions/{session_id}?moved=1")
        except AppError as e:
            field = e.details.get("field")
            errors["reason" if field == "reason" else "start_local"] = e.message_zh
    return await render_session_page(request, change_errors=errors, change_values=form, status=422)


@protected(Action.schedule_book)
async def cancel(request: web.Request) -> web.Response:
    """GET: confirm the cancellation (with a reason); POST: cancel (METHOD:CANCEL to all)."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        clear = await check_visible(session, viewer=staff, session_id=session_id)
        record = await service.session_record(session, session_id=session_id, guests_in_clear=clear)
    context: dict[str, Any] = {"r": record, "error": None, "reason": ""}
    if request.method == "POST":
        form = await request.post()
        context["reason"] = reason = str(form.get("reason", ""))
        if form.get("confirm") != "yes":
            context["error"] = "请勾选“确认取消”。"
        else:
            try:
                booking_id = await _booking_of(request, session_id)
                async with request.app[keys.db].begin() as session:
                    await service.cancel(
                        session, booking_id=booking_id, reason=reason, actor=staff.actor,
                        now=utcnow(),
                    )  # fmt: skip
                runner = request.app.get(keys.jobs)
                if runner is not None:
                    runner.wake()
                raise web.HTTPSeeOther(f"/scheduling/sessions/{session_id}?cancelled=1")
            except AppError as e:
                context["error"] = (
                    "请填写取消原因" if e.details.get("field") == "reason" else e.message_zh
                )
        return page(request, "scheduling/cancel.html", context, status=422)
    return page(request, "scheduling/cancel.html", context)


async def issue_links(request: web.Request, session_id: int) -> list[HandoverLink]:
    staff = signed_in_staff(request)
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=staff, session_id=session_id)
        return await issue_handover_links(
            session,
            session_id=session_id,
            issuer=JoinLinks(settings.secret_bytes(), settings.effective_public_url),
            actor=staff.actor,
            now=utcnow(),
        )


def with_qr(links: list[HandoverLink]) -> list[dict[str, Any]]:
    return [
        {
            "participant_id": link.participant_id,
            "display_name": link.display_name,
            "role": link.role,
            "url": link.url,
            "not_before": link.not_before,
            "expires_at": link.expires_at,
            "qr": qr_svg(link.url),
        }
        for link in links
    ]


@protected(Action.schedule_book)
async def session_links(request: web.Request) -> web.Response:
    """POST: fresh join links for the session's guests, shown to the staff member to hand
    over (copy, QR code, print) besides the SMS."""
    session_id = path_int(request, "session_id")
    return await render_session_page(request, links=with_qr(await issue_links(request, session_id)))


@protected(Action.schedule_book)
async def links_print(request: web.Request) -> web.Response:
    """GET: a button to make the sheet; POST: fresh join links, one block per party with the
    time in the district's zone, the link and its QR code, for printing and handing over."""
    session_id = path_int(request, "session_id")
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        clear = await check_visible(session, viewer=staff, session_id=session_id)
        record = await service.session_record(session, session_id=session_id, guests_in_clear=clear)
    links = with_qr(await issue_links(request, session_id)) if request.method == "POST" else None
    sides = {p.id: p.side for p in record.participants}
    return page(
        request,
        "scheduling/links_print.html",
        {"r": record, "links": links, "sides": sides},
    )


def setup(app: web.Application) -> None:
    app.router.add_route("GET", "/scheduling/book", book_form, name="scheduling_book")
    app.router.add_route("POST", "/scheduling/book", book_form)
    base = r"/scheduling/sessions/{session_id:\d+}"
    app.router.add_post(base + "/links", session_links, name="scheduling_links")
    app.router.add_post(base + "/reschedule", reschedule, name="scheduling_reschedule")
    app.router.add_route("GET", base + "/cancel", cancel, name="scheduling_cancel")
    app.router.add_route("POST", base + "/cancel", cancel)
    app.router.add_route("GET", base + "/links/print", links_print, name="scheduling_links_print")
    app.router.add_route("POST", base + "/links/print", links_print)
