"""签发 on the case page: the lead department's leader signs off a handler's draft reply or
refusal (POST /cases/{id}/sign-off/sign_off), or returns it with a note
(POST /cases/{id}/sign-off/return_draft). A draft someone already signed or returned is a
409 with the clear message on the page, and nothing is written; anyone but the leader gets
403 (server.cases.sign_off decides)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action
from server.cases import sign_off
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.case_context import deadline_clock, reply_notice
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import Conflict
from web.views.call import clean_text, field_errors, form_dict
from web.views.case_file import FormState, render_case_page


class ReturnNote(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    note: str = Field(max_length=2000)

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        return clean_text(v, "请填写退回修改意见")


@protected(Action.case_view)
async def post_sign_off(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    case_id = path_int(request, "case_id")
    name = request.match_info["name"]
    values = form_dict(await request.post(), ("note",))
    try:
        async with request.app[keys.db].begin() as session:
            if name == "sign_off":
                await sign_off.sign(
                    session,
                    staff=staff,
                    case_id=case_id,
                    now=utcnow(),
                    deadlines=deadline_clock(request),
                    ip=client_ip(request),
                    reply_notice=reply_notice(request),
                )
            else:
                try:
                    data = ReturnNote.model_validate(values)
                except ValidationError as e:
                    return await render_case_page(
                        request,
                        staff,
                        case_id,
                        form=FormState(name, values, field_errors(e)),
                        status=422,
                    )
                await sign_off.return_draft(
                    session,
                    staff=staff,
                    case_id=case_id,
                    note=data.note,
                    now=utcnow(),
                    ip=client_ip(request),
                )
    except Conflict as e:
        message = (
            e.message_zh
            if isinstance(e, sign_off.NoPendingDraft)
            else (
                "该事项的状态已经变化（可能其他工作人员刚刚办理），本次操作未执行。请查看最新状态。"
            )
        )
        return await render_case_page(
            request, staff, case_id, form=FormState(name, values, message=message), status=409
        )
    raise web.HTTPSeeOther(f"/cases/{case_id}?done={name}")


def setup(app: web.Application) -> None:
    app.router.add_post(
        r"/cases/{case_id:\d+}/sign-off/{name:sign_off|return_draft}", post_sign_off
    )
