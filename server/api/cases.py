"""REST API for case files under /api/cases (JSON in and out; pydantic models at the edge).

Public (no sign-in): POST /api/public/petitions (kiosk/qr/web intake), POST
/api/evaluations/{token}, GET /api/public/reports/{id}. Everything else needs a staff session and
is checked against the permission table and the case's scope. See docs/cases.md.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from server.auth.permissions import Action
from server.cases import (
    access,
    agreements,
    case_deadlines,
    escalation,
    evaluation,
    exchange,
    intake,
    lifecycle,
    queries,
    sign_off,
)
from server.cases.schemas import (
    MAX_REPRESENTATIVES,
    AgreementDraft,
    AgreementView,
    CaseDetail,
    CaseListItem,
    CaseQuery,
    Dashboard,
    DeadlineView,
    EvaluationSubmit,
    ExtensionRequest,
    HandlerRequest,
    IntakeRequest,
    IntakeResult,
    LinkSignRequest,
    PartySigned,
    PartySignView,
    PauseRequest,
    SignLinkRequest,
    SignLinkSent,
    SignRequest,
    SupervisionRequest,
    TimelineEvent,
    TransitionRequest,
)
from server.dispatch import service as dispatch
from server.http import doc_models, keys
from server.http.auth import client_ip, protected, public, signed_in_staff
from server.http.case_context import deadline_clock, reply_notice
from server.http.common import json_response as _json
from server.http.common import path_int as _int
from server.http.common import query_id
from server.http.common import read_body as _body
from server.http.openapi import document_table
from server.kernel.clock import EdgeInstant
from server.kernel.db import utcnow
from server.kernel.errors import InvalidInput
from server.kernel.ids import DbId

routes = web.RouteTableDef()


class CaseList(BaseModel):
    """A page of cases, newest first; pass `next_before_id` as `before_id` for the next."""

    items: list[CaseListItem]
    next_before_id: int | None


class ImportRequest(BaseModel):
    """A batch of cases from the provincial platform (see docs/cases.md, exchange format)."""

    model_config = ConfigDict(extra="forbid")
    cases: list[exchange.ImportCase]


def _tz(request: web.Request) -> str:
    return request.app[keys.settings].timezone


def _intake_context(request: web.Request) -> dict[str, Any]:
    """Validation context for intake bodies: the deployment's limit on representatives."""
    limit = request.app[keys.settings].collective_max_representatives
    return {MAX_REPRESENTATIVES: limit}


def _since_until(request: web.Request) -> tuple[datetime, datetime]:
    try:
        until = (
            datetime.fromisoformat(request.query["until"]) if "until" in request.query else utcnow()
        )
        since = (
            datetime.fromisoformat(request.query["since"])
            if "since" in request.query
            else until - timedelta(days=30)
        )
    except ValueError:
        raise InvalidInput("since/until must be ISO 8601 times") from None
    return (
        since if since.tzinfo else since.replace(tzinfo=UTC),
        until if until.tzinfo else until.replace(tzinfo=UTC),
    )


# --- intake and queries --------------------------------------------------------------------


