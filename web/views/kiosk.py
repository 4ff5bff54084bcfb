"""Kiosk mode (自助机): full screen, large touch targets, a three-field registration that goes
through the intake pipeline like every channel (channel kiosk: category, confidentiality,
routing and the acceptance deadline from the matter type; the first staff member to claim it
becomes its first receiver; an accusation may name the accused unit), then the
case number and a QR code to follow it online. The page resets itself after inactivity and links
nowhere else."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.cases.access import CaseNotFound
from server.cases.catalogue import active_matter_types
from server.cases.intake import intake
from server.cases.queries import get_case
from server.cases.schemas import Channel, IntakeRequest, PetitionerInput
from server.http import keys
from server.http.auth import client_ip, public
from server.http.case_context import deadline_clock
from server.kernel.db import utcnow
from server.kernel.errors import KioskRateLimited, NotFound
from server.kernel.ids import parse_id
from server.org.service import departments, site_or_district
from web.follow_links import check_follow_token, follow_link
from web.labels import CASE_STATE_PUBLIC_LABELS
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

KIOSK_FIELDS = ("matter_code", "description", "name", "phone", "site", ACCUSED_FIELD)
STATE_LABELS = CASE_STATE_PUBLIC_LABELS


class KioskForm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    matter_code: str = Field(max_length=64)
    description: str = Field(max_length=2000)
    name: str = Field(max_length=64)
    phone: str

    @field_validator("matter_code")
    @classmethod
    def _matter(cls, v: str) -> str:
        return clean_text(v, "请选择您要反映的事项")

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        return clean_text(v, "请简要描述您的诉求")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return clean_text(v, "请填写您的姓名")

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        return clean_phone(v)


async def _site_id(request: web.Request, raw: str) -> int:
    async with request.app[keys.db].begin() as session:
        return await site_or_district(session, site_id=parse_id(raw))


async def _form(
    request: web.Request,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    *,
    notice: str | None = None,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        matters = await active_matter_types(session)
        units = await departments(session)
    return page(
        request,
        "kiosk.html",
        {
            "matters": matters,
            "departments": units,
            "values": values,
            "errors": errors,
            "notice": notice,
        },
        status=status,
    )


@public("the hall's self-service kiosk: petitioners register without an account")
async def kiosk_form(request: web.Request) -> web.Response:
    values = dict.fromkeys(KIOSK_FIELDS, "")
    values["site"] = str(await _site_id(request, request.query.get("site", "")))
    return await _form(request, values, {})


@public("the kiosk registration itself (rate-limited per address)")
async def kiosk_submit(request: web.Request) -> web.Response:
    form = await request.post()
    values = form_dict(form, KIOSK_FIELDS)
    if not await request.app[keys.ratelimiter].hit(
        f"kiosk:{client_ip(request)}",
        limit=request.app[keys.settings].kiosk_rate_per_min,
        window_s=60,
    ):
        # The form comes back with what the petitioner typed: nothing is lost.
        limited = KioskRateLimited("too many kiosk registrations from this address")
        return await _form(
            request, values, {}, status=limited.http_status, notice=limited.message_zh
        )
    try:
        data = KioskForm.model_validate(values)
    except ValidationError as e:
        return await _form(request, values, field_errors(e), status=422)
    site_id = await _site_id(request, values["site"])
    async with request.app[keys.db].begin() as session:
        matters = dict(await active_matter_types(session))
        if data.matter_code not in matters:
            await session.rollback()
            return await _form(request, values, {"matter_code": "请选择您要反映的事项"}, status=422)
        try:
            accused = accused_department(values[ACCUSED_FIELD], await departments(session))
        except ValueError:
            await session.rollback()
            return await _form(request, values, {ACCUSED_FIELD: ACCUSED_ERROR}, status=422)
        settings = request.app[keys.settings]
        case = (
            await intake(
                session,
                pii=request.app[keys.pii],
                staff=None,
                request=IntakeRequest(
                    channel=Channel.kiosk,
                    site_id=site_id,
                    summary=data.description,
                    matter_type=data.matter_code,
                    petitioner=PetitionerInput(name=data.name, phone=data.phone),
                    accused_department_id=accused,
                ),
                now=utcnow(),
                deadlines=deadline_clock(request),
                case_no_format=settings.case_no_format,
                ip=client_ip(request),
            )
        ).case
    url, qr = follow_link(request, case.id)
    return page(
        request,
        "kiosk_done.html",
        {
            "case_no": case.case_no,
            "matter": matters[data.matter_code],
            "qr": qr,
            "follow_url": url,
            "site": site_id,
        },
    )


@public("a petitioner follows their case by the signed link printed as a QR code")
async def follow(request: web.Request) -> web.Response:
    case_id = check_follow_token(
        request.app[keys.settings].secret_bytes(), request.match_info["token"], now=utcnow()
    )
    try:
        async with request.app[keys.db].begin() as session:
            case = await get_case(session, case_id=case_id)
    except CaseNotFound:
        raise NotFound("no such case") from None
    state = case.state.value
    info = {
        "case_no": case.case_no,
        "registered_at": case.registered_at,
        "state": state,
        "state_label": STATE_LABELS.get(state, state),
    }
    return page(request, "follow.html", info)


def setup(app: web.Application) -> None:
    app.router.add_get("/kiosk", kiosk_form, name="kiosk")
    app.router.add_post("/kiosk", kiosk_submit)
    app.router.add_get(r"/follow/{token}", follow, name="follow")
