"""The 调解笔录 / 接访记录 pages (issue #20 item 2); the rules are server.sessions.minutes'.

GET  /sessions/{id}/minutes          the record: editor for whoever ran the session (also
                                     opened beside the call from the room page), read-only
                                     for those who may see the session record
POST /sessions/{id}/minutes          save: the whole text (form, or JSON from the autosave)
POST /sessions/{id}/minutes/freeze   定稿
POST /sessions/{id}/minutes/link     text a party their confirmation link
POST /sessions/{id}/minutes/device   a party confirms on this device, present, typing their name
POST /sessions/{id}/minutes/close    生成笔录: the PDF, into the case file and the evidence
GET  /sessions/{id}/minutes.pdf      the PDF
GET|POST /minutes/{token}            a party's own page: read, 确认
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.permissions import Action, StaffIdentity
from server.http import keys
from server.http.auth import client_ip, protected, public, signed_in_staff
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import AppError
from server.sessions import minutes
from server.sessions.record import check_visible
from web.render import page

PHONE_RE = re.compile(r"^1\d{10}$")


class SaveForm(BaseModel):
    version: int = Field(ge=0)
    paragraphs: list[dict[str, Any]] = Field(
        default_factory=list, max_length=minutes.MAX_PARAGRAPHS
    )


class LinkForm(BaseModel):
    participant: int = Field(gt=0, lt=2**31)
    phone: str = Field(pattern=PHONE_RE.pattern)


class DeviceForm(BaseModel):
    participant: int = Field(gt=0, lt=2**31)
    name: str = Field(min_length=1, max_length=64)
    present: bool


def _url(session_id: int, flash: str = "") -> str:
    return f"/sessions/{session_id}/minutes" + (f"?done={flash}" if flash else "")


async def _reader(
    session: AsyncSession, staff: StaffIdentity, session_id: int
) -> tuple[bool, bool]:
    """(may the staff member read the session's record, may they see its guests' names)."""
    try:
        in_clear = await check_visible(session, viewer=staff, session_id=session_id)
    except AppError:
        return False, False
    return True, in_clear


async def _view(
    request: web.Request, session_id: int, *, audit_read: bool = True
) -> minutes.MinutesView:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        may_read, in_clear = await _reader(session, staff, session_id)
        return await minutes.view(
            session,
            staff=staff,
            session_id=session_id,
            may_read=may_read,
            ip=client_ip(request),
            audit_read=audit_read,
            names_in_clear=in_clear,
        )


async def _render(
    request: web.Request,
    session_id: int,
    *,
    error: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    v = await _view(request, session_id)
    now = utcnow()
    clock_s = int((now - v.started_at).total_seconds()) if v.started_at else 0
    return page(
        request,
        "sessions/minutes.html",
        {
            "m": v,
            "clock_s": max(0, clock_s),
            "clock_text": minutes.clock_text,
            "error": error,
            "errors": errors or {},
            "values": values or {},
            "done": request.query.get("done", ""),
        },
        status=status,
    )


async def _write_then_back(
    request: web.Request,
    session_id: int,
    flash: str,
    write: Callable[[Any], Awaitable[object]],
    *,
    field_errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> web.StreamResponse:
    """Run one write of the minutes service in a transaction; back to the page with `flash`,
    or the page again with the service's zh-CN error (an invalid input next to its field)."""
    try:
        async with request.app[keys.db].begin() as session:
            await write(session)
    except AppError as e:
        if field_errors and e.code == "invalid_input":
            return await _render(
                request, session_id, errors=field_errors, values=values, status=422
            )
        return await _render(request, session_id, error=e.message_zh, status=e.http_status)
    raise web.HTTPSeeOther(_url(session_id, flash))


@protected(Action.case_view)
async def minutes_page(request: web.Request) -> web.Response:
    return await _render(request, path_int(request, "session_id"))


def _form_paragraphs(form: Any, clock_s: int) -> list[dict[str, Any]]:
    """The paragraphs of the no-script form: at_s/text pairs, and a new one (stamped now)."""
    out = [
        {"at_s": a, "text": t}
        for a, t in zip(form.getall("at_s", []), form.getall("text", []), strict=False)
    ]
    new = str(form.get("new_text", "")).strip()
    if new:
        out.append({"at_s": clock_s, "text": new})
    return out


