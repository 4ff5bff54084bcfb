"""The case list (/cases: filters, search, pages of 20, a deadline column, CSV export for the
roles that exchange case data) and the supervision board (/cases/board: overdue cases and
yellow/red warnings, with 督办 from the row). Filters are validated here; a bad value shows a
message in Chinese next to its field and an empty list, never a 500."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action, StaffIdentity
from server.cases import queries, worklist
from server.cases.catalogue import active_matter_types
from server.cases.labels import STATE_LABELS
from server.cases.schemas import CaseQuery, CaseState, Channel
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.kernel import clock
from server.kernel.db import utcnow
from server.org import service as org
from web.labels import CHANNEL_LABELS
from web.render import page
from web.views.call import field_errors

DEADLINE_FILTERS = {
    "overdue": "已逾期",
    "red": "红色预警（含逾期）",
    "yellow": "黄色预警",
    "green": "正常计时",
}
FILTER_MESSAGES = {
    "state": "请选择有效的办理状态",
    "department_id": "请选择有效的承办单位",
    "site_id": "请选择有效的站点",
    "channel": "请选择有效的信访渠道",
    "deadline": "请选择有效的期限状态",
    "date_from": "请按“年-月-日”填写登记日期",
    "date_to": "请按“年-月-日”填写登记日期",
    "page": "页码无效",
    "q": "搜索词过长（最多100字）",
    "matter_type": "请选择有效的事项类型",
    "assess": "考核统计条件无效",
    "assess_by": "考核统计条件无效",
    "assess_key": "考核统计条件无效",
    "assess_from": "考核统计条件无效",
    "assess_to": "考核统计条件无效",
}


class ListFilters(BaseModel):
    """The list's query string as typed (empty fields are dropped before validation)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    q: str | None = Field(default=None, max_length=100)
    state: CaseState | None = None
    department_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    matter_type: str | None = Field(default=None, max_length=64)
    channel: Channel | None = None
    site_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    deadline: str | None = None
    date_from: clock.EdgeDay | None = None
    date_to: clock.EdgeDay | None = None
    #: the 双评双考 drill-down (web/views/cases.dashboard_page links here)
    assess: (
        Literal["evaluated", "satisfied", "fair", "dissatisfied", "closed", "on_time", "overdue"]
        | None
    ) = None
    assess_by: Literal["staff", "department", "site"] = "department"
    assess_key: int | None = Field(default=None, ge=1, le=2**31 - 1)
    assess_from: clock.EdgeDay | None = None
    assess_to: clock.EdgeDay | None = None
    page: int = Field(default=1, ge=1, le=100000)

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, v: str | None) -> str | None:
        if v is not None and v not in DEADLINE_FILTERS:
            raise ValueError(FILTER_MESSAGES["deadline"])
        return v

    def query(self, tz: str) -> CaseQuery:
        zone = ZoneInfo(tz)

        def start(d: date) -> datetime:
            return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)

        return CaseQuery(
            q=self.q,
            state=self.state,
            department_id=self.department_id,
            matter_type=self.matter_type,
            channel=self.channel,
            site_id=self.site_id,
            deadline=self.deadline,
            registered_from=start(self.date_from) if self.date_from else None,
            registered_to=start(self.date_to + timedelta(days=1)) if self.date_to else None,
            assess=self.assess,
            assess_by=self.assess_by,
            assess_key=self.assess_key,
            assess_from=start(self.assess_from) if self.assess_from else None,
            assess_to=start(self.assess_to + timedelta(days=1)) if self.assess_to else None,
        )


def parse_filters(raw: dict[str, str]) -> tuple[ListFilters, dict[str, str]]:
    """The filters, and {field: zh message} for the values that are not valid (dropped)."""
    values = {k: v for k, v in raw.items() if v.strip() and k in ListFilters.model_fields}
    errors: dict[str, str] = {}
    try:
        filters = ListFilters.model_validate(values)
    except ValidationError as e:
        for name in field_errors(e):
            errors[name] = FILTER_MESSAGES.get(name, "输入无效")
        filters = ListFilters.model_validate({k: v for k, v in values.items() if k not in errors})
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        errors["date_to"] = "结束日期不能早于开始日期"
    return filters, errors


def mark_words(mark: worklist.Mark | None, now: datetime) -> tuple[str, str, int]:
    """(colour, msgid, n) for a deadline marker, shown as `_(msgid, n=n)`: 剩余 N 天,
    黄色/红色预警, 已超期 N 天; ("grey", "—", 0) without a running deadline."""
    if mark is None:
        return "grey", "—", 0
    days = (mark.due_at - now).total_seconds() / 86400
    if mark.overdue:
        return "red", "已超期 %(n)s 天", max(1, math.ceil(-days))
    left = max(0, math.floor(days))
    if mark.colour == "red":
        return "red", "红色预警：剩余 %(n)s 天", left
    if mark.colour == "yellow":
        return "yellow", "黄色预警：剩余 %(n)s 天", left
    return "green", "剩余 %(n)s 天", left


def mark_text(mark: worklist.Mark | None, now: datetime) -> str:
    """The marker in Chinese words (for the CSV export)."""
    _, msgid, n = mark_words(mark, now)
    return msgid % {"n": n} if "%(n)s" in msgid else msgid


async def _choices(session: Any) -> dict[str, Any]:
    return {
        "departments": await org.departments(session),
        "sites": [
            *await org.sites(session, community=False),
            *await org.sites(session, community=True),
        ],
        "matters": await active_matter_types(session),
    }


