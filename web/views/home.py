"""The home page: what each role works on first."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from server.auth.permissions import Action, StaffIdentity
from server.cases import agreements, batches, worklist
from server.cases.queries import cases_for_receiver
from server.cases.schemas import JudicialPending
from server.http import keys
from server.http.auth import current_staff, protected, public, signed_in_staff
from server.http.common import path_int
from server.kernel import clock
from server.kernel.clock import day_bounds_utc
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput
from server.queue import CallState
from server.sessions import service as sessions
from web.labels import ROLE_LABELS
from web.render import page
from web.views.case_list import mark_words

#: How many cases each "my work" list shows (the count says how many there are).
HOME_LIST_MAX = 10

#: Role → the tiles shown on its home page (label, url, action that must be allowed).
HOME_TILES: list[tuple[str, str, Action]] = [
    ("接访工作台", "/desk", Action.queue_answer),
    ("连线区信访超市", "/call", Action.queue_call),
    ("登记来访/来信", "/cases/new", Action.case_create),
    ("我的信访事项", "/cases", Action.case_view),
    ("逾期预警督办台", "/cases/board", Action.case_supervise),
    ("集中交办", "/cases/batches", Action.case_assess),
    ("调解与视频会议", "/sessions", Action.session_join),
    ("预约日程", "/scheduling", Action.schedule_view),
    ("组织机构", "/org", Action.org_view),
    ("审计日志", "/audit", Action.audit_read),
    ("安全管理（角色、登录、密钥）", "/security", Action.roles_manage),
    ("工作人员账号", "/admin/staff", Action.staff_manage),
    ("组织机构管理", "/admin/org", Action.settings_manage),
    ("办理时限", "/admin/deadlines", Action.settings_manage),
    ("节假日安排", "/admin/holidays", Action.settings_manage),
]


@public("redirects to sign-in when nobody is signed in")
async def home(request: web.Request) -> web.StreamResponse:
    return await _home(request)


async def _home(
    request: web.Request, *, judicial_form: dict[str, Any] | None = None, status: int = 200
) -> web.StreamResponse:
    staff = current_staff(request)
    if staff is None:
        raise web.HTTPSeeOther("/login")
    tiles = [(label, url) for label, url, action in HOME_TILES if staff.can(action)]
    my_cases = []
    work = worklist.MyWork()
    board = 0
    my_batches: list[batches.BatchView] = []
    now = utcnow()
    if staff.can(Action.case_view):
        async with request.app[keys.db].begin() as session:
            my_cases = await cases_for_receiver(session, staff_id=staff.staff_id, limit=10)
            work = await worklist.my_work(session, staff=staff, now=now)
            my_batches = await batches.my_batches(session, staff=staff, now=now)
            if staff.can(Action.case_supervise):
                board = len(await worklist.supervision_board(session, staff=staff, now=now))
    judicial: list[JudicialPending] = []
    if staff.can(Action.agreement_judicial):  # the court liaison's and the mediator's 司法确认
        async with request.app[keys.db].begin() as session:
            judicial = await agreements.awaiting_judicial(session, staff=staff, now=now)
    live = await _live_context(request, staff)
    return page(
        request,
        "home.html",
        {
            "tiles": tiles,
            # the number on a tile: what waits there (an accessible label says so in words)
            "tile_counts": {
                "/cases": len(work.waiting),
                "/cases/board": board,
                "/desk": len(live["queue_waiting"]),
            },
            "role_labels": [ROLE_LABELS[r] for r in sorted(staff.roles)],
            "my_cases": my_cases,
            "work": work,
            "my_batches": my_batches,
            "judicial": judicial,
            "judicial_form": judicial_form or {},
            "judicial_done": request.query.get("judicial", ""),
            "shown": HOME_LIST_MAX,
            "mark": lambda m: mark_words(m, now),
            "case_viewer": staff.can(Action.case_view),
            **live,
        },
        status=status,
    )


class JudicialForm(BaseModel):
    """记录司法确认 as the home list's form sends it (untrusted: checked here)."""

    requested_on: clock.EdgeDay
    result: Literal["", "confirmed", "rejected"] = ""
    court: str = Field(default="", max_length=100)
    ruling_no: str = Field(default="", max_length=64)

    @field_validator("court", "ruling_no")
    @classmethod
    def _printable(cls, value: str) -> str:
        value = value.strip()
        if any(ord(c) < 32 for c in value):
            raise ValueError("control characters")
        return value


