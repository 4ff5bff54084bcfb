"""Case pages: list and search, the case file, the assessment dashboard, and the petitioner's
public evaluation form. Thin: they call server.cases services and render."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from server.auth.permissions import Action
from server.cases import agreements, evaluation, queries
from server.cases.schemas import (
    RATING_LABELS,
    EvaluationSubmit,
    LinkSignRequest,
    PartySigned,
    PartySignView,
    SignLinkRequest,
)
from server.http import keys
from server.http.auth import client_ip, protected, public, signed_in_staff
from server.http.case_context import deadline_clock
from server.http.common import path_int
from server.kernel import clock
from server.kernel.db import utcnow
from server.kernel.errors import AppError
from web.render import page
from web.views import case_list
from web.views.case_file import FORM_FIELDS, FormState, render_case_page

BAR_MAX_PX = 240


@protected(Action.case_view)
async def case_page(request: web.Request) -> web.Response:
    """The case file and the forms for what the viewer may do now (web/views/case_file.py);
    `?open=<action>` opens that action's form (the supervision board's 督办 link)."""
    wanted = request.query.get("open", "")
    form = FormState(wanted) if wanted in FORM_FIELDS else None
    return await render_case_page(
        request, signed_in_staff(request), path_int(request, "case_id"), form=form
    )


PARTY_ROLES = {
    "applicant": "申请人",
    "respondent": "被申请人",
    "agent": "代理人",
    "third_party": "第三人",
}


@protected(Action.case_view)
async def agreement_page(request: web.Request) -> web.Response:
    """调解协议书: the text, every signature (drawn ones as SVG) with who signed, when and how,
    and, for the agreement's mediator while it is a draft, per party 发送签署链接 (SMS) and
    在调解员设备上签署 (the signing form with the signature pad, web/static/agreement.js, which
    records how the party present was identified)."""
    return await _render_agreement(request, path_int(request, "agreement_id"))


@protected(Action.agreement_manage)
async def send_link_action(request: web.Request) -> web.Response:
    """The 发送签署链接 form: SMS one party their own signing link; back to the page with a
    message, or the page again with the error at the party's form (422/409/403)."""
    staff = signed_in_staff(request)
    agreement_id = path_int(request, "agreement_id")
    party = int(request.match_info["party"])
    form = await request.post()
    phone = str(form.get("phone", "")).strip()
    settings = request.app[keys.settings]
    try:
        body = SignLinkRequest(phone=phone)
        async with request.app[keys.db].begin() as session:
            await agreements.send_sign_link(
                session,
                staff=staff,
                agreement_id=agreement_id,
                party_index=party,
                phone=body.phone,
                secret=settings.secret_bytes(),
                pii=request.app[keys.pii],
                base_url=settings.effective_public_url,
                now=utcnow(),
                tz=settings.timezone,
            )
    except ValidationError:
        return await _render_agreement(
            request,
            agreement_id,
            link_form={"party": party, "phone": phone, "error": "请输入正确的手机号码"},
            status=422,
        )
    except AppError as e:
        if e.http_status == 404:
            raise
        return await _render_agreement(
            request,
            agreement_id,
            link_form={"party": party, "phone": phone, "error": e.message_zh},
            status=e.http_status,
        )
    raise web.HTTPSeeOther(f"/agreements/{agreement_id}?sent={party}")


