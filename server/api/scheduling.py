"""REST API for scheduling under /api/scheduling (JSON; pydantic models at the edge).

Availability, the slot finder, holds and bookings, reschedule/cancel/follow-on, no-show, the
session record and the .ics download. Jobs the bookings queue (invites, reminders) are run by
the app's job runner (server.kernel.jobs, wired in server/app.py); a booking change wakes it.
See docs/scheduling.md.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from scheduling import calendars, loader, reminders, service
from scheduling.availability import RuleError, WorkingHours
from scheduling.case_link import link_case
from scheduling.ics import Attendee, Method, build_ics, filename
from scheduling.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    BookingOut,
    BookingRequest,
    CancelRequest,
    ExceptionIn,
    FollowOnRequest,
    HolidayIn,
    NoShowRequest,
    RescheduleRequest,
    SessionRecord,
    SlotList,
    SlotQuery,
)
from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.access import masked_name
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.http.common import json_response as _json
from server.http.common import path_int as _int
from server.http.common import read_body as _body
from server.http.openapi import documented
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput, NotFound
from server.kernel.ids import parse_id
from server.org import service as org
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.record import check_visible
from server.sessions.schemas import SessionState

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
TAGS = ("scheduling",)


def _tz(request: web.Request) -> str:
    return request.app[keys.settings].timezone


def _wake(request: web.Request) -> None:
    """After a booking change: send its invites now rather than at the runner's next poll."""
    runner = request.app.get(keys.jobs)
    if runner is not None:
        runner.wake()


def _owner(request: web.Request) -> str:
    owner = request.match_info["owner"]
    if owner == loader.DEFAULT_OWNER:
        return owner
    kind, _, ident = owner.partition(":")
    if kind not in ("staff", "resource") or parse_id(ident) is None:
        raise InvalidInput("owner must be staff:<id>, resource:<id> or default", field="owner")
    return owner


def _window(request: web.Request, days: int = 7) -> tuple[datetime, datetime]:
    try:
        start = (
            datetime.fromisoformat(request.query["start"]) if "start" in request.query else utcnow()
        )
        end = (
            datetime.fromisoformat(request.query["end"])
            if "end" in request.query
            else start + timedelta(days=days)
        )
    except ValueError:
        raise InvalidInput("start/end must be ISO 8601 times with an offset") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start/end need a UTC offset")
    if end <= start or end - start > timedelta(days=62):
        raise InvalidInput("end must be after start, at most 62 days later")
    return start, end


# --- availability --------------------------------------------------------------------------


@routes.get("/api/scheduling/availability/{owner}")
@documented(
    "Working hours, policy, exceptions and free time of one owner",
    tags=TAGS,
    response=AvailabilityOut,
)
@protected(Action.schedule_view)
async def get_availability(request: web.Request) -> web.Response:
    owner = _owner(request)
    start, end = _window(request)
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        await calendars.check_owner_exists(session, owner)
        out = await calendars.availability_out(
            session, owner=owner, start=start, end=end, now=now, tz=_tz(request)
        )
    return _json(out)


