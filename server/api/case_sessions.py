"""The sessions of a case file: GET /api/cases/{id}/sessions (the session records, owned by
server.sessions.record; visibility and audit are the case's)."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter

from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.http.openapi import documented
from server.sessions.record import SessionRecord, records_for_case

routes = web.RouteTableDef()
_RECORDS = TypeAdapter(list[SessionRecord])


@routes.get(r"/api/cases/{case_id:\d+}/sessions")
@documented(
    "The case's reception and mediation sessions: participants, attendance, consent, "
    "recordings (SHA-256, playback link), outcome",
    tags=("cases",),
    response=SessionRecord,
    response_list=True,
)
@protected(Action.case_view)
async def case_sessions(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    case_id = path_int(request, "case_id")
    async with request.app[keys.db].begin() as session:
        records = await records_for_case(
            session, case_id=case_id, viewer=staff, ip=client_ip(request)
        )
    return web.Response(
        body=_RECORDS.dump_json(records), status=200, content_type="application/json"
    )


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
