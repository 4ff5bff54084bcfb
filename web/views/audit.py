"""The audit log for the audit administrator: browse, filter, verify, export (CSV)."""

from __future__ import annotations

import csv
import io

from aiohttp import web

from server.audit.service import list_entries, record, verify
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.kernel.errors import InvalidInput
from server.kernel.ids import parse_id
from web.render import page

PAGE_SIZE = 100
EXPORT_LIMIT = 100_000


def _filters(request: web.Request) -> tuple[str, str, int | None]:
    before = request.query.get("before")
    before_id = parse_id(before) if before else None
    if before and before_id is None:
        raise InvalidInput("before must be an entry id")
    return request.query.get("action", "")[:60], request.query.get("actor", "")[:80], before_id


@protected(Action.audit_read)
async def audit_page(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    action, actor, before_id = _filters(request)
    async with request.app[keys.db].begin() as session:
        entries = await list_entries(
            session, action_prefix=action, actor=actor, before_id=before_id, limit=PAGE_SIZE
        )
        chain = await verify(session) if request.query.get("verify") else None
        await record(
            session,
            actor=staff.actor,
            action="audit.read",
            ip=client_ip(request),
            detail={"action": action, "actor": actor, "verify": chain is not None},
        )
    return page(
        request,
        "audit.html",
        {
            "entries": entries,
            "action": action,
            "actor": actor,
            "chain": chain,
            "page_size": PAGE_SIZE,
        },
    )


@protected(Action.audit_read)
async def audit_export(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    action, actor, before_id = _filters(request)
    async with request.app[keys.db].begin() as session:
        entries = await list_entries(
            session, action_prefix=action, actor=actor, before_id=before_id, limit=EXPORT_LIMIT
        )
        await record(
            session,
            actor=staff.actor,
            action="audit.export",
            ip=client_ip(request),
            detail={"rows": len(entries), "action": action, "actor": actor},
        )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "at", "actor", "action", "object_type", "object_id", "ip", "detail"])
    for e in entries:
        writer.writerow(
            [e.id, e.at.isoformat(), e.actor, e.action, e.object_type, e.object_id, e.ip, e.detail]
        )
    return web.Response(
        body=("\ufeff" + buf.getvalue()).encode(),  # BOM: Excel opens UTF-8 Chinese correctly
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="onedoor-audit.csv"'},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/audit", audit_page, name="audit")
    app.router.add_get("/audit/export.csv", audit_export, name="audit_export")
