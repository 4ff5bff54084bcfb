"""Community point → district centre video call (连线区信访超市): the agent picks the matter,
confirms the resident's name and phone, passes the prejoin check and waits in the centre's
queue; shared form helpers (zh-CN validation messages) for the other views."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action
from server.cases.catalogue import active_matter_types
from server.cases.receipts import next_step
from server.http import keys
from server.http.auth import protected, signed_in_staff
from server.http.common import path_int
from server.http.doc_models import CallStatus
from server.http.openapi import documented
from server.kernel.errors import PermissionDenied
from server.org import service as org
from server.org.schemas import NamedRef
from server.queue import STATE_LABELS, CallEntry, CallNotWaiting, CallState, QueueService
from web.follow_links import follow_link
from web.i18n import _
from web.render import page

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")


# ------------------------------------------------------------------ shared form helpers


def clean_phone(value: str) -> str:
    value = re.sub(r"[\s-]", "", value)
    if not PHONE_RE.fullmatch(value):
        raise ValueError("请输入有效的11位手机号码（以1开头，第二位为3-9）")
    return value


def clean_text(value: str, message: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(message)
    return value


def field_errors(exc: ValidationError) -> dict[str, str]:
    """pydantic errors → {field: zh-CN message}; our validators raise zh-CN text already."""
    out: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "_"
        msg = str(err.get("msg", ""))
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        elif err["type"] in ("missing", "string_too_short"):
            msg = "此项为必填项"
        elif err["type"] == "string_too_long":
            msg = "内容过长"
        out.setdefault(name, msg)
    return out


def form_dict(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    return {n: str(form.get(n, ""))[:4000] for n in names}


#: An accusation's accused unit (被检举单位), optional on the kiosk and the call form: the
#: intake pipeline keeps the case from that unit (confidential, never routed or shown to it).
ACCUSED_FIELD = "accused_department"
ACCUSED_ERROR = "请选择被检举单位"


def accused_department(raw: str, departments: list[NamedRef]) -> int | None:
    """The department picked as the accused unit, None if none was; ValueError if the choice is
    not a department."""
    raw = raw.strip()
    if not raw:
        return None
    picked = next((d.id for d in departments if str(d.id) == raw), None)
    if picked is None:
        raise ValueError(raw)
    return picked


class CallForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    matter_code: str = Field(max_length=64)
    resident_name: str = Field(max_length=64)
    resident_phone: str

    @field_validator("matter_code")
    @classmethod
    def _matter(cls, v: str) -> str:
        return clean_text(v, "请选择事项类型")

    @field_validator("resident_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return clean_text(v, "请填写来访群众姓名")

    @field_validator("resident_phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        return clean_phone(v)


def queue_of(request: web.Request) -> QueueService:
    return request.app[keys.call_queue]


# ------------------------------------------------------------------ views

CALL_FIELDS = ("matter_code", "resident_name", "resident_phone", ACCUSED_FIELD)


async def _render_form(
    request: web.Request, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        matters = await active_matter_types(session)
        departments = await org.departments(session)
    return page(
        request,
        "call.html",
        {"matters": matters, "departments": departments, "values": values, "errors": errors},
        status=status,
    )


@protected(Action.queue_call)
async def call_form(request: web.Request) -> web.Response:
    return await _render_form(request, dict.fromkeys(CALL_FIELDS, ""), {})


@protected(Action.queue_call)
async def call_submit(request: web.Request) -> web.StreamResponse:
    agent = signed_in_staff(request)
    form = await request.post()
    values = form_dict(form, CALL_FIELDS)
    try:
        data = CallForm.model_validate(values)
    except ValidationError as e:
        return await _render_form(request, values, field_errors(e), status=422)
    async with request.app[keys.db].begin() as session:
        matters = dict(await active_matter_types(session))
        if data.matter_code not in matters:
            await session.rollback()
            return await _render_form(
                request, values, {"matter_code": "请选择事项类型"}, status=422
            )
        try:
            accused = accused_department(values[ACCUSED_FIELD], await org.departments(session))
        except ValueError:
            await session.rollback()
            return await _render_form(request, values, {ACCUSED_FIELD: ACCUSED_ERROR}, status=422)
        site_name = await org.site_name(session, site_id=agent.site_id)
        entry = await queue_of(request).enqueue(
            session,
            agent=agent,
            site_name=site_name,
            matter_code=data.matter_code,
            matter_name=matters[data.matter_code],
            resident_name=data.resident_name,
            resident_phone=data.resident_phone,
            accused_department_id=accused,
        )
    raise web.HTTPSeeOther(f"/call/{entry.id}")


async def _own_entry(request: web.Request, *, polled: bool = False) -> CallEntry:
    """The call, if the signed-in agent placed it; `polled`: the call page asks for its status
    (which keeps a waiting call from expiring)."""
    agent = signed_in_staff(request)
    queue = queue_of(request)
    entry_id = path_int(request, "entry_id")
    entry = await (queue.status(entry_id) if polled else queue.get(entry_id))
    if entry.agent_id != agent.staff_id:
        raise PermissionDenied("this call was placed by another agent")
    return entry


def _receipt(request: web.Request, entry: CallEntry) -> dict[str, str] | None:
    """What the resident takes home once the desk has ended the reception: the case number,
    the next step and the follow link with its QR code (the SMS says the same)."""
    if entry.state != CallState.ended or entry.case_id is None:
        return None
    url, qr = follow_link(request, entry.case_id)
    return {
        "case_no": entry.case_no,
        "next_step": next_step(entry.outcome),
        "follow_url": url,
        "qr": qr,
    }


@protected(Action.queue_call)
async def call_live(request: web.Request) -> web.Response:
    entry = await _own_entry(request, polled=True)
    policy = queue_of(request).policy
    return page(
        request,
        "call_live.html",
        {
            "entry": entry,
            "callback_error": "",
            "policy": policy,
            "receipt": _receipt(request, entry),
        },
    )


@documented(
    "A community point's own call (its page polls it)", tags=("queue",), response=CallStatus
)
@protected(Action.queue_call)
async def call_status(request: web.Request) -> web.Response:
    entry = await _own_entry(request, polled=True)
    queue = queue_of(request)
    policy = queue.policy
    body = entry.public(policy, queue.now())
    # call.js shows the label as it is: in the page's language, never the raw state.
    body["state_label"] = _(request, STATE_LABELS[entry.state])
    return web.json_response({**body, "callback_after_s": policy.callback_after_s})


class CallbackForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    callback_at: str = Field(max_length=40)

    @field_validator("callback_at")
    @classmethod
    def _when(cls, v: str) -> str:
        return clean_text(v, "请选择希望回电的时间")


@protected(Action.queue_call)
async def call_callback(request: web.Request) -> web.StreamResponse:
    entry = await _own_entry(request)
    form = await request.post()
    values = form_dict(form, ("callback_at",))
    try:
        data = CallbackForm.model_validate(values)
    except ValidationError as e:
        return page(
            request,
            "call_live.html",
            {
                "entry": entry,
                "callback_error": field_errors(e)["callback_at"],
                "policy": queue_of(request).policy,
                "receipt": None,
            },
            status=422,
        )
    with contextlib.suppress(CallNotWaiting):  # answered meanwhile: the page shows it
        await queue_of(request).book_callback(entry.id, callback_at=data.callback_at)
    raise web.HTTPSeeOther(f"/call/{entry.id}")


@protected(Action.queue_call)
async def call_cancel(request: web.Request) -> web.StreamResponse:
    entry = await _own_entry(request)
    with contextlib.suppress(CallNotWaiting):  # answered meanwhile: nothing to cancel
        await queue_of(request).cancel(entry.id)
    raise web.HTTPSeeOther("/call")


def setup(app: web.Application) -> None:
    app.router.add_get("/call", call_form, name="call")
    app.router.add_post("/call", call_submit)
    app.router.add_get(r"/call/{entry_id:\d+}", call_live, name="call_live")
    app.router.add_get(r"/api/queue/calls/{entry_id:\d+}", call_status)
    app.router.add_post(r"/call/{entry_id:\d+}/callback", call_callback)
    app.router.add_post(r"/call/{entry_id:\d+}/cancel", call_cancel)
