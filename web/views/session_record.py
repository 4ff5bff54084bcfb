"""The session record page (/sessions/{id}/record): one reception or mediation with its
participants, consent answers, recordings, outcome and chat transcript. Visibility and audit
are the sessions service's (server.sessions.record), which follows the case's rule.

For the mediation's mediator or host the page carries the outcome form (POST
/sessions/{id}/outcome): agreement (an agreement of the case, or one drafted here), no
agreement, withdrawn, adjourned; written through server.sessions.outcomes."""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from server.auth.permissions import Action
from server.cases.schemas import AgreementDraft
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.db import utcnow
from server.kernel.errors import AppError
from server.sessions import outcomes
from server.sessions.record import record
from server.sessions.schemas import SessionOutcome
from web.render import page


async def _render(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        s = await record(session, session_id=session_id, viewer=staff, ip=client_ip(request))
        form = await outcomes.outcome_choices(session, session_id=session_id, viewer=staff)
    return page(
        request,
        "sessions/record.html",
        {
            "s": s,
            "form": form,
            "errors": errors or {},
            "values": values or {},
            "saved": request.query.get("outcome") == "1",
        },
        status=status,
    )


@protected(Action.case_view)
async def session_record_page(request: web.Request) -> web.Response:
    return await _render(request)


def _draft(values: dict[str, Any], parties: tuple[tuple[str, str], ...]) -> AgreementDraft:
    return AgreementDraft.model_validate(
        {
            "parties": [
                {"name": name, "role": side if side in ("applicant", "respondent") else "applicant"}
                for name, side in parties
            ],
            "facts": str(values.get("facts", "")).strip(),
            "terms": [
                {
                    "term": str(values.get("term", "")).strip(),
                    "how": str(values.get("how", "")).strip(),
                    "by": date.fromisoformat(str(values.get("by", ""))),
                }
            ],
        }
    )


@protected(Action.case_view)
async def record_outcome(request: web.Request) -> web.Response:
    """POST: the mediation's outcome; "agreement" takes `agreement_id`, or `agreement_id=new`
    with facts, one term, how and by when (the session's parties sign it later)."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    values = dict(await request.post())
    errors: dict[str, str] = {}
    try:
        outcome = SessionOutcome(str(values.get("outcome", "")))
    except ValueError:
        errors["outcome"] = "请选择调解结果"
        return await _render(request, errors=errors, values=values, status=422)
    chosen = str(values.get("agreement_id", ""))
    draft = None
    agreement_id = int(chosen) if chosen.isdigit() else None
    async with request.app[keys.db].begin() as session:
        form = await outcomes.outcome_choices(session, session_id=session_id, viewer=staff)
    if outcome == SessionOutcome.agreement and chosen == "new":
        if len(form.parties) < 2:
            errors["agreement_id"] = "起草协议需要至少两方当事人，请在案件中起草后再选择。"
        else:
            try:
                draft = _draft(values, form.parties)
            except (ValidationError, ValueError):
                errors["facts"] = "请填写纠纷事实（至少4个字）、协议内容、履行方式和履行期限。"
    if not errors:
        try:
            async with request.app[keys.db].begin() as session:
                await outcomes.record_mediation_outcome(
                    session,
                    session_id=session_id,
                    viewer=staff,
                    outcome=outcome,
                    now=utcnow(),
                    agreement_id=agreement_id,
                    draft=draft,
                )
            raise web.HTTPSeeOther(f"/sessions/{session_id}/record?outcome=1")
        except AppError as e:
            field = e.details.get("field")
            errors[field if field in ("agreement_id", "outcome") else "outcome"] = e.message_zh
    return await _render(request, errors=errors, values=values, status=422)


def setup(app: web.Application) -> None:
    app.router.add_get(
        r"/sessions/{session_id:\d+}/record", session_record_page, name="session_record"
    )
    app.router.add_post(
        r"/sessions/{session_id:\d+}/outcome", record_outcome, name="session_outcome"
    )