@protected(Action.case_view)
async def minutes_save(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    as_json = request.content_type == "application/json"
    try:
        if as_json:
            data = SaveForm.model_validate(await request.json())
        else:
            form = await request.post()
            v = await _view(request, session_id, audit_read=False)
            clock_s = int((utcnow() - v.started_at).total_seconds()) if v.started_at else 0
            data = SaveForm(
                version=int(str(form.get("version", "0")) or 0),
                paragraphs=_form_paragraphs(form, max(0, clock_s)),
            )
        async with request.app[keys.db].begin() as session:
            version = await minutes.save(
                session,
                staff=staff,
                session_id=session_id,
                base_version=data.version,
                paragraphs=data.paragraphs,
                now=utcnow(),
                ip=client_ip(request),
            )
    except (ValidationError, ValueError):
        if as_json:
            return web.json_response(
                {"error": "invalid_input", "message_zh": "笔录内容有误"}, status=422
            )
        return await _render(request, session_id, error="笔录内容有误", status=422)
    except AppError as e:
        if as_json:
            return web.json_response(
                {"error": e.code, "message_zh": e.message_zh}, status=e.http_status
            )
        return await _render(request, session_id, error=e.message_zh, status=e.http_status)
    if as_json:
        return web.json_response({"version": version, "saved_at": utcnow().isoformat()})
    raise web.HTTPSeeOther(_url(session_id, "saved"))


@protected(Action.case_view)
async def minutes_freeze(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    form = await request.post()
    try:
        version = int(str(form.get("version", "-1")) or -1)
    except ValueError:
        return await _render(request, session_id, error="页面已过期，请刷新", status=422)
    return await _write_then_back(
        request,
        session_id,
        "frozen",
        lambda session: minutes.freeze(
            session, staff=staff, session_id=session_id, version=version, now=utcnow()
        ),
    )


@protected(Action.case_view)
async def minutes_link(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    form = await request.post()
    values = {k: str(form.get(k, "")).strip() for k in ("participant", "phone")}
    try:
        data = LinkForm.model_validate(values)
    except ValidationError:
        errors = {f"phone-{values['participant']}": "请输入11位手机号码"}
        return await _render(request, session_id, errors=errors, values=values, status=422)
    settings = request.app[keys.settings]
    return await _write_then_back(
        request,
        session_id,
        "link",
        lambda session: minutes.send_link(
            session,
            staff=staff,
            session_id=session_id,
            participant_id=data.participant,
            phone=data.phone,
            secret=settings.secret_bytes(),
            pii=request.app[keys.pii],
            base_url=settings.effective_public_url,
            now=utcnow(),
            tz=settings.timezone,
        ),
    )


@protected(Action.case_view)
async def minutes_device(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    form = await request.post()
    values = {k: str(form.get(k, "")).strip() for k in ("participant", "name")}
    try:
        data = DeviceForm.model_validate({**values, "present": form.get("present") == "yes"})
        if not data.present:
            raise ValueError("not present")
    except (ValidationError, ValueError):
        errors = {f"name-{values['participant']}": "请当事人本人在场，勾选确认并输入完整姓名"}
        return await _render(request, session_id, errors=errors, values=values, status=422)
    return await _write_then_back(
        request,
        session_id,
        "confirmed",
        lambda session: minutes.confirm_on_device(
            session,
            staff=staff,
            session_id=session_id,
            participant_id=data.participant,
            typed_name=data.name,
            now=utcnow(),
            ip=client_ip(request),
        ),
        field_errors={f"name-{values['participant']}": "姓名与参会当事人不符，请输入完整姓名"},
        values=values,
    )


@protected(Action.case_view)
async def minutes_close(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    settings = request.app[keys.settings]
    v = await _view(request, session_id, audit_read=False)
    if v.status != "frozen":
        e = minutes.MinutesNotFrozen("not frozen")
        return await _render(request, session_id, error=e.message_zh, status=e.http_status)
    pdf = await asyncio.to_thread(minutes.render_pdf, v, tz=settings.timezone)
    return await _write_then_back(
        request,
        session_id,
        "closed",
        lambda session: minutes.close(
            session, staff=staff, session_id=session_id, pdf=pdf, now=utcnow()
        ),
    )


@protected(Action.case_view)
async def minutes_pdf(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        may_read, in_clear = await _reader(session, staff, session_id)
        data = await minutes.pdf_for(
            session,
            staff=staff,
            session_id=session_id,
            may_read=may_read,
            names_in_clear=in_clear,
            ip=client_ip(request),
        )
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="minutes-{session_id}.pdf"'},
    )


@public("a party's own confirmation link is the credential")
async def party_minutes_page(request: web.Request) -> web.Response:
    """A party's own link (phone first, 390 px): the frozen text, and 确认无误."""
    token = request.match_info["token"]
    secret = request.app[keys.settings].secret_bytes()
    error = field_error = ""
    confirmed_now = False
    if request.method == "POST":
        form = await request.post()
        if form.get("agreed") != "yes":
            field_error = "请先阅读笔录，并勾选“我已阅读，内容属实”"
        else:
            try:
                async with request.app[keys.db].begin() as session:
                    await minutes.confirm_with_link(
                        session, token=token, secret=secret, now=utcnow(), ip=client_ip(request)
                    )
                confirmed_now = True
            except AppError as e:
                error = e.message_zh
    view: minutes.LinkView | None = None
    try:
        async with request.app[keys.db].begin() as session:
            view = await minutes.link_view(
                session, token=token, secret=secret, now=utcnow(), ip=client_ip(request)
            )
    except AppError as e:
        error = error or e.message_zh
    status = 200 if view is not None else 404
    if field_error:
        status = 422
    return page(
        request,
        "sessions/minutes_party.html",
        {
            "v": view,
            "error": error,
            "field_error": field_error,
            "confirmed_now": confirmed_now,
        },
        status=status,
    )


def setup(app: web.Application) -> None:
    sid = r"/sessions/{session_id:\d+}"
    app.router.add_get(sid + "/minutes", minutes_page, name="session_minutes")
    app.router.add_post(sid + "/minutes", minutes_save)
    app.router.add_post(sid + "/minutes/freeze", minutes_freeze)
    app.router.add_post(sid + "/minutes/link", minutes_link)
    app.router.add_post(sid + "/minutes/device", minutes_device)
    app.router.add_post(sid + "/minutes/close", minutes_close)
    app.router.add_get(sid + "/minutes.pdf", minutes_pdf)
    app.router.add_route("GET", "/minutes/{token}", party_minutes_page, name="party_minutes")
    app.router.add_route("POST", "/minutes/{token}", party_minutes_page)