async def _render_agreement(
    request: web.Request,
    agreement_id: int,
    *,
    link_form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        view = await agreements.view_agreement(
            session, staff=staff, agreement_id=agreement_id, ip=client_ip(request)
        )
        case_no = await queries.case_number(session, case_id=view.case_id)
    is_mediator = staff.staff_id == view.mediator_id and staff.can(Action.agreement_manage)
    can_sign = view.status == "draft" and is_mediator
    by_signer = {s.signer: s for s in view.signatures}
    signers = []
    rows = []
    for i, party in enumerate(view.parties):
        key = f"party:{i}"
        role = PARTY_ROLES.get(party["role"], "当事人")
        sig = by_signer.get(key)
        rows.append(
            {
                "index": i,
                "key": key,
                "role": role,
                "name": party["name"],
                "signature": sig,
            }
        )
        if sig is None:
            signers.append({"key": key, "role": role, "name": party["name"]})
    mediator_sig = by_signer.get("mediator")
    if mediator_sig is None and can_sign:
        signers.append({"key": "mediator", "role": "调解员", "name": staff.display_name})
    sent = request.query.get("sent", "")
    sent_party = int(sent) if sent.isdigit() and int(sent) < len(view.parties) else None
    return page(
        request,
        "cases/agreement.html",
        {
            "a": view,
            "case_no": case_no,
            "roles": PARTY_ROLES,
            "rows": rows,
            "mediator_sig": mediator_sig,
            "via_labels": agreements.VIA_LABELS,
            "id_labels": agreements.ID_METHOD_LABELS,
            "signers": signers,
            "can_sign": can_sign,
            "link_form": link_form,
            "sent_party": sent_party,
            "id_methods": list(agreements.ID_METHOD_LABELS.items()),
            "width": agreements.SIGNATURE_WIDTH,
            "height": agreements.SIGNATURE_HEIGHT,
        },
        status=status,
    )


def bars(rows: list[Any], attr: str) -> list[dict[str, Any]]:
    """Server-side chart data: one horizontal bar per row (rate 0..1 → width in px)."""
    out = []
    for r in rows:
        value = getattr(r, attr)
        out.append(
            {
                "label": r.label,
                "value": value,
                "width": 0 if value is None else round(value * BAR_MAX_PX),
            }
        )
    return out


def _month_range(today: date) -> tuple[date, date]:
    """This district month: its first day to its last."""
    first = today.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip()) if raw.strip() else None
    except ValueError:
        return None


