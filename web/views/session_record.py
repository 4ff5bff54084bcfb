"""The session record page (/sessions/{id}/record): one reception or mediation with its
participants, consent answers, recordings, outcome and chat transcript. Visibility and audit
are the sessions service's (server.sessions.record), which follows the case's rule.

For the mediation's mediator or host the page carries the outcome form (POST
/sessions/{id}/outcome): agreement (an agreement of the case, or one drafted here), no
agreement, withdrawn, adjourned; written through server.sessions.outcomes.

The evidence package (POST /sessions/{id}/evidence with a reason): for those who may play the
session's recordings (the same rule as playback), every download audited
(`session.evidence_download`); the ZIP is written to a temporary file and streamed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from datetime import date
from pathlib import Path
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
from server.sessions import recordings as playback
from server.sessions.evidence.package import write_package
from server.sessions.evidence.service import EvidenceContext, PackagePlan, plan_download
from server.sessions.record import record
from server.sessions.schemas import SessionOutcome
from web.render import page

_CHUNK = 1 << 20


async def _render(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    reason: str = "",
    error: str = "",
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
            "reason_max": playback.REASON_MAX,
            "evidence_reason": reason,
            "evidence_error": error,
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


def _write(plan: PackagePlan) -> Path:
    fd, name = tempfile.mkstemp(prefix="evidence-", suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as fh:
            write_package(fh, plan)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


@protected(Action.session_join)
async def evidence_download(request: web.Request) -> web.StreamResponse:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    form = await request.post()
    raw = form.get("reason")
    reason = playback.clean_reason(raw if isinstance(raw, str) else "")
    ctx = EvidenceContext.from_settings(request.app[keys.settings])
    if len(reason) < 2:
        # The access rule first: a reader who may not download gets 403/404, not the form.
        async with request.app[keys.db].begin() as session:
            await playback.load_session(session, staff=staff, session_id=session_id)
        return await _render(request, reason=reason, error="reason", status=422)
    plan = await plan_download(
        request.app[keys.db],
        staff=staff,
        session_id=session_id,
        reason=reason,
        ctx=ctx,
        now=utcnow(),
        ip=client_ip(request),
    )
    path = await asyncio.to_thread(_write, plan)
    try:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="evidence-session-{session_id}.zip"',
                "Content-Length": str(path.stat().st_size),
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await resp.prepare(request)
        with path.open("rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, _CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def setup(app: web.Application) -> None:
    app.router.add_get(
        r"/sessions/{session_id:\d+}/record", session_record_page, name="session_record"
    )
    app.router.add_post(
        r"/sessions/{session_id:\d+}/outcome", record_outcome, name="session_outcome"
    )
    app.router.add_post(
        r"/sessions/{session_id:\d+}/evidence", evidence_download, name="session_evidence"
    )
