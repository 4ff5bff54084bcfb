"""Kiosk mode (自助机): full screen, large touch targets, a three-field registration that creates
a case (channel kiosk; the first staff member to claim it becomes its first receiver), then the
case number and a QR code to follow it online. The page resets itself after inactivity and links
nowhere else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import segno
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from server import keys
from server.auth.web import client_ip, public
from server.cases.models import Channel, PetitionCase
from server.cases.schemas import PetitionerInput
from server.cases.service import create_case
from server.db import utcnow
from server.errors import KioskRateLimited, NotFound
from server.kernel.ids import parse_id
from server.org.models import Site, SiteLevel
from web.labels import CASE_STATE_PUBLIC_LABELS
from web.render import page
from web.views.call import clean_phone, clean_text, field_errors, form_dict, matter_types

KIOSK_FIELDS = ("matter_code", "description", "name", "phone", "site")
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


def follow_token(secret: bytes, case_id: int) -> str:
    mac = hmac.new(secret, f"onedoor-follow:{case_id}".encode(), hashlib.sha256).digest()[:12]
    return f"{case_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_follow_token(secret: bytes, token: str) -> int:
    case_part, _, _mac = token.partition(".")
    case_id = parse_id(case_part)
    if case_id is None or not hmac.compare_digest(
        follow_token(secret, case_id).encode(), token.encode()
    ):
        raise NotFound("no such follow link")
    return case_id


async def _site_id(request: web.Request, raw: str) -> int:
    async with request.app[keys.db].begin() as session:
        site_id = parse_id(raw)
        if site_id is not None and await session.get(Site, site_id) is not None:
            return site_id
        site = await session.scalar(
            select(Site.id).where(Site.level == SiteLevel.district).limit(1)
        )
    if site is None:
        raise NotFound("no district site configured")
    return int(site)


async def _form(
    request: web.Request,
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    *,
    notice: str | None = None,
) -> web.Response:
    async with request.app[keys.db].begin() as session:
        matters = await matter_types(session)
    return page(
        request,
        "kiosk.html",
        {"matters": matters, "values": values, "errors": errors, "notice": notice},
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
        matters = dict(await matter_types(session))
        if data.matter_code not in matters:
            await session.rollback()
            return await _form(request, values, {"matter_code": "请选择您要反映的事项"}, status=422)
        case = await create_case(
            session,
            pii=request.app[keys.pii],
            site_id=site_id,
            channel=Channel.kiosk,
            summary=data.description,
            petitioner=PetitionerInput(name=data.name, phone=data.phone),
            first_receiver_id=None,
            now=utcnow(),
            matter_type=data.matter_code,
            actor="kiosk",
        )
    token = follow_token(request.app[keys.settings].secret_bytes(), case.id)
    url = str(request.url.with_path(f"/follow/{token}").with_query(None))
    qr = segno.make(url, error="m").svg_data_uri(scale=6, border=2)
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
        request.app[keys.settings].secret_bytes(), request.match_info["token"]
    )
    async with request.app[keys.db].begin() as session:
        row = await session.get(PetitionCase, case_id)
        if row is None:
            raise NotFound("no such case")
        state = row.state.value
        info = {
            "case_no": row.case_no,
            "registered_at": row.registered_at,
            "state": state,
            "state_label": STATE_LABELS.get(state, state),
        }
    return page(request, "follow.html", info)


def setup(app: web.Application) -> None:
    app.router.add_get("/kiosk", kiosk_form, name="kiosk")
    app.router.add_post("/kiosk", kiosk_submit)
    app.router.add_get(r"/follow/{token}", follow, name="follow")