JUDICIAL_FIELD_ERRORS = {
    "requested_on": "请填写申请日期",
    "result": "请选择法院结果",
    "court": "受理法院名称过长或含有不可见字符",
    "ruling_no": "文号过长或含有不可见字符",
}


@protected(Action.agreement_judicial)
async def judicial_action(request: web.Request) -> web.StreamResponse:
    """记录司法确认 from the home list: the day the parties applied (a Beijing date, today or
    earlier), and once known the court, its ruling number and result; back home with a message,
    or home again with the error next to the agreement's form (422/403/404 as the API)."""
    staff = signed_in_staff(request)
    agreement_id = path_int(request, "agreement_id")
    form = await request.post()
    kept: dict[str, Any] = {
        "id": agreement_id,
        **{
            k: str(form.get(k, "")).strip()
            for k in ("requested_on", "result", "court", "ruling_no")
        },
    }
    try:
        data = JudicialForm.model_validate({k: v for k, v in kept.items() if k != "id"})
    except ValidationError as e:
        field = str(e.errors()[0]["loc"][0]) if e.errors() and e.errors()[0]["loc"] else ""
        error = JUDICIAL_FIELD_ERRORS.get(field, "请检查填写的内容")
        return await _home(request, judicial_form={**kept, "error": error}, status=422)
    now = utcnow()
    tz = request.app[keys.settings].timezone
    start = datetime.combine(data.requested_on, time(0), tzinfo=clock.zone(tz)).astimezone(UTC)
    if start > now:
        return await _home(
            request, judicial_form={**kept, "error": "申请日期不能晚于今天"}, status=422
        )
    # the latest instant of that Beijing day that has passed: never before the agreement's effect
    # on the day it took effect, never in the future today
    requested_at = min(start + timedelta(days=1) - timedelta(seconds=1), now)
    try:
        async with request.app[keys.db].begin() as session:
            await agreements.record_judicial_confirmation(
                session,
                staff=staff,
                agreement_id=agreement_id,
                requested_at=requested_at,
                result=data.result or None,
                court=data.court or None,
                ruling_no=data.ruling_no or None,
                now=now,
            )
    except InvalidInput as e:
        error = (
            "申请日期须在协议生效之日至今天之间"
            if e.details.get("field") == "requested_at"
            else "协议尚未生效，不能申请司法确认"
        )
        return await _home(request, judicial_form={**kept, "error": error}, status=422)
    raise web.HTTPSeeOther(f"/?judicial={agreement_id}")


async def _live_context(request: web.Request, staff: StaffIdentity) -> dict[str, Any]:
    """My queue, my sessions today and invitations; the supervisor's all-sites overview."""
    queue = request.app[keys.call_queue]
    policy, now = queue.policy, queue.now()
    entries = await queue.entries(viewer=staff)
    waiting = [e.public(policy, now) for e in entries if e.state == CallState.waiting]
    mine = [
        e
        for e in entries
        if e.state == CallState.accepted
        and staff.staff_id in (e.accepted_by_id, e.assigned_to_id, *e.invited_ids)
    ]
    placed = [
        e
        for e in entries
        if e.agent_id == staff.staff_id
        and e.state in (CallState.waiting, CallState.accepted, CallState.callback)
    ]
    # "today" is the district's day, not the UTC day (which starts at 08:00 there)
    start, end = day_bounds_utc(now, tz=request.app[keys.settings].timezone)
    supervisor = staff.can(Action.case_supervise)
    async with request.app[keys.db].begin() as session:
        my_sessions = await sessions.sessions_of_day(
            session, staff_id=staff.staff_id, start=start, end=end
        )
        live = await sessions.live_overview(session, limit=200) if supervisor else []
    return {
        "queue_waiting": waiting if staff.can(Action.queue_answer) or supervisor else [],
        "my_calls": mine,
        "placed_calls": placed,
        "my_sessions": my_sessions,
        "supervisor": supervisor,
        "live_sessions": live,
    }


def setup(app: web.Application) -> None:
    app.router.add_post(r"/agreements/{agreement_id:\d+}/judicial", judicial_action)
    app.router.add_get("/", home, name="home")
