"""The audit log for the audit administrator: browse, filter, verify, export (CSV).

Entries are shown in words: who (display name and username instead of `staff:42`), what (a
Chinese label per action code, web/audit_labels.py), on what (the object in words), when (the
district's time). Reading, verifying and exporting are themselves audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import AuditView, list_entries, record, verify
from server.auth.permissions import Action
from server.auth.service import staff_id_named, staff_names
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.kernel.clock import EdgeDay, format_local
from web.audit_labels import AUDIT_ACTION_LABELS, action_label, object_label
from web.i18n import gettext_for
from web.labels import ROLE_LABELS
from web.render import page

PAGE_SIZE = 50

#: Whole families in the action filter (`auth.` selects every sign-in and account entry).
FAMILY_LABELS = {
    "auth.": "全部：登录与账号安全",
    "role.": "全部：角色授予与收回",
    "case.": "全部：信访事项",
    "audit.": "全部：审计日志的查阅与导出",
}
EXPORT_LIMIT = 100_000

#: Actors that are not a staff member.
_ACTOR_WORDS = {"anonymous": "未登录用户", "system": "系统", "cli": "命令行（运维）"}

_FIELD_MESSAGES = {
    "actor": "请填写操作人的用户名（不超过64个字符）。",
    "action": "请选择列表中的操作。",
    "since": "请填写有效的开始日期。",
    "until": "请填写有效的结束日期，且不早于开始日期。",
    "target": "对象编号只能是数字或字母（不超过80个字符）。",
    "before": "分页参数无效。",
}


class AuditFilters(BaseModel, extra="ignore"):
    actor: str = Field(default="", max_length=64)
    action: str = Field(default="", max_length=60)
    since: EdgeDay | None = None
    until: EdgeDay | None = None
    object_type: str = Field(default="", max_length=40)
    target: str = Field(default="", max_length=80, pattern=r"^[\w.:-]*$")
    before: int | None = Field(default=None, ge=1, le=2**31 - 1)


def _typed(request: web.Request) -> dict[str, str]:
    q = request.query
    return {
        k: q.get(k, "").strip()
        for k in ("actor", "action", "since", "until", "object_type", "target", "before")
    }


def _parse(typed: dict[str, str]) -> tuple[AuditFilters | None, dict[str, str]]:
    errors: dict[str, str] = {}
    try:
        f = AuditFilters.model_validate({k: v for k, v in typed.items() if v})
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "action"
            errors[field] = _FIELD_MESSAGES.get(field, "输入有误")
        return None, errors
    if f.action and f.action not in AUDIT_ACTION_LABELS and f.action not in FAMILY_LABELS:
        errors["action"] = _FIELD_MESSAGES["action"]
    if f.since and f.until and f.until < f.since:
        errors["until"] = _FIELD_MESSAGES["until"]
    return (None, errors) if errors else (f, {})


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    at: datetime
    actor_name: str
    actor_username: str
    action_label: str
    action: str
    target: str
    detail: str
    ip: str


def _staff_id(actor: str) -> int | None:
    kind, _, rest = actor.partition(":")
    return int(rest) if kind == "staff" and rest.isdigit() else None


def _same(text: str) -> str:
    return text


def _detail_words(e: AuditView, gettext: Callable[[str], str] = _same) -> str:
    d = e.detail
    parts = []
    if "role" in d:
        role = str(d["role"])
        role_label = ROLE_LABELS.get(role, role)  # type: ignore[call-overload]
        parts.append(gettext("角色：%(role)s") % {"role": gettext(role_label)})
    if "username" in d:
        parts.append(gettext("用户名：%(username)s") % {"username": d["username"]})
    if "rows" in d:
        parts.append(gettext("行数：%(rows)s") % {"rows": d["rows"]})
    if "from" in d and "to" in d:
        parts.append(gettext("状态：%(from)s → %(to)s") % {"from": d["from"], "to": d["to"]})
    return gettext("；").join(parts)


async def _rows(
    session: AsyncSession, entries: list[AuditView], gettext: Callable[[str], str] = _same
) -> list[Row]:
    """The entries in words, in the language of `gettext` (Chinese without one)."""
    ids = {i for e in entries if (i := _staff_id(e.actor)) is not None}
    ids |= {int(e.object_id) for e in entries if e.object_type == "staff" and e.object_id.isdigit()}
    names = await staff_names(session, ids)
    rows = []
    for e in entries:
        sid = _staff_id(e.actor)
        if sid is not None and sid in names:
            actor_name, actor_username = names[sid]
        elif sid is not None:
            actor_name, actor_username = (
                gettext("已删除的工作人员（编号 %(id)s）") % {"id": sid},
                "",
            )
        else:
            words = _ACTOR_WORDS.get(e.actor)
            actor_name, actor_username = (gettext(words) if words else e.actor), ""
        target = ""
        if e.object_type:
            target = f"{object_label(e.object_type, gettext)} {e.object_id}".strip()
            if e.object_type == "staff" and e.object_id.isdigit():
                who = names.get(int(e.object_id))
                if who:
                    target = f"{object_label('staff', gettext)} {who[0]}（{who[1]}）"
        rows.append(
            Row(
                e.id,
                e.at,
                actor_name,
                actor_username,
                action_label(e.action, gettext),
                e.action,
                target,
                _detail_words(e, gettext),
                e.ip,
            )
        )
    return rows


async def _query(
    request: web.Request, session: AsyncSession, f: AuditFilters, *, limit: int
) -> tuple[list[AuditView] | None, dict[str, str]]:
    """The entries the filters select (None and the field's message when the actor is unknown)."""
    actor = ""
    if f.actor:
        staff_id = await staff_id_named(session, f.actor)
        if staff_id is None:
            return None, {"actor": "没有这个用户名的账号。"}
        actor = f"staff:{staff_id}"
    zone = ZoneInfo(request.app[keys.settings].timezone)
    since = until = None
    if f.since:  # the district's days: from the start of `since` to the end of `until`
        since = datetime.combine(f.since, time(0), tzinfo=zone).astimezone(UTC)
    if f.until:
        end = f.until + timedelta(days=1)
        until = datetime.combine(end, time(0), tzinfo=zone).astimezone(UTC)
    entries = await list_entries(
        session,
        actor=actor,
        action="" if f.action in FAMILY_LABELS else f.action,
        action_prefix=f.action if f.action in FAMILY_LABELS else "",
        since=since,
        until=until,
        object_type=f.object_type,
        object_id=f.target,
        before_id=f.before,
        limit=limit,
    )
    return entries, {}


def _audit_detail(f: AuditFilters | None) -> dict[str, Any]:
    if f is None:
        return {}
    return {k: v for k, v in f.model_dump(mode="json").items() if v not in (None, "")}


@protected(Action.audit_read)
async def audit_page(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    typed = _typed(request)
    filters, errors = _parse(typed)
    rows: list[Row] = []
    chain = None
    entries: list[AuditView] | None = []
    async with request.app[keys.db].begin() as session:
        if filters is not None:
            entries, errors = await _query(request, session, filters, limit=PAGE_SIZE)
            rows = await _rows(session, entries or [], gettext_for(request).gettext)
        chain = await verify(session) if request.query.get("verify") else None
        await record(
            session,
            actor=staff.actor,
            action="audit.read",
            ip=client_ip(request),
            detail={**_audit_detail(filters), "verify": chain is not None},
        )
    query = {k: v for k, v in typed.items() if v and k != "before"}
    return page(
        request,
        "audit.html",
        {
            "rows": rows,
            "typed": typed,
            "errors": errors,
            "query": query,
            "chain": chain,
            "more": len(rows) == PAGE_SIZE,
            "paged": bool(typed["before"]),
            "actions": [
                *FAMILY_LABELS.items(),
                *sorted(AUDIT_ACTION_LABELS.items(), key=lambda kv: kv[0]),
            ],
            "object_types": [
                ("case", "信访事项"),
                ("staff", "工作人员"),
                ("api_token", "API 令牌"),
                ("agreement", "调解协议书"),
                ("recording", "录像"),
                ("call_session", "视频会话"),
            ],
        },
        status=422 if errors else 200,
    )


@protected(Action.audit_read)
async def audit_export(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    typed = _typed(request)
    typed["before"] = ""
    filters, _errors = _parse(typed)
    if filters is None:
        return await audit_page(request)
    tz = request.app[keys.settings].timezone
    async with request.app[keys.db].begin() as session:
        entries, _errors = await _query(request, session, filters, limit=EXPORT_LIMIT)
        if entries is None:
            return await audit_page(request)
        rows = await _rows(session, entries)
        await record(
            session,
            actor=staff.actor,
            action="audit.export",
            ip=client_ip(request),
            detail={**_audit_detail(filters), "rows": len(rows)},
        )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["编号", "时间（本地）", "操作人", "用户名", "操作", "操作代码", "对象", "详情", "IP"]
    )
    for r in rows:
        writer.writerow(
            [
                r.id,
                format_local(r.at, "second", tz),
                r.actor_name,
                r.actor_username,
                r.action_label,
                r.action,
                r.target,
                r.detail,
                r.ip,
            ]
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
