"""The case's written notices as PDF (受理告知书, 不予受理告知书, 导入法定途径告知书, 书面答复意见书):
GET /cases/{id}/notices/{kind}.pdf for anyone who may see the case, each download audited
(`case.notice_download`); the case page links the notices the case has."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.auth.permissions import Action
from server.cases import notices
from server.cases.schemas import CaseDetail
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int


def notice_links(detail: CaseDetail) -> list[tuple[str, str, str]]:
    """(kind, link text, URL) of the notices this case has now."""
    kinds = notices.available_notices(
        detail.state,
        accepted="accepted" in detail.state_times,
        replied="replied" in detail.state_times,
    )
    return [
        (kind, f"下载{notices.NOTICE_KINDS[kind]}", f"/cases/{detail.id}/notices/{kind}.pdf")
        for kind in kinds
    ]


@protected(Action.case_view)
async def get_notice(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    case_id = path_int(request, "case_id")
    kind = request.match_info["kind"]
    async with request.app[keys.db].begin() as session:
        facts = await notices.notice_facts(
            session,
            staff=staff,
            case_id=case_id,
            kind=kind,
            pii=request.app[keys.pii],
            ip=client_ip(request),
        )
    body = await asyncio.to_thread(
        notices.notice_pdf, facts, tz=request.app[keys.settings].timezone
    )
    return web.Response(
        body=body,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{facts.case_no}-{kind}.pdf"',
            "Cache-Control": "no-store",
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get(r"/cases/{case_id:\d+}/notices/{kind:[a-z_]+}.pdf", get_notice)
