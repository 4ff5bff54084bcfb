"""The home page: what each role works on first."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.auth.permissions import Action, StaffIdentity
from server.auth.web import current_staff, public
from server.cases.queries import cases_for_receiver
from server.db import utcnow
from server.org.models import Role, Site
from server.sessions.models import CallSession, SessionState
from web.render import page

#: Role → the tiles shown on its home page (label, url, action that must be allowed).
HOME_TILES: list[tuple[str, str, Action]] = [
    ("接访工作台", "/desk", Action.queue_answer),
    ("连线区信访超市", "/call", Action.queue_call),
    ("我的信访事项", "/cases", Action.case_view),
    ("调解与视频会议", "/sessions", Action.session_join),
    ("预约日程", "/scheduling", Action.schedule_view),
    ("组织机构", "/org", Action.org_view),
    ("审计日志", "/audit", Action.audit_read),
]

ROLE_LABELS: dict[Role, str] = {
    Role.community_agent: "代办员",
    Role.street_coordinator: "协调员",
    Role.centre_supervisor: "督导员",
    Role.window_officer: "窗口接待员",
    Role.dept_handler: "承办人",
    Role.dept_leader: "部门负责人",
    Role.supervising_leader: "督办领导",
    Role.mediator: "调解员",
    Role.expert: "专家",
    Role.sys_admin: "系统管理员",
    Role.sec_admin: "安全管理员",
    Role.audit_admin: "审计管理员",
}


@public("redirects to sign-in when nobody is signed in")
async def home(request: web.Request) -> web.StreamResponse:
    staff = current_staff(request)
    if staff is None:
        raise web.HTTPSeeOther("/login")
    tiles = [(label, url) for label, url, action in HOME_TILES if staff.can(action)]
    my_cases = []
    if staff.can(Action.case_view):
        async with request.app[keys.db].begin() as session:
            my_cases = await cases_for_receiver(session, staff_id=staff.staff_id, limit=10)
    return page(
        request,
        "home.html",
        {
            "tiles": tiles,
            "role_labels": [ROLE_LABELS[r] for r in sorted(staff.roles)],
            "my_cases": my_cases,
            **await _live_context(request, staff),
        },
    )


async def _live_context(request: web.Request, staff: StaffIdentity) -> dict[str, Any]:
    """My queue, my sessions today and invitations; the supervisor's all-sites overview."""
    from server.queue.service import CallState

    queue = request.app.get(keys.call_queue)
    policy = request.app[keys.call_queue_policy]
    now = utcnow()
    entries = await queue.entries() if queue is not None else []
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
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    supervisor = staff.can(Action.case_supervise)
    async with request.app[keys.db].begin() as session:
        my_sessions = (
            await session.scalars(
                select(CallSession)
                .where(CallSession.created_by_id == staff.staff_id)
                .where(CallSession.created_at >= start)
                .order_by(CallSession.id.desc())
                .limit(20)
            )
        ).all()
        live_sessions = []
        if supervisor:
            live_sessions = list(
                (
                    await session.execute(
                        select(CallSession, Site.name)
                        .outerjoin(Site, Site.id == CallSession.host_site_id)
                        .where(CallSession.state.in_((SessionState.lobby, SessionState.live)))
                        .order_by(CallSession.id.desc())
                        .limit(200)
                    )
                ).all()
            )
    return {
        "queue_waiting": waiting if staff.can(Action.queue_answer) or supervisor else [],
        "my_calls": mine,
        "placed_calls": placed,
        "my_sessions": my_sessions,
        "supervisor": supervisor,
        "live_sessions": live_sessions,
    }


def setup(app: web.Application) -> None:
    app.router.add_get("/", home, name="home")
