"""The session record page (/sessions/{id}/record): one reception or mediation with its
participants, consent answers, recordings, outcome and chat transcript. Visibility and audit
are the sessions service's (server.sessions.record), which follows the case's rule."""

from __future__ import annotations

from aiohttp import web

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.sessions.record import record
from web.render import page


@protected(Action.case_view)
async def session_record_page(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        s = await record(session, session_id=session_id, viewer=staff, ip=client_ip(request))
    return page(request, "sessions/record.html", {"s": s})


def setup(app: web.Application) -> None:
    app.router.add_get(
        r"/sessions/{session_id:\d+}/record", session_record_page, name="session_record"
    )
