"""The case page's action forms: POST /cases/{id}/actions/{name} for every lifecycle
transition a staff member fires (受理, 不予受理, 导入法定途径, 转送/交办, 开始办理, 书面答复, 回访,
退回办理, 结案, 终止) and the other case actions (认领, 增加协办单位, 延期, 中止/恢复计时, 督办,
复查/复核申请).

Each form is validated here (zh-CN messages next to the fields), then handed to the same
service the REST API calls, which checks again and writes the timeline and the audit log;
success redirects to the case page with a message (POST/redirect/GET). A refused action
re-renders the page with what was typed: a validation error at its field, an action the
case's state no longer allows (another officer acted first) with a clear message, and
nothing is written. An action the viewer may not take at all is a 403.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action, StaffIdentity
from server.cases import case_deadlines, lifecycle, queries, sign_off, supervision
from server.cases.lifecycle import AlreadyClaimed
from server.cases.schemas import CaseDetail, HandlerRequest, SupervisionRequest, TransitionRequest
from server.cases.statemachine import LEGAL_ROUTES, TRANSITIONS
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.case_context import deadline_clock, reply_notice
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import AppError, Conflict, InvalidInput, NotFound, PermissionDenied
from server.org import service as org
from web.views.call import clean_text, field_errors, form_dict
from web.views.case_file import FORM_FIELDS, IRREVERSIBLE, FormState, render_case_page

STALE = "该事项的状态已经变化（可能其他工作人员刚刚办理），本次操作未执行。请查看最新状态。"
CONFIRM_MESSAGE = "请勾选确认后再提交"

#: Which permission the roles need for each non-transition action (the service checks scope).
OTHER_ACTION_PERMISSIONS: dict[str, tuple[Action, ...]] = {
    "claim": (Action.case_create,),
    "add_handler": (Action.case_assign,),
    "extend": (Action.case_extend_approve,),
    "pause": (Action.case_extend_approve, Action.case_supervise),
    "resume": (Action.case_extend_approve, Action.case_supervise),
    "supervise": (Action.case_supervise,),
    "request_review": (Action.case_create, Action.case_handle),
    "respond_supervision": (Action.case_handle,),
    "close_supervision": (Action.case_supervise,),
    "invite_expert": (Action.case_assign,),
    "expert_opinion": (Action.case_opinion,),
    "mark_hard": (Action.case_supervise,),
}

_FORM = ConfigDict(extra="ignore", str_strip_whitespace=True)


class NoFields(BaseModel):
    model_config = _FORM


class Note(BaseModel):
    model_config = _FORM
    note: str = Field(default="", max_length=2000)


class Reason(BaseModel):
    model_config = _FORM
    reason: str = Field(max_length=2000)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return clean_text(v, "请填写理由")


class RedirectLegal(Reason):
    legal_route: str

    @field_validator("legal_route")
    @classmethod
    def _route(cls, v: str) -> str:
        if v not in LEGAL_ROUTES:
            raise ValueError("请选择法定途径")
        return v


class Transfer(BaseModel):
    model_config = _FORM
    target_department_id: str
    reason: str = Field(default="", max_length=2000)

    @field_validator("target_department_id")
    @classmethod
    def _target(cls, v: str) -> str:
        if not v.isdigit():
            raise ValueError("请选择承办单位")
        return v


class Reply(BaseModel):
    model_config = _FORM
    reply: str = Field(max_length=10000)

    @field_validator("reply")
    @classmethod
    def _reply(cls, v: str) -> str:
        v = clean_text(v, "请填写书面答复意见")
        if len(v) < 10:
            raise ValueError("书面答复意见过短，请写明事实、依据和处理意见")
        return v


class Revisit(BaseModel):
    model_config = _FORM
    note: str = Field(max_length=2000)

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        return clean_text(v, "请填写回访情况")


class AddHandler(BaseModel):
    model_config = _FORM
    department_id: str
    role: str = "co"
    task: str = Field(default="", max_length=2000)

    @field_validator("department_id")
    @classmethod
    def _dept(cls, v: str) -> str:
        if not v.isdigit():
            raise ValueError("请选择协办单位")
        return v


class Extend(BaseModel):
    model_config = _FORM
    kind: str = Field(max_length=32)
    days: str
    reason: str = Field(max_length=2000)

    @field_validator("days")
    @classmethod
    def _days(cls, v: str) -> str:
        if not v.isdigit() or not 1 <= int(v) <= 366:
            raise ValueError("请填写延长天数（1至366的整数）")
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        v = clean_text(v, "请填写延期理由")
        if len(v) < 2:
            raise ValueError("延期理由过短")
        return v


class Pause(BaseModel):
    model_config = _FORM
    kind: str = Field(max_length=32)
    reason: str = Field(max_length=2000)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        v = clean_text(v, "请填写中止计时理由")
        if len(v) < 2:
            raise ValueError("理由过短")
        return v


class Resume(BaseModel):
    model_config = _FORM
    kind: str = Field(max_length=32)


class Supervise(BaseModel):
    model_config = _FORM
    type: str = "supervision"
    note: str = Field(max_length=2000)
    due_days: str = "7"

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        v = clean_text(v, "请填写督办意见")
        if len(v) < 2:
            raise ValueError("督办意见过短")
        return v

    @field_validator("due_days")
    @classmethod
    def _due(cls, v: str) -> str:
        if not v.isdigit() or not 1 <= int(v) <= 90:
            raise ValueError("请填写办理时限（1至90天）")
        return v


class RespondSupervision(BaseModel):
    model_config = _FORM
    response: str = Field(max_length=4000)

    @field_validator("response")
    @classmethod
    def _response(cls, v: str) -> str:
        v = clean_text(v, "请填写督办答复（已采取的措施和办理结果）")
        if len(v) < 2:
            raise ValueError("督办答复过短")
        return v


class CloseSupervision(BaseModel):
    model_config = _FORM
    verdict: str
    comment: str = Field(default="", max_length=2000)

    @field_validator("verdict")
    @classmethod
    def _verdict(cls, v: str) -> str:
        if v not in ("satisfied", "unsatisfied"):
            raise ValueError("请选择评议结果")
        return v


class InviteExpert(BaseModel):
    model_config = _FORM
    expert: str = Field(max_length=64)
    task: str = Field(default="", max_length=2000)

    @field_validator("expert")
    @classmethod
    def _expert(cls, v: str) -> str:
        if not v:
            raise ValueError("请选择专家")
        return v


class ExpertOpinion(BaseModel):
    model_config = _FORM
    opinion: str = Field(max_length=10000)

    @field_validator("opinion")
    @classmethod
    def _opinion(cls, v: str) -> str:
        v = clean_text(v, "请填写专家意见")
        if len(v) < 10:
            raise ValueError("专家意见过短，请写明分析、依据和建议")
        return v


FORMS: dict[str, type[BaseModel]] = {
    "accept": Note,
    "not_accept": Reason,
    "redirect_legal": RedirectLegal,
    "transfer": Transfer,
    "start_handling": NoFields,
    "reply": Reply,
    "revisit": Revisit,
    "reopen": Reason,
    "close": NoFields,
    "terminate": Reason,
    "claim": NoFields,
    "add_handler": AddHandler,
    "extend": Extend,
    "pause": Pause,
    "resume": Resume,
    "supervise": Supervise,
    "request_review": Reason,
    "respond_supervision": RespondSupervision,
    "close_supervision": CloseSupervision,
    "invite_expert": InviteExpert,
    "expert_opinion": ExpertOpinion,
    "mark_hard": Reason,
}


def _check_offered(staff: StaffIdentity, detail: CaseDetail, name: str) -> str:
    """ "" if the viewer may take the action now; else the stale-state message, or raise
    PermissionDenied when their roles or scope never allow it."""
    state = detail.state
    if name in {*detail.transitions, *detail.actions}:
        return ""
    if name == "claim" and detail.first_receiver_id is not None and staff.can(Action.case_create):
        return AlreadyClaimed.message_zh
    transition = TRANSITIONS.get(name)
    if transition is not None:
        if state not in transition.sources:
            return STALE
        raise PermissionDenied(f"you may not {name} this case")
    if any(staff.can(a) for a in OTHER_ACTION_PERMISSIONS[name]):
        return STALE
    raise PermissionDenied(f"you may not {name} this case")


async def _perform(
    request: web.Request, staff: StaffIdentity, case_id: int, name: str, data: Any
) -> str | None:
    """Take the action; returns another `done` message key when the outcome differs (a
    reply kept as a draft for the leader's sign-off)."""
    now = utcnow()
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        if name in sign_off.DRAFT_EVENTS:  # 签发: a handler's reply/refusal is a draft
            drafted = await sign_off.reply_or_draft(
                session,
                staff=staff,
                case_id=case_id,
                request=TransitionRequest(transition=name, **data.model_dump()),
                now=now,
                deadlines=deadline_clock(request),
                ip=client_ip(request),
                reply_notice=reply_notice(request),
                require_sign_off=settings.reply_sign_off,
            )
            return "drafted" if drafted else None
        if name in TRANSITIONS:
            fields = data.model_dump()
            if name == "transfer":
                fields["target_department_id"] = int(fields["target_department_id"])
            await lifecycle.transition(
                session,
                staff=staff,
                case_id=case_id,
                request=TransitionRequest(
                    transition=name, **{k: v for k, v in fields.items() if v not in ("", None)}
                ),
                now=now,
                deadlines=deadline_clock(request),
                ip=client_ip(request),
                reply_notice=reply_notice(request),
            )
        elif name == "claim":
            await lifecycle.claim(session, staff=staff, case_id=case_id, now=now)
        elif name == "add_handler":
            await lifecycle.add_handler(
                session,
                staff=staff,
                case_id=case_id,
                request=HandlerRequest(
                    department_id=int(data.department_id), role=data.role, task=data.task
                ),
                now=now,
            )
        elif name == "extend":
            await case_deadlines.extend(
                session,
                staff=staff,
                case_id=case_id,
                kind=data.kind,
                days=int(data.days),
                reason=data.reason,
                now=now,
                deadlines=deadline_clock(request),
                pii=request.app[keys.pii],
            )
        elif name == "pause":
            await case_deadlines.pause(
                session, staff=staff, case_id=case_id, kind=data.kind, reason=data.reason, now=now
            )
        elif name == "resume":
            await case_deadlines.resume(
                session,
                staff=staff,
                case_id=case_id,
                kind=data.kind,
                now=now,
                deadlines=deadline_clock(request),
            )
        elif name == "supervise":
            await lifecycle.supervise(
                session,
                staff=staff,
                case_id=case_id,
                request=SupervisionRequest(
                    type=data.type, note=data.note, due_days=int(data.due_days)
                ),
                now=now,
            )
        elif name == "respond_supervision":
            await supervision.respond_supervision(
                session, staff=staff, case_id=case_id, response=data.response, now=now
            )
        elif name == "close_supervision":
            await supervision.close_supervision(
                session,
                staff=staff,
                case_id=case_id,
                satisfied=data.verdict == "satisfied",
                comment=data.comment,
                now=now,
            )
        elif name == "invite_expert":
            person = await org.staff_by_username(session, username=data.expert)
            if person is None:
                raise InvalidInput("unknown expert", field="expert", reason_zh="请选择专家")
            await lifecycle.add_handler(
                session,
                staff=staff,
                case_id=case_id,
                request=HandlerRequest(staff_id=person.id, role="expert", task=data.task),
                now=now,
            )
        elif name == "mark_hard":
            await lifecycle.mark_hard(
                session, staff=staff, case_id=case_id, reason=data.reason, now=now
            )
        elif name == "expert_opinion":
            await lifecycle.record_expert_opinion(
                session, staff=staff, case_id=case_id, opinion=data.opinion, now=now
            )
        elif name == "request_review":
            await lifecycle.request_review(
                session,
                staff=staff,
                case_id=case_id,
                reason=data.reason,
                now=now,
                deadlines=deadline_clock(request),
                case_no_format=settings.case_no_format,
            )
    return None


@protected(Action.case_view)
async def post_action(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    case_id = path_int(request, "case_id")
    name = request.match_info["name"]
    if name not in FORMS or (name in TRANSITIONS and TRANSITIONS[name].system_only):
        raise NotFound(f"no case action {name!r}")
    form = await request.post()
    names = (*(f for f, _, _ in FORM_FIELDS[name]), "confirm")
    values = form_dict(form, names)
    async with request.app[keys.db].begin() as session:
        detail = await queries.case_detail(session, staff=staff, case_id=case_id, audit_view=False)
    stale = _check_offered(staff, detail, name)
    if stale:
        return await render_case_page(
            request, staff, case_id, form=FormState(name, values, message=stale), status=409
        )
    errors: dict[str, str] = {}
    data: Any = None
    try:
        data = FORMS[name].model_validate(values)
    except ValidationError as e:
        errors = field_errors(e)
    if name in IRREVERSIBLE and values.get("confirm") != "yes":
        errors["confirm"] = CONFIRM_MESSAGE
    if errors:
        return await render_case_page(
            request, staff, case_id, form=FormState(name, values, errors), status=422
        )
    try:
        done = await _perform(request, staff, case_id, name, data) or name
    except (Conflict, AlreadyClaimed) as e:
        # Another officer acted between the page and this form: nothing was written.
        message = STALE if e.code == "illegal_transition" else e.message_zh
        return await render_case_page(
            request, staff, case_id, form=FormState(name, values, message=message), status=409
        )
    except (PermissionDenied, NotFound):
        raise
    except AppError as e:
        field = str(e.details.get("field", ""))
        message = str(e.details.get("reason_zh") or e.message_zh)
        state = (
            FormState(name, values, {field: message})
            if field in names
            else FormState(name, values, message=message)
        )
        return await render_case_page(request, staff, case_id, form=state, status=e.http_status)
    raise web.HTTPSeeOther(f"/cases/{case_id}?done={done}")


def setup(app: web.Application) -> None:
    app.router.add_post(r"/cases/{case_id:\d+}/actions/{name:[a-z_]+}", post_action)
