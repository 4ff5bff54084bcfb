"""The reception desk (接访工作台): the live queue of community-point calls, accepting one (the
officer becomes the case's first receiver), and the reception itself: video beside the intake
form, inviting a handler or mediator (联合调处), handing over to another window, ending."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action, StaffIdentity
from server.cases.lifecycle import transition
from server.cases.receipts import send_reception_receipt
from server.cases.schemas import TransitionRequest
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.case_context import deadline_clock
from server.http.common import path_int
from server.http.doc_models import QueueView
from server.http.openapi import documented
from server.kernel.db import utcnow
from server.kernel.errors import AppError, NotFound, PermissionDenied
from server.kernel.ids import parse_id
from server.org import service as org
from server.org.schemas import Role
from server.queue import STATE_LABELS, CallEntry, CallState, CallTaken
from server.sessions.outcomes import close_reception
from web.follow_links import follow_link
from web.i18n import _
from web.render import page
from web.views.call import clean_text, field_errors, form_dict, queue_of

OUTCOMES = {
    "accepted": "已受理，转入办理",
    "answered": "当场答复",
    "redirected": "引导至法定途径",
    "joint": "转联合调处",
    "interrupted": "通话中断",
}
INVITABLE_ROLES = (Role.dept_handler, Role.mediator, Role.dept_leader, Role.expert)


@protected(Action.queue_answer)
async def desk(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    queue = queue_of(request)
    policy, now = queue.policy, queue.now()
    entries = await queue.entries(viewer=staff)
    waiting = [e.public(policy, now) for e in entries if e.state == CallState.waiting]
    mine = [
        e
        for e in entries
        if e.state == CallState.accepted and staff.staff_id in (e.accepted_by_id, e.assigned_to_id)
    ]
    callbacks = [e for e in entries if e.state == CallState.callback]
    return page(
        request,
        "desk.html",
        {"waiting": waiting, "mine": mine, "callbacks": callbacks, "policy": policy},
    )


@documented("The reception queue (the desk polls it)", tags=("queue",), response=QueueView)
@protected(Action.queue_answer)
async def queue_json(request: web.Request) -> web.Response:
    queue = queue_of(request)
    policy, now = queue.policy, queue.now()
    entries = await queue.entries(viewer=signed_in_staff(request))
    return web.json_response(
        {
            "waiting": [e.public(policy, now) for e in entries if e.state == CallState.waiting],
            "flag_after_s": policy.flag_after_s,
            "callback_after_s": policy.callback_after_s,
        }
    )


@protected(Action.queue_answer)
async def accept(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    entry_id = path_int(request, "entry_id")
    form = await request.post()
    case_id_raw = str(form.get("case_id", "")).strip()
    case_id = parse_id(case_id_raw)
    queue = queue_of(request)
    try:
        async with request.app[keys.db].begin() as session:
            await queue.accept(session, entry_id=entry_id, officer=staff, case_id=case_id)
    except CallTaken:
        raise  # someone else's (or this officer's, from another tab): leave it as it is
    except BaseException:
        await queue.release(entry_id, officer=staff)  # e.g. the commit failed: no case
        raise
    raise web.HTTPSeeOther(f"/desk/calls/{entry_id}")


async def _entry_for(request: web.Request, staff: StaffIdentity) -> CallEntry:
    entry = await queue_of(request).get(path_int(request, "entry_id"))
    if staff.staff_id not in (entry.accepted_by_id, entry.assigned_to_id, *entry.invited_ids):
        raise PermissionDenied("this call is handled by another officer")
    return entry


async def _invitable(request: web.Request) -> list[tuple[str, str]]:
    async with request.app[keys.db].begin() as session:
        rows = await org.active_staff_with_roles(
            session, roles=(*INVITABLE_ROLES, Role.window_officer), limit=200
        )
    return [(u, f"{n}（{u}）") for u, n in rows]


async def _reception(
    request: web.Request,
    entry: CallEntry,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str = "",
    notice_name: str = "",
    status: int = 200,
) -> web.Response:
    staff = signed_in_staff(request)
    return page(
        request,
        "desk_call.html",
        {
            "entry": entry,
            "state_label": STATE_LABELS[entry.state],
            "is_first": staff.staff_id == entry.accepted_by_id,
            "staff_choices": await _invitable(request),
            "outcomes": OUTCOMES,
            "values": values or {},
            "errors": errors or {},
            "notice": notice,
            "notice_name": notice_name,
        },
        status=status,
    )


@protected(Action.session_join)
async def reception(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    return await _reception(request, await _entry_for(request, staff))


class IntakeForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    note: str = Field(max_length=2000)

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        return clean_text(v, "请填写诉求摘要")


@protected(Action.queue_answer)
async def intake(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    entry = await _entry_for(request, staff)
    form = await request.post()
    values = form_dict(form, ("note",))
    try:
        data = IntakeForm.model_validate(values)
    except ValidationError as e:
        return await _reception(request, entry, values=values, errors=field_errors(e), status=422)
    if entry.case_id is None:
        raise NotFound("the call has no case")
    try:
        async with request.app[keys.db].begin() as session:
            await transition(
                session,
                staff=staff,
                case_id=entry.case_id,
                request=TransitionRequest(transition="accept", note=data.note),
                now=utcnow(),
                deadlines=deadline_clock(request),
                ip=client_ip(request),
            )
    except AppError as e:
        return await _reception(
            request,
            entry,
            values=values,
            errors={"note": _(request, e.message_zh)},
            status=e.http_status,
        )
    return await _reception(request, entry, notice="已受理，诉求摘要已记入事项。")


class StaffPick(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str = Field(max_length=64)
    note: str = Field(default="", max_length=500)

    @field_validator("username")
    @classmethod
    def _user(cls, v: str) -> str:
        return clean_text(v, "请选择工作人员")


async def _pick(
    request: web.Request, entry: CallEntry
) -> tuple[int, str, int | None, str] | web.Response:
    """(staff id, display name, department, note) of the colleague picked in the form."""
    form = await request.post()
    values = form_dict(form, ("username", "note"))
    try:
        data = StaffPick.model_validate(values)
    except ValidationError as e:
        return await _reception(request, entry, values=values, errors=field_errors(e), status=422)
    async with request.app[keys.db].begin() as session:
        picked = await org.staff_by_username(session, username=data.username)
        department = (
            await org.staff_department(session, staff_id=picked.id) if picked is not None else None
        )
    if picked is None:
        return await _reception(
            request, entry, values=values, errors={"username": "未找到该工作人员"}, status=422
        )
    return picked.id, picked.name, department, data.note


@protected(Action.queue_answer)
async def invite(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    entry = await _entry_for(request, staff)
    picked = await _pick(request, entry)
    if isinstance(picked, web.Response):
        return picked
    entry = await queue_of(request).invite(
        entry.id, staff_id=picked[0], department_id=picked[2], note=picked[3]
    )
    return await _reception(
        request, entry, notice="已邀请工作人员加入联合调处：", notice_name=picked[1]
    )


@protected(Action.queue_answer)
async def handover(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    entry = await _entry_for(request, staff)
    picked = await _pick(request, entry)
    if isinstance(picked, web.Response):
        return picked
    await queue_of(request).hand_over(
        entry.id, staff_id=picked[0], department_id=picked[2], note=picked[3]
    )
    raise web.HTTPSeeOther("/desk")


@protected(Action.queue_answer)
async def end(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    entry = await _entry_for(request, staff)
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    if outcome not in OUTCOMES:
        return await _reception(request, entry, errors={"outcome": "请选择接访结果"}, status=422)
    await queue_of(request).end(entry.id, outcome=outcome)
    now = utcnow()
    async with request.app[keys.db].begin() as session:
        await close_reception(session, session_id=entry.session_id, desk_outcome=outcome, now=now)
        if entry.case_id is not None:  # the resident takes the case number home, by SMS too
            await send_reception_receipt(
                session,
                pii=request.app[keys.pii],
                case_id=entry.case_id,
                session_id=entry.session_id,
                outcome=outcome,
                follow_url=follow_link(request, entry.case_id)[0],
                now=now,
            )
    raise web.HTTPSeeOther("/desk")


def setup(app: web.Application) -> None:
    app.router.add_get("/desk", desk, name="desk")
    app.router.add_get("/api/queue", queue_json)
    app.router.add_post(r"/desk/calls/{entry_id:\d+}/accept", accept)
    app.router.add_get(r"/desk/calls/{entry_id:\d+}", reception, name="reception")
    app.router.add_post(r"/desk/calls/{entry_id:\d+}/intake", intake)
    app.router.add_post(r"/desk/calls/{entry_id:\d+}/invite", invite)
    app.router.add_post(r"/desk/calls/{entry_id:\d+}/handover", handover)
    app.router.add_post(r"/desk/calls/{entry_id:\d+}/end", end)