@protected(Action.case_assess)
async def dashboard_page(request: web.Request) -> web.Response:
    """双评双考 over a date range (district days, this month by default); every figure links to
    the case list filtered to the cases behind it; red cards and the score per department."""
    staff = signed_in_staff(request)
    by = request.query.get("by", "department")
    if by not in ("staff", "department", "site"):
        by = "department"
    tz = request.app[keys.settings].timezone
    default_from, default_to = _month_range(clock.local_date(utcnow(), tz))
    errors: dict[str, str] = {}
    raw_from, raw_to = request.query.get("from", ""), request.query.get("to", "")
    day_from = _day(raw_from) if raw_from else default_from
    day_to = _day(raw_to) if raw_to else default_to
    if day_from is None:
        errors["from"] = "请按“年-月-日”填写开始日期"
        day_from = default_from
    if day_to is None:
        errors["to"] = "请按“年-月-日”填写结束日期"
        day_to = default_to
    if not errors and day_from > day_to:
        errors["to"] = "结束日期不能早于开始日期"
        day_from, day_to = default_from, default_to
    zone = clock.zone(tz)
    since = datetime.combine(day_from, time(0), tzinfo=zone).astimezone(UTC)
    until = datetime.combine(day_to + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    async with request.app[keys.db].begin() as session:
        board = await evaluation.dashboard(
            session,
            staff=staff,
            by=by,  # type: ignore[arg-type]
            since=since,
            until=until,
        )
    charts = [
        (title, bars(board.rows, attr))
        for title, attr in (
            ("满意率", "satisfaction_rate"),
            ("按期办结率", "on_time_rate"),
            ("逾期率", "overdue_rate"),
        )
    ]
    range_q = {
        "assess_by": by,
        "assess_from": day_from.isoformat(),
        "assess_to": day_to.isoformat(),
    }

    def drill(kind: str, key: str) -> str:
        return "/cases?" + urlencode({"assess": kind, **range_q, "assess_key": key})

    return page(
        request,
        "cases/dashboard.html",
        {
            "board": board,
            "charts": charts,
            "bar_max": BAR_MAX_PX,
            "by": by,
            "day_from": day_from.isoformat(),
            "day_to": day_to.isoformat(),
            "errors": errors,
            "drill": drill,
            "range_q": urlencode({"from": day_from.isoformat(), "to": day_to.isoformat()}),
        },
        status=400 if errors else 200,
    )


@public("the petitioner's single-use evaluation link is the credential")
async def evaluate_form(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    error: str | None = None
    done = False
    values: dict[str, str] = {}
    secret = request.app[keys.settings].secret_bytes()
    subject: evaluation.EvaluationSubject | None = None
    with contextlib.suppress(AppError):  # an invalid link: its error is shown below
        async with request.app[keys.db]() as session:
            subject = await evaluation.evaluation_subject(
                session, secret=secret, token=token, now=utcnow()
            )
    if request.method == "POST":
        form = await request.post()
        values = {k: str(form.get(k, "")) for k in ("staff_rating", "dept_rating", "comment")}
        try:
            submit = EvaluationSubmit.model_validate(
                {**values, "comment": values["comment"] or None}
            )
            async with request.app[keys.db].begin() as session:
                await evaluation.submit_evaluation(
                    session,
                    secret=secret,
                    token=token,
                    submit=submit,
                    now=utcnow(),
                    ip=client_ip(request),
                )
            done = True
        except ValidationError:
            error = "请分别选择对承办人员和承办单位的评价"
        except AppError as e:
            error = e.message_zh
    else:
        try:
            async with request.app[keys.db].begin() as session:
                await evaluation.evaluation_for_token(
                    session, secret=secret, token=token, now=utcnow()
                )
        except AppError as e:
            error = e.message_zh
    return page(
        request,
        "cases/evaluate.html",
        {
            "token": token,
            "subject": subject,
            "error": error,
            "done": done,
            "values": values,
            "ratings": [(k, v) for k, v in RATING_LABELS.items() if k != "unrated"],
        },
        status=200 if not error or request.method == "POST" else 404,
    )


@public("a party's own signing link is the credential")
async def party_sign_page(request: web.Request) -> web.Response:
    """签署调解协议: a party's own link (phone first, 390 px). The agreement's text, the party's
    name masked, 我已阅读并同意, and their full name typed as the signature (it must be the
    party's). A bad link (forged, expired, used, the text changed since) shows why, in words."""
    token = request.match_info["token"]
    secret = request.app[keys.settings].secret_bytes()
    error: str | None = None
    field_error: dict[str, str] = {}
    signed: PartySigned | None = None
    view: PartySignView | None = None
    values: dict[str, str] = {}
    if request.method == "POST":
        form = await request.post()
        values = {"signer_name": str(form.get("signer_name", "")).strip()}
        agreed = form.get("agreed") == "yes"
        if not agreed:
            field_error["agreed"] = "请先阅读协议，并勾选“我已阅读并同意”"
        if not values["signer_name"]:
            field_error["signer_name"] = "请输入您的姓名"
        if not field_error:
            try:
                async with request.app[keys.db].begin() as session:
                    signed = await agreements.sign_with_link(
                        session,
                        token=token,
                        secret=secret,
                        request=LinkSignRequest(agreed=True, signer_name=values["signer_name"]),
                        now=utcnow(),
                        deadlines=deadline_clock(request),
                        ip=client_ip(request),
                    )
            except AppError as e:
                if e.code == "invalid_input":
                    field_error["signer_name"] = "姓名与协议中的当事人不一致，请输入您的完整姓名"
                else:
                    error = e.message_zh
    if signed is None and error is None:
        try:
            async with request.app[keys.db].begin() as session:
                view = await agreements.party_sign_view(
                    session, token=token, secret=secret, now=utcnow(), ip=client_ip(request)
                )
        except AppError as e:
            error = e.message_zh
    status = 200
    if error:
        status = 404 if request.method == "GET" else 409
    elif field_error:
        status = 422
    return page(
        request,
        "cases/sign.html",
        {
            "token": token,
            "view": view,
            "signed": signed,
            "error": error,
            "field_error": field_error,
            "values": values,
        },
        status=status,
    )


def setup(app: web.Application) -> None:
    case_list.setup(app)  # /cases, /cases/export.csv, /cases/board
    app.router.add_get("/cases/dashboard", dashboard_page, name="cases_dashboard")
    app.router.add_get(r"/cases/{case_id:\d+}", case_page, name="case")
    app.router.add_get(r"/agreements/{agreement_id:\d+}", agreement_page, name="agreement")
    app.router.add_post(
        r"/agreements/{agreement_id:\d+}/parties/{party:\d{1,2}}/sign-link", send_link_action
    )
    app.router.add_route("GET", "/evaluate/{token}", evaluate_form, name="evaluate")
    app.router.add_route("POST", "/evaluate/{token}", evaluate_form)
    app.router.add_route("GET", "/sign/{token}", party_sign_page, name="party_sign")
    app.router.add_route("POST", "/sign/{token}", party_sign_page)
