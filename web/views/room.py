"""The mediation room for staff (调解室): create a session, open its room page, invite parties by
link/QR. Residents reach the same room page through /join/{token}."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.auth.permissions import Action
from server.auth.web import protected, signed_in_staff
from server.db import utcnow
from server.kernel import clock
from server.sessions.models import CallSession
from web.render import page


@protected(Action.session_join)
async def sessions(request: web.Request) -> web.Response:
    """My sessions today: the ones I created or was invited to (reception calls included)."""
    staff = signed_in_staff(request)
    now = utcnow()
    start = clock.local_day_start(now, request.app[keys.settings].timezone)  # the district's today
    async with request.app[keys.db].begin() as session:
        rows = (
            await session.scalars(
                select(CallSession)
                .where(CallSession.created_by_id == staff.staff_id)
                .where(CallSession.created_at >= start)
                .order_by(CallSession.id.desc())
                .limit(50)
            )
        ).all()
    return page(
        request,
        "sessions.html",
        {
            "rows": rows,
            "can_create": staff.can(Action.session_create),
            "can_play": staff.can(Action.recording_play),
        },
    )


@protected(Action.session_join)
async def room(request: web.Request) -> web.Response:
    from signaling import store

    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        view = await store.get_session(session, room_id=request.match_info["room_id"])
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
    app.router.add_get("/sessions", sessions, name="sessions")
    app.router.add_get(r"/rooms/{room_id}", room, name="room")
