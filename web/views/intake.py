"""Registering a walk-in (来访) or a letter (来信) at a window, or a community agent's 代办 for a
resident of their own community (with the resident's consent; an officer of the site then claims
it from their home page): the officer types the
petitioner's name, phone and ID number, the matter type and its particulars, the summary, an
accused unit if any and, for a group, the headcount and a representative. It goes through the
one intake pipeline (server.cases.intake.intake: category, confidentiality, routing, repeat
detection, the acceptance deadline) with the officer as first receiver, then to the new case's
page."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.auth.permissions import Action, StaffIdentity
from server.cases.catalogue import active_matter_types, matter_type_fields
from server.cases.intake import intake
from server.cases.schemas import Channel, IntakeRequest, PetitionerInput, RepresentativeInput
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.case_context import deadline_clock
from server.kernel.db import utcnow
from server.kernel.errors import AppError
from server.org.schemas import Role
from server.org.service import departments
from web.render import page
from web.views.call import (
    ACCUSED_ERROR,
    ACCUSED_FIELD,
    accused_department,
    clean_phone,
    clean_text,
    field_errors,
    form_dict,
)

FIELDS = (
    "channel",
    "name",
    "phone",
    "id_number",
    "matter_type",
    "summary",
    ACCUSED_FIELD,
    "headcount",
    "rep_name",
    "rep_phone",
)
CHANNELS = (("window", "来访（走访窗口）"), ("letter", "来信"))
#: A community agent registers on a resident's behalf (channel agent) and only so.
AGENT_CHANNELS = (("agent", "代办（为本社区群众登记）"),)
CONSENT_FIELD = "on_behalf_consent"
CONSENT_ERROR = "代办须经信访人同意：请确认已征得信访人同意"


def channels_for(staff: StaffIdentity) -> tuple[tuple[str, str], ...]:
    return AGENT_CHANNELS if Role.community_agent in staff.roles else CHANNELS


class WindowIntakeForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    channel: str
    name: str = Field(max_length=64)
    phone: str
    id_number: str = Field(default="", max_length=32)
    matter_type: str = Field(max_length=64)
    summary: str = Field(max_length=4000)
    headcount: str = ""
    rep_name: str = Field(default="", max_length=64)
    rep_phone: str = ""

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if v not in dict(CHANNELS) and v not in dict(AGENT_CHANNELS):
            raise ValueError("请选择来访或来信")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return clean_text(v, "请填写信访人姓名")

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        return clean_phone(v)

    @field_validator("matter_type")
    @classmethod
    def _matter(cls, v: str) -> str:
        return clean_text(v, "请选择事项类型")

    @field_validator("summary")
    @classmethod
    def _summary(cls, v: str) -> str:
        v = clean_text(v, "请填写诉求摘要")
        if len(v) < 4:
            raise ValueError("诉求摘要至少4个字")
        return v

    @field_validator("headcount")
    @classmethod
    def _headcount(cls, v: str) -> str:
        if v and (not v.isdigit() or int(v) < 1):
            raise ValueError("来访人数应为正整数")
        return v

    @field_validator("rep_phone")
    @classmethod
    def _rep_phone(cls, v: str) -> str:
        return clean_phone(v) if v else v


async def _render(
    request: web.Request,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    attributes: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        matters = await active_matter_types(session)
        fields = await matter_type_fields(session)
        units = await departments(session)
    return page(
        request,
        "cases/new.html",
        {
            "values": values,
            "errors": errors,
            "attributes": attributes or {},
            "message": message,
            "matters": matters,
            "matter_fields": fields,
            "departments": units,
            "channels": channels_for(signed_in_staff(request)),
        },
        status=status,
    )


@protected(Action.case_create)
async def new_case_form(request: web.Request) -> web.Response:
    values = dict.fromkeys((*FIELDS, CONSENT_FIELD), "")
    offered = channels_for(signed_in_staff(request))
    asked = request.query.get("channel", "")
    values["channel"] = asked if asked in dict(offered) else offered[0][0]
    return await _render(request, values, {})


def _attributes(form: Any, matter: str) -> dict[str, str]:
    prefix = f"attr-{matter}-"
    return {
        str(k).removeprefix(prefix): str(v).strip()[:500]
        for k, v in form.items()
        if str(k).startswith(prefix) and str(v).strip()
    }


@protected(Action.case_create)
async def new_case_submit(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    form = await request.post()
    values = form_dict(form, FIELDS)
    attributes = _attributes(form, values["matter_type"])
    typed = {f"attr-{values['matter_type']}-{k}": v for k, v in attributes.items()}
    values[CONSENT_FIELD] = "on" if form.get(CONSENT_FIELD) else ""
    try:
        data = WindowIntakeForm.model_validate(values)
    except ValidationError as e:
        return await _render(request, values, field_errors(e), attributes=typed, status=422)
    if data.channel not in dict(channels_for(staff)):
        return await _render(
            request, values, {"channel": "请选择来访或来信"}, attributes=typed, status=422
        )
    if data.channel == "agent" and not values[CONSENT_FIELD]:
        return await _render(
            request, values, {CONSENT_FIELD: CONSENT_ERROR}, attributes=typed, status=422
        )
    settings = request.app[keys.settings]
    try:
        async with request.app[keys.db].begin() as session:
            if data.matter_type not in dict(await active_matter_types(session)):
                await session.rollback()
                return await _render(
                    request, values, {"matter_type": "请选择事项类型"}, attributes=typed, status=422
                )
            try:
                accused = accused_department(values[ACCUSED_FIELD], await departments(session))
            except ValueError:
                await session.rollback()
                return await _render(
                    request, values, {ACCUSED_FIELD: ACCUSED_ERROR}, attributes=typed, status=422
                )
            headcount = int(data.headcount) if data.headcount else None
            collective = headcount is not None and headcount >= 2
            reps = (
                [RepresentativeInput(name=data.rep_name, phone=data.rep_phone)]
                if collective and data.rep_name and data.rep_phone
                else []
            )
            result = await intake(
                session,
                pii=request.app[keys.pii],
                staff=staff,
                request=IntakeRequest(
                    channel=Channel(data.channel),
                    site_id=staff.site_id,
                    summary=data.summary,
                    matter_type=data.matter_type,
                    petitioner=PetitionerInput(
                        name=data.name, phone=data.phone, id_number=data.id_number or None
                    ),
                    attributes=attributes,
                    accused_department_id=accused,
                    collective=collective,
                    headcount=headcount if collective else None,
                    representatives=reps,
                    on_behalf_consent=data.channel == "agent" and bool(values[CONSENT_FIELD]),
                ),
                now=utcnow(),
                deadlines=deadline_clock(request),
                case_no_format=settings.case_no_format,
                ip=client_ip(request),
                max_representatives=settings.collective_max_representatives,
            )
    except AppError as e:
        field = str(e.details.get("field", ""))
        message = str(e.details.get("reason_zh") or e.message_zh)
        if field == "representatives" or field.startswith("representatives."):
            field = "rep_name"
        if field in FIELDS or field == CONSENT_FIELD:
            return await _render(
                request, values, {field: message}, attributes=typed, status=e.http_status
            )
        attr_key = f"attr-{values['matter_type']}-{field}"
        if field:
            return await _render(
                request, values, {attr_key: message}, attributes=typed, status=e.http_status
            )
        return await _render(
            request, values, {}, attributes=typed, message=message, status=e.http_status
        )
    raise web.HTTPSeeOther(f"/cases/{result.case.id}?done=registered")


def setup(app: web.Application) -> None:
    app.router.add_get("/cases/new", new_case_form, name="case_new")
    app.router.add_post("/cases/new", new_case_submit)
