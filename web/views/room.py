"""The mediation room for staff (调解室): create a session, open its room page, invite parties by
link/QR. Residents reach the same room page through /join/{token}."""

from __future__ import annotations

from aiohttp import web

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.kernel import clock
from server.kernel.db import utcnow
from server.sessions import service as sessions
from web.render import page


@protected(Action.session_join)
async def sessions_today(request: web.Request) -> web.Response:
    """My sessions today (the district's day): the ones I created (reception calls included)."""
    staff = signed_in_staff(request)
    since = clock.local_day_start(utcnow(), request.app[keys.settings].timezone)
    async with request.app[keys.db].begin() as session:
        rows = await sessions.sessions_created_by(session, staff_id=staff.staff_id, since=since)
    return page(
        request,
        "sessions.html",
        {
            "rows": rows,
            "can_create": staff.can(Action.session_create),
            # the sessions listed are the staff member's own: their recordings are theirs to
            # play back (server.sessions.recordings.may_play)
            "can_play": True,
        },
    )


@protected(Action.session_join)
async def room(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        view = await sessions.get_session(session, room_id=request.match_info["room_id"])
    return page(
        request,
        "room.html",
        {
            "room_id": view.room_id,
            "title": view.title,
            "kind": view.kind.value,
            "open": view.open,
            "can_host": staff.can(Action.session_host),
            "can_invite": staff.can(Action.session_invite),
            "session_id": view.id,
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/sessions", sessions_today, name="sessions")
    app.router.add_get(r"/rooms/{room_id}", room, name="room")