@routes.get("/api/cases")
@protected(Action.case_view)
async def list_cases(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    query = CaseQuery.model_validate(dict(request.query))
    async with request.app[keys.db].begin() as session:
        items = await queries.list_cases(session, staff=staff, query=query)
    return _json(
        CaseList(items=items, next_before_id=items[-1].id if len(items) == query.limit else None)
    )


@routes.post("/api/cases")
@protected(Action.case_create)
async def create_case(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, IntakeRequest, context=_intake_context(request))
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        result = await intake.intake(
            session,
            pii=request.app[keys.pii],
            staff=staff,
            request=body,
            now=utcnow(),
            deadlines=deadline_clock(request),
            case_no_format=settings.case_no_format,
            ip=client_ip(request),
            max_representatives=settings.collective_max_representatives,
        )
    return _json(result, status=201)


@routes.post("/api/public/petitions")
@public("online petition (网上信访) by residents without accounts")
async def public_petition(request: web.Request) -> web.Response:
    body = await _body(request, IntakeRequest, context=_intake_context(request))
    if body.channel not in intake.SELF_SERVICE:
        raise InvalidInput("the public form takes kiosk, qr and web petitions", field="channel")
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        result = await intake.intake(
            session,
            pii=request.app[keys.pii],
            staff=None,
            request=body,
            now=utcnow(),
            deadlines=deadline_clock(request),
            case_no_format=settings.case_no_format,
            ip=client_ip(request),
            max_representatives=settings.collective_max_representatives,
        )
    # The petitioner learns the number only (no internal links or repeat details).
    return _json({"case_no": result.case.case_no, "state": result.case.state}, status=201)


@routes.get("/api/cases/dashboard")
@protected(Action.case_assess)
async def get_dashboard(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    by = request.query.get("by", "department")
    if by not in ("staff", "department", "site"):
        raise InvalidInput("by must be staff, department or site", field="by")
    since, until = _since_until(request)
    async with request.app[keys.db].begin() as session:
        board = await evaluation.dashboard(
            session, staff=staff, by=cast(evaluation.By, by), since=since, until=until
        )
    return _json(board)


@routes.get("/api/cases/export")
@protected(Action.case_exchange)
async def export_cases(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    since, until = _since_until(request)
    async with request.app[keys.db].begin() as session:
        data = await exchange.export_cases(
            session, staff=staff, since=since, until=until, now=utcnow()
        )
    return _json(data)


@routes.post("/api/cases/import")
@protected(Action.case_exchange)
async def import_cases(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    items = (await _body(request, ImportRequest, context=_intake_context(request))).cases
    atomic = request.query.get("atomic", "false").lower() in ("1", "true", "yes")
    async with request.app[keys.db].begin() as session:
        result = await exchange.import_cases(
            session,
            staff=staff,
            pii=request.app[keys.pii],
            cases=items,
            now=utcnow(),
            deadlines=deadline_clock(request),
            atomic=atomic,
            max_representatives=request.app[keys.settings].collective_max_representatives,
        )
    return _json(result)


@routes.get(r"/api/cases/{case_id:\d+}")
@protected(Action.case_view)
async def get_case(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        detail = await queries.case_detail(
            session,
            staff=staff,
            case_id=_int(request, "case_id"),
            ip=client_ip(request),
            pii=request.app[keys.pii],
        )
    return _json(detail)


@routes.get(r"/api/cases/{case_id:\d+}/timeline")
@protected(Action.case_view)
async def get_timeline(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        events = await queries.timeline(session, staff=staff, case_id=_int(request, "case_id"))
    return _json([e.model_dump(mode="json") for e in events])


@routes.post(r"/api/cases/{case_id:\d+}/transitions")
@protected(Action.case_view)
async def post_transition(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, TransitionRequest)
    async with request.app[keys.db].begin() as session:
        if body.transition in sign_off.DRAFT_EVENTS:  # 签发: a handler's reply is a draft
            await sign_off.reply_or_draft(
                session,
                staff=staff,
                case_id=_int(request, "case_id"),
                request=body,
                now=utcnow(),
                deadlines=deadline_clock(request),
                ip=client_ip(request),
                reply_notice=reply_notice(request),
                require_sign_off=request.app[keys.settings].reply_sign_off,
            )
            detail = await queries.case_detail(
                session, staff=staff, case_id=_int(request, "case_id"), audit_view=False
            )
            return _json(detail)
        detail = await lifecycle.transition(
            session,
            staff=staff,
            case_id=_int(request, "case_id"),
            request=body,
            now=utcnow(),
            deadlines=deadline_clock(request),
            ip=client_ip(request),
            reply_notice=reply_notice(request),
        )
    return _json(detail)


class ReturnDraftBody(BaseModel):
    note: str = Field(min_length=1, max_length=2000)


@routes.post(r"/api/cases/{case_id:\d+}/sign-off")
@protected(Action.case_view)
async def post_sign_off(request: web.Request) -> web.Response:
    """签发: the lead department's leader signs the pending reply or refusal drafted by a
    handler; the transition happens now in the leader's name (409 `no_pending_draft` if it was
    signed or returned meanwhile, 403 for anyone but that leader)."""
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        detail = await sign_off.sign(
            session,
            staff=staff,
            case_id=_int(request, "case_id"),
            now=utcnow(),
            deadlines=deadline_clock(request),
            ip=client_ip(request),
            reply_notice=reply_notice(request),
        )
    return _json(detail)


@routes.post(r"/api/cases/{case_id:\d+}/sign-off/return")
@protected(Action.case_view)
async def post_return_draft(request: web.Request) -> web.Response:
    """退回修改: the leader returns the pending draft to its author with a note."""
    staff = signed_in_staff(request)
    body = await _body(request, ReturnDraftBody)
    case_id = _int(request, "case_id")
    async with request.app[keys.db].begin() as session:
        await sign_off.return_draft(
            session, staff=staff, case_id=case_id, note=body.note, now=utcnow(),
            ip=client_ip(request),
        )  # fmt: skip
        detail = await queries.case_detail(session, staff=staff, case_id=case_id, audit_view=False)
    return _json(detail)


@routes.post(r"/api/cases/{case_id:\d+}/claim")
@protected(Action.case_create)
async def post_claim(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        summary = await lifecycle.claim(
            session, staff=staff, case_id=_int(request, "case_id"), now=utcnow()
        )
    return _json(summary)


class ReviewRequestBody(BaseModel):
    reason: str


@routes.post(r"/api/cases/{case_id:\d+}/review")
@protected(Action.case_view)
async def post_review(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, ReviewRequestBody)
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        child = await lifecycle.request_review(
            session,
            staff=staff,
            case_id=_int(request, "case_id"),
            reason=body.reason,
            now=utcnow(),
            deadlines=deadline_clock(request),
            case_no_format=settings.case_no_format,
        )
    return _json(child, status=201)


@routes.post(r"/api/cases/{case_id:\d+}/handlers")
@protected(Action.case_assign)
async def post_handler(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, HandlerRequest)
    async with request.app[keys.db].begin() as session:
        view = await lifecycle.add_handler(
            session, staff=staff, case_id=_int(request, "case_id"), request=body, now=utcnow()
        )
    return _json(view, status=201)


@routes.post(r"/api/cases/{case_id:\d+}/supervision")
@protected(Action.case_supervise)
async def post_supervision(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, SupervisionRequest)
    async with request.app[keys.db].begin() as session:
        esc_id = await lifecycle.supervise(
            session, staff=staff, case_id=_int(request, "case_id"), request=body, now=utcnow()
        )
    return _json({"id": esc_id}, status=201)


# --- deadlines -----------------------------------------------------------------------------


@routes.get(r"/api/cases/{case_id:\d+}/deadlines")
@protected(Action.case_view)
async def get_deadlines(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        detail = await queries.case_detail(
            session,
            staff=staff,
            case_id=_int(request, "case_id"),
            ip=client_ip(request),
            audit_view=False,
        )
    return _json([d.model_dump(mode="json") for d in detail.deadlines])


@routes.post(r"/api/cases/{case_id:\d+}/deadlines/extension")
@protected(Action.case_extend_approve)
async def post_extension(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, ExtensionRequest)
    case_id = _int(request, "case_id")
    async with request.app[keys.db].begin() as session:
        row = await case_deadlines.extend(
            session,
            staff=staff,
            case_id=case_id,
            kind=body.kind,
            days=body.days,
            reason=body.reason,
            now=utcnow(),
            deadlines=deadline_clock(request),
            pii=request.app[keys.pii],
        )
        return _json(
            {
                "kind": row.kind,
                "due_at": row.due_at.isoformat(),
                "extension_days": row.extension_days,
            }
        )


@routes.post(r"/api/cases/{case_id:\d+}/deadlines/{action:pause|resume}")
@protected(Action.case_view)
async def post_pause(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, PauseRequest)
    case_id = _int(request, "case_id")
    async with request.app[keys.db].begin() as session:
        if request.match_info["action"] == "pause":
            row = await case_deadlines.pause(
                session,
                staff=staff,
                case_id=case_id,
                kind=body.kind,
                reason=body.reason,
                now=utcnow(),
            )
        else:
            row = await case_deadlines.resume(
                session,
                staff=staff,
                case_id=case_id,
                kind=body.kind,
                now=utcnow(),
                deadlines=deadline_clock(request),
            )
        return _json({"kind": row.kind, "status": row.status, "due_at": row.due_at.isoformat()})


# --- evaluations and reports ---------------------------------------------------------------


@routes.post("/api/evaluations/{token}")
@public("the petitioner's single-use evaluation link is the credential")
async def post_evaluation(request: web.Request) -> web.Response:
    body = await _body(request, EvaluationSubmit)
    async with request.app[keys.db].begin() as session:
        await evaluation.submit_evaluation(
            session,
            secret=request.app[keys.settings].secret_bytes(),
            token=request.match_info["token"],
            submit=body,
            now=utcnow(),
            ip=client_ip(request),
        )
    return _json({"ok": True, "message_zh": "感谢您的评价"})


@routes.post("/api/cases/reports")
@protected(Action.report_publish)
async def post_report(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    since, until = _since_until(request)
    async with request.app[keys.db].begin() as session:
        report_id = await evaluation.draft_publication_report(
            session, staff=staff, since=since, until=until, now=utcnow()
        )
    return _json({"id": report_id, "status": "draft"}, status=201)


@routes.post(r"/api/cases/reports/{report_id:\d+}/approve")
@protected(Action.report_publish)
async def approve_report(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        await evaluation.approve_publication_report(
            session, staff=staff, report_id=_int(request, "report_id"), now=utcnow()
        )
    return _json({"id": _int(request, "report_id"), "status": "approved"})


@routes.get(r"/api/public/reports/{report_id:\d+}")
@public("approved publication reports are public by design")
async def public_report(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        return _json(
            await evaluation.published_report(session, report_id=_int(request, "report_id"))
        )


# --- agreements ----------------------------------------------------------------------------


@routes.post(r"/api/cases/{case_id:\d+}/agreements")
@protected(Action.agreement_manage)
async def post_agreement(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, AgreementDraft)
    async with request.app[keys.db].begin() as session:
        view = await agreements.draft_agreement(
            session, staff=staff, case_id=_int(request, "case_id"), draft=body, now=utcnow()
        )
    return _json(view, status=201)


@routes.get(r"/api/agreements/{agreement_id:\d+}")
@protected(Action.case_view)
async def get_agreement(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        return _json(
            await agreements.view_agreement(
                session,
                staff=staff,
                agreement_id=_int(request, "agreement_id"),
                ip=client_ip(request),
            )
        )


@routes.post(r"/api/agreements/{agreement_id:\d+}/signatures")
@protected(Action.agreement_manage)
async def post_signature(request: web.Request) -> web.Response:
    """A signature on the mediator's device: the mediator's own, or a party's with how the
    party was identified (`identification`, `id_last4`)."""
    staff = signed_in_staff(request)
    body = await _body(request, SignRequest)
    async with request.app[keys.db].begin() as session:
        view = await agreements.sign_agreement(
            session,
            agreement_id=_int(request, "agreement_id"),
            request=body,
            staff=staff,
            now=utcnow(),
            deadlines=deadline_clock(request),
            ip=client_ip(request),
        )
    return _json(view)


@routes.post(r"/api/agreements/{agreement_id:\d+}/parties/{party:\d{1,2}}/sign-link")
@protected(Action.agreement_manage)
async def post_sign_link(request: web.Request) -> web.Response:
    """发送签署链接: SMS one party their own signing link (the agreement's mediator)."""
    staff = signed_in_staff(request)
    body = await _body(request, SignLinkRequest)
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        sent = await agreements.send_sign_link(
            session,
            staff=staff,
            agreement_id=_int(request, "agreement_id"),
            party_index=int(request.match_info["party"]),
            phone=body.phone,
            secret=settings.secret_bytes(),
            pii=request.app[keys.pii],
            base_url=settings.effective_public_url,
            now=utcnow(),
            tz=_tz(request),
        )
    return _json(sent, status=201)


@routes.get("/api/public/agreements/sign/{token}")
@public("a party's own signing link is the credential")
async def get_party_sign(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        view = await agreements.party_sign_view(
            session,
            token=request.match_info["token"],
            secret=request.app[keys.settings].secret_bytes(),
            now=utcnow(),
            ip=client_ip(request),
        )
    return _json(view)


@routes.post("/api/public/agreements/sign/{token}")
@public("a party's own signing link is the credential")
async def post_party_sign(request: web.Request) -> web.Response:
    body = await _body(request, LinkSignRequest)
    async with request.app[keys.db].begin() as session:
        signed = await agreements.sign_with_link(
            session,
            token=request.match_info["token"],
            secret=request.app[keys.settings].secret_bytes(),
            request=body,
            now=utcnow(),
            deadlines=deadline_clock(request),
            ip=client_ip(request),
        )
    return _json(signed)


class JudicialBody(BaseModel):
    requested_at: EdgeInstant
    result: Literal["confirmed", "rejected"] | None = None
    #: 受理法院 and the ruling's number (裁定书/确认书文号), once known
    court: str | None = Field(default=None, max_length=100)
    ruling_no: str | None = Field(default=None, max_length=64)


@routes.post(r"/api/agreements/{agreement_id:\d+}/judicial")
@protected(Action.agreement_judicial)
async def post_judicial(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, JudicialBody)
    async with request.app[keys.db].begin() as session:
        view = await agreements.record_judicial_confirmation(
            session,
            staff=staff,
            agreement_id=_int(request, "agreement_id"),
            requested_at=body.requested_at,
            result=body.result,
            court=body.court,
            ruling_no=body.ruling_no,
            now=utcnow(),
        )
    return _json(view)


@routes.get(r"/api/agreements/{agreement_id:\d+}/pdf")
@protected(Action.case_view)
async def get_agreement_pdf(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        view = await agreements.view_agreement(
            session,
            staff=staff,
            agreement_id=_int(request, "agreement_id"),
            ip=client_ip(request),
            action="agreement.export_pdf",
        )
        case_no = await queries.case_number(session, case_id=view.case_id)
    pdf = await asyncio.to_thread(agreements.agreement_pdf, view, case_no=case_no, tz=_tz(request))
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="agreement-{view.id}.pdf"'},
    )


# --- 三级抄告 contact lists ---------------------------------------------------------------


@routes.get("/api/escalation-contacts")
@protected(Action.escalation_manage)
async def get_escalation_contacts(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    department_id = query_id(request, "department_id")
    async with request.app[keys.db].begin() as session:
        contacts = await escalation.list_contacts(session, staff=staff, department_id=department_id)
    return _json([c.model_dump(mode="json") for c in contacts])


@routes.post("/api/escalation-contacts")
@protected(Action.escalation_manage)
async def post_escalation_contact(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, escalation.ContactInput)
    async with request.app[keys.db].begin() as session:
        view = await escalation.add_contact(session, staff=staff, contact=body, now=utcnow())
    return _json(view, status=201)


@routes.delete(r"/api/escalation-contacts/{contact_id:\d+}")
@protected(Action.escalation_manage)
async def delete_escalation_contact(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    async with request.app[keys.db].begin() as session:
        await escalation.remove_contact(
            session, staff=staff, contact_id=_int(request, "contact_id"), now=utcnow()
        )
    return web.Response(status=204)


# --- dispatch and knowledge ----------------------------------------------------------------


@routes.get(r"/api/cases/{case_id:\d+}/dispatch")
@protected(Action.case_view)
async def get_dispatch(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    model = await dispatch.load_model(request.app[keys.settings].data_dir / "dispatch.pkl")
    async with request.app[keys.db].begin() as session:
        await access.check_visible(session, staff=staff, case_id=_int(request, "case_id"))
        data = await dispatch.suggest_for_case(
            session, staff=staff, case_id=_int(request, "case_id"), model=model, now=utcnow()
        )
    return _json(data)


class DispatchDecision(BaseModel):
    suggestion_id: DbId
    department_id: DbId


@routes.post(r"/api/cases/{case_id:\d+}/dispatch")
@protected(Action.case_view)
async def post_dispatch(request: web.Request) -> web.Response:
    staff = signed_in_staff(request)
    body = await _body(request, DispatchDecision)
    async with request.app[keys.db].begin() as session:
        await dispatch.record_decision(
            session,
            staff=staff,
            suggestion_id=body.suggestion_id,
            department_id=body.department_id,
            now=utcnow(),
        )
    return _json({"ok": True})


@routes.get("/api/knowledge")
@protected(Action.case_view)
async def get_knowledge(request: web.Request) -> web.Response:
    async with request.app[keys.db].begin() as session:
        return _json(await dispatch.search_knowledge(session, q=request.query.get("q", "")))


#: Request/response models for /api/openapi.json (path, method) → (request, response).
OPENAPI_MODELS: dict[tuple[str, str], tuple[type[BaseModel] | None, type[BaseModel] | None]] = {
    ("/api/cases", "post"): (IntakeRequest, IntakeResult),
    ("/api/public/petitions", "post"): (IntakeRequest, None),
    ("/api/cases/{case_id}", "get"): (None, CaseDetail),
    ("/api/cases/{case_id}/transitions", "post"): (TransitionRequest, CaseDetail),
    ("/api/cases/{case_id}/sign-off", "post"): (None, CaseDetail),
    ("/api/cases/{case_id}/sign-off/return", "post"): (ReturnDraftBody, CaseDetail),
    ("/api/cases/{case_id}/handlers", "post"): (HandlerRequest, None),
    ("/api/cases/{case_id}/supervision", "post"): (SupervisionRequest, None),
    ("/api/cases/{case_id}/deadlines/extension", "post"): (ExtensionRequest, None),
    ("/api/cases/{case_id}/deadlines/pause", "post"): (PauseRequest, None),
    ("/api/evaluations/{token}", "post"): (EvaluationSubmit, None),
    ("/api/cases/dashboard", "get"): (None, Dashboard),
    ("/api/cases/export", "get"): (None, exchange.ExchangeFile),
    ("/api/cases/import", "post"): (ImportRequest, exchange.ImportResult),
    ("/api/cases/{case_id}/agreements", "post"): (AgreementDraft, AgreementView),
    ("/api/agreements/{agreement_id}/signatures", "post"): (SignRequest, AgreementView),
    ("/api/agreements/{agreement_id}/parties/{party}/sign-link", "post"): (
        SignLinkRequest,
        SignLinkSent,
    ),
    ("/api/public/agreements/sign/{token}", "get"): (None, PartySignView),
    ("/api/public/agreements/sign/{token}", "post"): (LinkSignRequest, PartySigned),
    ("/api/escalation-contacts", "post"): (escalation.ContactInput, escalation.ContactView),
    ("/api/cases", "get"): (None, CaseList),
    ("/api/cases/{case_id}/timeline", "get"): (None, TimelineEvent),
    ("/api/cases/{case_id}/deadlines", "get"): (None, DeadlineView),
    ("/api/escalation-contacts", "get"): (None, escalation.ContactView),
    ("/api/agreements/{agreement_id}", "get"): (None, AgreementView),
    ("/api/knowledge", "get"): (None, doc_models.KnowledgeHit),
    ("/api/cases/{case_id}/dispatch", "get"): (None, doc_models.DispatchSuggestion),
    ("/api/public/reports/{report_id}", "get"): (None, doc_models.PublishedReport),
}
#: Routes answering a JSON array of their response model.
OPENAPI_LISTS = frozenset(
    {
        ("/api/cases/{case_id}/timeline", "get"),
        ("/api/cases/{case_id}/deadlines", "get"),
        ("/api/escalation-contacts", "get"),
        ("/api/knowledge", "get"),
    }
)
OPENAPI_STATUSES = {
    ("/api/cases", "post"): 201,
    ("/api/public/petitions", "post"): 201,
    ("/api/cases/{case_id}/review", "post"): 201,
    ("/api/cases/{case_id}/handlers", "post"): 201,
    ("/api/cases/{case_id}/supervision", "post"): 201,
    ("/api/cases/reports", "post"): 201,
    ("/api/cases/{case_id}/agreements", "post"): 201,
    ("/api/agreements/{agreement_id}/parties/{party}/sign-link", "post"): 201,
    ("/api/escalation-contacts", "post"): 201,
    ("/api/escalation-contacts/{contact_id}", "delete"): 204,
}


def setup(app: web.Application) -> None:
    document_table(
        routes,
        OPENAPI_MODELS,
        tag="cases",
        lists=OPENAPI_LISTS,
        statuses=OPENAPI_STATUSES,
        content_types={("/api/agreements/{agreement_id}/pdf", "get"): "application/pdf"},
        queries={("/api/cases", "get"): CaseQuery},
    )
    app.router.add_routes(routes)