def list_context(**values: Any) -> dict[str, Any]:
    """The list template's context with nothing found (the view fills it; tests render it)."""
    return {
        "items": [],
        "total": 0,
        "page_no": 1,
        "pages": 1,
        "page_url": lambda n: f"/cases?page={n}",
        "export_url": "/cases/export.csv",
        "can_export": False,
        "values": {},
        "errors": {},
        "filtered": False,
        "labels": STATE_LABELS,
        "states": list(STATE_LABELS.items()),
        "channels": list(CHANNEL_LABELS.items()),
        "deadlines": list(DEADLINE_FILTERS.items()),
        "dept_names": {},
        "mark": lambda case_id: ("grey", "—", 0),
        "department_choices": [],
        "site_choices": [],
        "matters": [],
        **values,
    }


@protected(Action.case_view)
async def case_list(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    raw = {k: v for k, v in request.query.items() if k != "lang"}
    filters, errors = parse_filters(raw)
    tz = request.app[keys.settings].timezone
    now = utcnow()
    items: list[Any] = []
    total = 0
    async with request.app[keys.db].begin() as session:
        if not errors:
            items, total = await queries.list_page(
                session, staff=staff, query=filters.query(tz), page=filters.page, now=now
            )
        marks = await worklist.deadline_marks(session, [i.id for i in items], now)
        choices = await _choices(session)
        dept_names = {d.id: d.name for d in choices["departments"]}
    pages = max(1, math.ceil(total / queries.PAGE_SIZE))
    kept = {k: v for k, v in raw.items() if k in ListFilters.model_fields and k != "page" and v}
    return page(
        request,
        "cases/list.html",
        list_context(
            items=items,
            total=total,
            page_no=filters.page,
            pages=pages,
            page_url=lambda n: "/cases?" + urlencode({**kept, "page": n}),
            export_url="/cases/export.csv?" + urlencode(kept),
            can_export=staff.can(Action.case_exchange),
            values=raw,
            errors=errors,
            filtered=bool(kept),
            dept_names=dept_names,
            mark=lambda case_id: mark_words(marks.get(case_id), now),
            department_choices=[(d.id, d.name) for d in choices["departments"]],
            site_choices=[(s.id, s.name) for s in choices["sites"]],
            matters=choices["matters"],
        ),
        status=400 if errors else 200,
    )


@protected(Action.case_exchange)
async def case_export(request: web.Request) -> web.StreamResponse:
    """CSV of the list's filters (same visibility; confidential summaries are not written)."""
    staff = signed_in_staff(request)
    filters, errors = parse_filters({k: v for k, v in request.query.items() if k != "lang"})
    if errors:
        raise web.HTTPSeeOther("/cases?" + urlencode(dict(request.query)))
    tz = request.app[keys.settings].timezone
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        items = await queries.export_cases(
            session, staff=staff, query=filters.query(tz), now=now, ip=client_ip(request)
        )
        marks = await worklist.deadline_marks(session, [i.id for i in items], now)
        choices = await _choices(session)
    depts = {d.id: d.name for d in choices["departments"]}
    sites = {s.id: s.name for s in choices["sites"]}
    matters = dict(choices["matters"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "事项编号",
            "状态",
            "事项类型",
            "渠道",
            "承办单位",
            "受理站点",
            "登记时间",
            "期限",
            "期限状态",
            "内容摘要",
        ]
    )
    for i in items:
        mark = marks.get(i.id)
        writer.writerow(
            [
                i.case_no,
                STATE_LABELS[i.state.value],
                matters.get(i.matter_type or "", i.matter_type or ""),
                CHANNEL_LABELS.get(i.channel.value, "") if i.channel else "",
                depts.get(i.lead_dept_id or 0, ""),
                sites.get(i.site_id or 0, ""),
                clock.format_local(i.registered_at, tz=tz),
                clock.format_local(mark.due_at, tz=tz) if mark else "",
                mark_text(mark, now) if mark else "",
                "（检举控告件，内容保密）" if i.confidential else i.summary,
            ]
        )
    stamp = clock.to_local(now, tz=tz).strftime("%Y%m%d-%H%M")
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="cases-{stamp}.csv"'},
    )


@protected(Action.case_supervise)
async def board_page(request: web.Request) -> web.Response:
    staff: StaffIdentity = signed_in_staff(request)
    errors: dict[str, str] = {}
    dept_raw = request.query.get("department_id", "").strip()
    level = request.query.get("level", "").strip() or None
    department_id = int(dept_raw) if dept_raw.isdigit() and len(dept_raw) < 10 else None
    if dept_raw and department_id is None:
        errors["department_id"] = FILTER_MESSAGES["department_id"]
    if level is not None and level not in worklist.BOARD_LEVELS:
        errors["level"] = "请选择有效的预警级别"
        level = None
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        rows = (
            []
            if errors
            else await worklist.supervision_board(
                session, staff=staff, now=now, department_id=department_id, level=level
            )
        )
        departments = await org.departments(session)
    return page(
        request,
        "cases/board.html",
        {
            "rows": rows,
            "department_choices": [(d.id, d.name) for d in departments],
            "dept_names": {d.id: d.name for d in departments},
            "levels": list(worklist.BOARD_LEVELS.items()),
            "values": dict(request.query),
            "errors": errors,
            "mark": lambda m: mark_words(m, now),
            "supervision_words": {"open": "已督办，待答复", "responded": "已答复，待评议"},
        },
        status=400 if errors else 200,
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/cases", case_list, name="cases")
    app.router.add_get("/cases/export.csv", case_export, name="cases_export")
    app.router.add_get("/cases/board", board_page, name="cases_board")