@routes.put("/api/scheduling/availability/{owner}")
@documented(
    "Replace an owner's working hours (RRULE) and policy",
    tags=TAGS,
    body=AvailabilityIn,
    response=AvailabilityOut,
)
@protected(Action.schedule_manage)
async def put_availability(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = await _body(request, AvailabilityIn)
    try:
        hours = [WorkingHours(**h.model_dump()) for h in body.hours]
    except RuleError as e:
        raise InvalidInput(str(e), field="hours") from None
    staff = signed_in_staff(request)
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        await calendars.check_owner_exists(session, owner)
        await calendars.set_availability(
            session, owner=owner, hours=hours, policy=body.policy, tz=_tz(request)
        )
        await _audit(
            session, staff, "schedule.availability_set", owner, body.model_dump(mode="json")
        )
        out = await calendars.availability_out(
            session, owner=owner, start=now, end=now + timedelta(days=7), now=now, tz=_tz(request)
        )
    return _json(out)


@routes.post("/api/scheduling/availability/{owner}/exceptions")
@documented("Add leave, a blocked period or extra hours", tags=TAGS, body=ExceptionIn, status=201)
@protected(Action.schedule_manage)
async def add_exception(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = await _body(request, ExceptionIn)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        await calendars.check_owner_exists(session, owner)
        exc_id = await calendars.add_exception(session, owner=owner, exception=body)
        await _audit(
            session, staff, "schedule.exception_added", owner, body.model_dump(mode="json")
        )
    return _json({"id": exc_id}, status=201)


@routes.put("/api/scheduling/holidays/{day}")
@documented(
    "Set a day in the holiday calendar (day off, or 调休 make-up workday)",
    tags=TAGS,
    body=HolidayIn,
)
@protected(Action.schedule_manage)
async def put_holiday(request: web.Request) -> web.Response:
    body = await _body(request, HolidayIn)
    if body.day.isoformat() != request.match_info["day"]:
        raise InvalidInput("the day in the path and the body differ", field="day")
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        await calendars.set_holiday(session, holiday=body)
        await _audit(
            session,
            staff,
            "schedule.holiday_set",
            body.day.isoformat(),
            body.model_dump(mode="json"),
        )
    return _json(body)


# --- slots and bookings --------------------------------------------------------------------


@routes.post("/api/scheduling/slots")
@documented("Find the first common free slots", tags=TAGS, body=SlotQuery, response=SlotList)
@protected(Action.schedule_view)
async def find_slots(request: web.Request) -> web.Response:
    body = await _body(request, SlotQuery)
    async with request.app[keys.db].begin() as session:
        slots = await loader.search_slots(session, query=body, now=utcnow(), tz=_tz(request))
    return _json(SlotList(slots=slots))


@routes.post("/api/scheduling/holds")
@documented(
    "Hold a slot for a few minutes while the booker confirms",
    tags=TAGS,
    body=BookingRequest,
    response=BookingOut,
    status=201,
)
@protected(Action.schedule_book)
async def create_hold(request: web.Request) -> web.Response:
    body = await _body(request, BookingRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.hold(
            session,
            request=await link_case(session, body, booker=staff),
            actor_staff_id=staff.staff_id,
            now=utcnow(),
            tz=_tz(request),
            cipher=request.app[keys.pii],
        )
    return _json(out, status=201)


@routes.post("/api/scheduling/holds/{booking_id}/confirm")
@documented(
    "Confirm a hold: the session is created and invites go out", tags=TAGS, response=BookingOut
)
@protected(Action.schedule_book)
async def confirm_hold(request: web.Request) -> web.Response:
    booking_id = _int(request, "booking_id")
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.confirm(session, booking_id=booking_id, actor=staff.actor, now=utcnow())
    _wake(request)
    return _json(out)


@routes.post("/api/scheduling/bookings")
@documented(
    "Book people and resources at once",
    tags=TAGS,
    body=BookingRequest,
    response=BookingOut,
    status=201,
)
@protected(Action.schedule_book)
async def create_booking(request: web.Request) -> web.Response:
    body = await _body(request, BookingRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.book(
            session,
            request=await link_case(session, body, booker=staff),
            actor=staff.actor,
            actor_staff_id=staff.staff_id,
            now=utcnow(),
            tz=_tz(request),
            cipher=request.app[keys.pii],
        )
    _wake(request)
    return _json(out, status=201)


@routes.get("/api/scheduling/bookings/{booking_id}")
@documented("One booking", tags=TAGS, response=BookingOut)
@protected(Action.schedule_view)
async def get_booking(request: web.Request) -> web.Response:
    booking_id = _int(request, "booking_id")
    async with request.app[keys.db].begin() as session:
        out = await service.get_booking(session, booking_id=booking_id)
    return _json(out)


@routes.post("/api/scheduling/bookings/{booking_id}/reschedule")
@documented(
    "Move a booking (same UID, SEQUENCE + 1, updated invites)",
    tags=TAGS,
    body=RescheduleRequest,
    response=BookingOut,
)
@protected(Action.schedule_book)
async def reschedule(request: web.Request) -> web.Response:
    booking_id = _int(request, "booking_id")
    body = await _body(request, RescheduleRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.reschedule(
            session,
            booking_id=booking_id,
            start=body.start,
            end=body.end,
            reason=body.reason,
            actor=staff.actor,
            actor_staff_id=staff.staff_id,
            now=utcnow(),
            tz=_tz(request),
        )
    _wake(request)
    return _json(out)


@routes.post("/api/scheduling/bookings/{booking_id}/cancel")
@documented(
    "Cancel a hold or booking (METHOD:CANCEL to everyone)",
    tags=TAGS,
    body=CancelRequest,
    response=BookingOut,
)
@protected(Action.schedule_book)
async def cancel(request: web.Request) -> web.Response:
    booking_id = _int(request, "booking_id")
    body = await _body(request, CancelRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.cancel(
            session, booking_id=booking_id, reason=body.reason, actor=staff.actor, now=utcnow()
        )
    _wake(request)
    return _json(out)


@routes.post("/api/scheduling/bookings/{booking_id}/follow-on")
@documented(
    "Book a follow-on session after an adjournment",
    tags=TAGS,
    body=FollowOnRequest,
    response=BookingOut,
    status=201,
)
@protected(Action.schedule_book)
async def follow_on(request: web.Request) -> web.Response:
    booking_id = _int(request, "booking_id")
    body = await _body(request, FollowOnRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        out = await service.follow_on(
            session,
            booking_id=booking_id,
            start=body.start,
            end=body.end,
            reason=body.reason,
            actor=staff.actor,
            actor_staff_id=staff.staff_id,
            now=utcnow(),
            tz=_tz(request),
            cipher=request.app[keys.pii],
        )
    _wake(request)
    return _json(out, status=201)


@routes.get("/api/scheduling/sessions/{session_id}")
@documented(
    "The session record: planned vs actual, attendance, bookings, jobs",
    tags=TAGS,
    response=SessionRecord,
)
@protected(Action.schedule_view)
async def session_record(request: web.Request) -> web.Response:
    session_id = _int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        clear = await check_visible(session, viewer=signed_in_staff(request), session_id=session_id)
        out = await service.session_record(session, session_id=session_id, guests_in_clear=clear)
    return _json(out)


@routes.post("/api/scheduling/sessions/{session_id}/no-show")
@documented(
    "Mark a participant absent (or present)", tags=TAGS, body=NoShowRequest, response=SessionRecord
)
@protected(Action.schedule_book)
async def no_show(request: web.Request) -> web.Response:
    session_id = _int(request, "session_id")
    body = await _body(request, NoShowRequest)
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        await check_visible(session, viewer=staff, session_id=session_id)
        out = await service.mark_no_show(
            session,
            session_id=session_id,
            participant_id=body.participant_id,
            no_show=body.no_show,
            actor=staff.actor,
            now=utcnow(),
        )
    return _json(out)


@routes.get("/api/scheduling/sessions/{session_id}/invite.ics")
@documented("Download the session's current invite (.ics)", tags=TAGS, content_type="text/calendar")
@protected(Action.schedule_view)
async def invite_ics(request: web.Request) -> web.Response:
    session_id = _int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        clear = await check_visible(session, viewer=signed_in_staff(request), session_id=session_id)
        body, name = await session_ics(
            session,
            session_id=session_id,
            now=utcnow(),
            tz=_tz(request),
            base_url=str(request.url.origin()),
            guests_in_clear=clear,
        )
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def session_ics(
    session: AsyncSession,
    *,
    session_id: int,
    now: datetime,
    tz: str,
    base_url: str,
    guests_in_clear: bool = True,
) -> tuple[bytes, str]:
    """The invite as it stands: REQUEST, or CANCEL once the session is cancelled; residents'
    names masked unless the viewer may know the case's petitioner (`guests_in_clear`)."""
    try:
        call = await sessions.get_session_by_id(session, session_id=session_id)
    except SessionNotFound:
        raise NotFound(f"no scheduled session {session_id}") from None
    if call.planned_start is None or call.planned_end is None:
        raise NotFound(f"no scheduled session {session_id}")
    parts = await sessions.participants(session, session_id=session_id)
    method: Method = "CANCEL" if call.state == SessionState.cancelled else "REQUEST"
    invite = reminders.invite_for(
        call,
        site_name=await org.site_name(session, site_id=call.host_site_id),
        url=f"{base_url}/rooms/{call.room_id}",
        now=now,
        tz=tz,
        attendees=[
            Attendee(
                p.display_name
                if guests_in_clear or p.staff_id is not None
                else masked_name(p.display_name),
                key=p.identity,
            )
            for p in parts
        ],
    )
    return build_ics(invite, method=method), filename(call.ical_uid or "", method)


async def _audit(
    session: AsyncSession, staff: StaffIdentity, action: str, object_id: str, detail: dict[str, Any]
) -> None:

    await record(
        session,
        actor=staff.actor,
        action=action,
        object_type="schedule_owner",
        object_id=object_id,
        detail=detail,
    )


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)


__all__ = ["routes", "setup"]
