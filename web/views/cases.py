"""Case pages: list and search, the case file, the assessment dashboard, and the petitioner's
public evaluation form. Thin: they call server.cases services and render."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from server.auth.permissions import Action
from server.cases import agreements, evaluation, queries
from server.cases.schemas import RATING_LABELS, EvaluationSubmit
from server.http import keys
from server.http.auth import client_ip, protected, public, signed_in_staff
from server.http.common import path_int
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
    """调解协议书: the text, every signature (drawn ones as SVG), and, for the mediator while
    it is a draft, the signing form with the signature pad (web/static/agreement.js)."""
    staff = signed_in_staff(request)
    agreement_id = path_int(request, "agreement_id")
    async with request.app[keys.db].begin() as session:
        view = await agreements.view_agreement(
            session, staff=staff, agreement_id=agreement_id, ip=client_ip(request)
        )
        case_no = await queries.case_number(session, case_id=view.case_id)
    signers = []
    for key in view.missing_signers:
        if key == "mediator":
            if staff.staff_id != view.mediator_id:
                continue  # only the agreement's own mediator signs as mediator
            signers.append({"key": key, "role": "调解员", "name": staff.display_name})
        else:
            party = view.parties[int(key.split(":")[1])]
            signers.append(
                {
                    "key": key,
                    "role": PARTY_ROLES.get(party["role"], "当事人"),
                    "name": party["name"],
                }
            )
    return page(
        request,
        "cases/agreement.html",
        {
            "a": view,
            "case_no": case_no,
            "roles": PARTY_ROLES,
            "signers": signers,
            "can_sign": view.status == "draft" and staff.can(Action.agreement_manage),
            "width": agreements.SIGNATURE_WIDTH,
            "height": agreements.SIGNATURE_HEIGHT,
        },
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


@protected(Action.case_assess)
async def dashboard_page(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    by = request.query.get("by", "department")
    if by not in ("staff", "department", "site"):
        by = "department"
    async with request.app[keys.db].begin() as session:
        board = await evaluation.dashboard(session, staff=staff, by=by)  # type: ignore[arg-type]
    charts = [
        (title, bars(board.rows, attr))
        for title, attr in (
            ("满意率", "satisfaction_rate"),
            ("按期办结率", "on_time_rate"),
            ("逾期率", "overdue_rate"),
        )
    ]
    return page(
        request,
        "cases/dashboard.html",
        {"board": board, "charts": charts, "bar_max": BAR_MAX_PX, "by": by},
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


def setup(app: web.Application) -> None:
    case_list.setup(app)  # /cases, /cases/export.csv, /cases/board
    app.router.add_get("/cases/dashboard", dashboard_page, name="cases_dashboard")
    app.router.add_get(r"/cases/{case_id:\d+}", case_page, name="case")
    app.router.add_get(r"/agreements/{agreement_id:\d+}", agreement_page, name="agreement")
    app.router.add_route("GET", "/evaluate/{token}", evaluate_form, name="evaluate")
    app.router.add_route("POST", "/evaluate/{token}", evaluate_form)
