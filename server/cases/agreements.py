"""调解协议书 (people's mediation agreements, 人民调解法 §§28-33): drafted from a session with
parties, facts and terms (how and by when), signed by every party and the mediator, effective
when all have signed; the 30-day judicial-confirmation window is tracked as a deadline."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.access import visible_case
from server.cases.models import AgreementSignature, CaseEvent, MediationAgreement, PetitionCase
from server.cases.pdf import CJK_FONT_CANDIDATES as CJK_FONT_CANDIDATES
from server.cases.pdf import CjkFontMissing as CjkFontMissing
from server.cases.pdf import cjk_font as cjk_font
from server.cases.pdf import face_index as _face_index
from server.cases.pdf import paragraph as _paragraph
from server.cases.schemas import AgreementDraft, AgreementView, SignatureView, SignRequest
from server.kernel import clock
from server.kernel.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from server.kernel.signing import Signer


class AgreementLocked(Conflict):
    code, message_zh = "agreement_locked", "协议已生效，不能修改或重复签署"


class InvalidSignature(InvalidInput):
    code, message_zh = "invalid_signature", "手写签名无效，请点击“重签”后重新签名"


class AgreementChanged(Conflict):
    code, message_zh = (
        "agreement_changed",
        "协议内容在发送签署链接后已修改，此链接不能再签署，请向调解员索取新链接",
    )


#: How long a party's signing link stays valid.
SIGN_LINK_TTL = timedelta(days=3)


def agreement_content_hash(agreement: MediationAgreement) -> str:
    """SHA-256 over what a party agrees to (parties, facts, terms): a signing link is bound to it,
    so a link sent before the text changed no longer signs."""
    body = json.dumps(
        {"parties": agreement.parties, "facts": agreement.facts, "terms": agreement.terms},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def party_sign_token(
    agreement: MediationAgreement, *, party_index: int, secret: bytes, now: datetime
) -> str:
    """A signed, expiring link token for one party of one agreement, bound to its content."""
    if not 0 <= party_index < len(agreement.parties):
        raise InvalidInput(f"party {party_index} is not a party of this agreement", field="signer")
    return Signer(secret).sign(
        "agreement_sign",
        {"a": agreement.id, "p": party_index, "h": agreement_content_hash(agreement)[:32]},
        expires_at=now + SIGN_LINK_TTL,
    )


async def verify_party_sign_token(
    session: AsyncSession, *, token: str | None, secret: bytes, now: datetime
) -> tuple[MediationAgreement, str]:
    """The agreement and signer key (`party:N`) a link token names.

    Raises SignatureInvalid / SignatureExpired (bad or old link), NotFound (agreement gone),
    AgreementChanged (the text changed after the link was made), AgreementLocked (effective).
    """
    claims = Signer(secret).verify("agreement_sign", token, now=now)
    try:
        agreement_id, index, digest = int(claims["a"]), int(claims["p"]), str(claims["h"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("the signing link lacks its claims", field="token") from None
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if not 0 <= index < len(a.parties) or agreement_content_hash(a)[:32] != digest:
        raise AgreementChanged("the agreement changed after the link was made")
    if a.status != "draft":
        raise AgreementLocked("the agreement is already effective")
    return a, f"party:{index}"


#: The drawing area of a signature, in path units (the pad scales to it; pages draw the path
#: in an <svg viewBox="0 0 SIGNATURE_WIDTH SIGNATURE_HEIGHT">).
SIGNATURE_WIDTH = 600
SIGNATURE_HEIGHT = 200
SIGNATURE_MAX_POINTS = 2000
SIGNATURE_MAX_STROKES = 60
_NUM = r"\d{1,3}(?:\.\d)?"
_PATH_RE = re.compile(rf"(?:\s*[ML]\s*{_NUM}[\s,]+{_NUM})+\s*")
_POINT_RE = re.compile(rf"([ML])\s*({_NUM})[\s,]+({_NUM})")


def check_signature_path(data: str) -> int:
    """Validate a drawn signature: only absolute `M x y` / `L x y` commands, every stroke an
    `M` followed by at least one `L`, coordinates inside the signature area with at most one
    decimal, and bounded size. Returns the number of points; raises InvalidSignature.

    Strict on purpose: the path is drawn into every copy of the agreement (page and PDF), so
    anything else an SVG path can say (arcs, curves, relative moves, huge numbers) is refused.
    """
    if len(data) > 20000 or not _PATH_RE.fullmatch(data):
        raise InvalidSignature(
            "a drawn signature is an SVG path of absolute M/L commands only", field="data"
        )
    points = _POINT_RE.findall(data)
    if points[0][0] != "M":
        raise InvalidSignature("a drawn signature starts with M", field="data")
    strokes = 0
    for i, (cmd, x, y) in enumerate(points):
        if float(x) > SIGNATURE_WIDTH or float(y) > SIGNATURE_HEIGHT:
            raise InvalidSignature(
                f"point {i} ({x}, {y}) lies outside {SIGNATURE_WIDTH}x{SIGNATURE_HEIGHT}",
                field="data",
            )
        if cmd == "M":
            strokes += 1
            if i + 1 >= len(points) or points[i + 1][0] != "L":
                raise InvalidSignature("every stroke needs at least two points", field="data")
    if len(points) > SIGNATURE_MAX_POINTS or strokes > SIGNATURE_MAX_STROKES:
        raise InvalidSignature(
            f"at most {SIGNATURE_MAX_POINTS} points in {SIGNATURE_MAX_STROKES} strokes",
            field="data",
        )
    return len(points)


def required_signers(agreement: MediationAgreement) -> list[str]:
    return [f"party:{i}" for i in range(len(agreement.parties))] + ["mediator"]


async def _view(session: AsyncSession, a: MediationAgreement) -> AgreementView:
    sigs = list(
        await session.scalars(
            select(AgreementSignature)
            .where(AgreementSignature.agreement_id == a.id)
            .order_by(AgreementSignature.id)
        )
    )
    signed = {s.signer_key for s in sigs}
    return AgreementView(
        id=a.id,
        case_id=a.case_id,
        session_id=a.session_id,
        mediator_id=a.mediator_id,
        parties=a.parties,
        facts=a.facts,
        terms=a.terms,
        status=a.status,
        effective_at=a.effective_at,
        judicial_due_at=a.judicial_due_at,
        judicial_requested_at=a.judicial_requested_at,
        judicial_result=a.judicial_result,
        signatures=[
            SignatureView(
                signer=s.signer_key,
                signer_name=s.signer_name,
                method=s.method,
                data=s.data,
                signed_at=s.signed_at,
            )
            for s in sigs
        ],
        missing_signers=[k for k in required_signers(a) if k not in signed],
    )


async def draft_agreement(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    draft: AgreementDraft,
    now: datetime,
) -> AgreementView:
    if not staff.can(Action.agreement_manage):
        raise PermissionDenied("only a mediator drafts an agreement")
    case = await session.get(PetitionCase, case_id)
    if case is None:
        raise NotFound(f"case {case_id} does not exist")
    if case.confidential:
        # an accusation: only a mediator who may see the case (a named handler), and the same
        # 404 as for a case that does not exist (#17 finding 10)
        await visible_case(session, staff=staff, case_id=case_id)
    a = MediationAgreement(
        case_id=case_id,
        session_id=draft.session_id,
        mediator_id=staff.staff_id,
        parties=[p.model_dump() for p in draft.parties],
        facts=draft.facts,
        terms=[{**t.model_dump(), "by": t.by.isoformat()} for t in draft.terms],
        status="draft",
        created_at=now,
        performance_status="pending",
    )
    session.add(a)
    await session.flush()
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="agreement_drafted",
            payload={"agreement_id": a.id},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="agreement.draft",
        object_type="agreement",
        object_id=str(a.id),
        detail={"case_id": case_id},
    )
    return await _view(session, a)


async def sign_agreement(
    session: AsyncSession,
    *,
    agreement_id: int,
    request: SignRequest,
    staff: StaffIdentity | None,
    now: datetime,
    timezone: str = "Asia/Shanghai",
) -> AgreementView:
    """Record one signature. A party signs on the mediator's device or their own link; the
    mediator's signature must come from the mediator's own account."""
    a = await session.scalar(
        select(MediationAgreement).where(MediationAgreement.id == agreement_id).with_for_update()
    )
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if a.status != "draft":
        raise AgreementLocked("the agreement is already effective")
    if request.signer not in required_signers(a):
        raise InvalidInput(f"{request.signer} is not a signer of this agreement", field="signer")
    if request.signer == "mediator" and (staff is None or staff.staff_id != a.mediator_id):
        raise PermissionDenied("only the agreement's mediator signs as mediator")
    if request.signer.startswith("party:"):
        party = a.parties[int(request.signer.split(":")[1])]
        if party["name"] != request.signer_name:
            raise InvalidInput("the signer's name differs from the party's", field="signer_name")
    if request.method == "drawn":
        check_signature_path(request.data)
    exists = await session.scalar(
        select(AgreementSignature.id).where(
            AgreementSignature.agreement_id == a.id, AgreementSignature.signer_key == request.signer
        )
    )
    if exists is not None:
        raise AgreementLocked(f"{request.signer} has signed already")
    session.add(
        AgreementSignature(
            agreement_id=a.id,
            signer_key=request.signer,
            signer_name=request.signer_name,
            method=request.method,
            data=request.data,
            staff_id=staff.staff_id if staff else None,
            signed_at=now,
        )
    )
    await session.flush()
    view = await _view(session, a)
    if not view.missing_signers:
        a.status = "effective"
        a.effective_at = now
        dl = await deadline_clock.open_deadline(
            session,
            case_id=a.case_id,
            kind="judicial_confirmation",
            start=now,
            now=now,
            tz=ZoneInfo(timezone),
        )
        a.judicial_due_at = dl.due_at
        session.add(
            CaseEvent(
                case_id=a.case_id,
                actor_id=None,
                type="agreement_effective",
                payload={"agreement_id": a.id},
                at=now,
            )
        )
        view = await _view(session, a)
    await record(
        session,
        actor=staff.actor if staff else f"party:{request.signer_name}",
        action="agreement.sign",
        object_type="agreement",
        object_id=str(a.id),
        detail={"signer": request.signer, "effective": a.status == "effective"},
    )
    return view


async def record_judicial_confirmation(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    agreement_id: int,
    requested_at: datetime,
    result: str | None,
    now: datetime,
) -> AgreementView:
    if not staff.can(Action.agreement_manage):
        raise PermissionDenied("only a mediator records judicial confirmation")
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if staff.staff_id != a.mediator_id:
        raise PermissionDenied(
            "only the agreement's own mediator records its judicial confirmation"
        )
    if a.status != "effective" or a.effective_at is None:
        raise InvalidInput("judicial confirmation needs an effective agreement")
    if requested_at < a.effective_at or requested_at > now:
        raise InvalidInput(
            "the request date must lie between the agreement's effect and now",
            field="requested_at",
        )
    # 人民调解法 Art. 33: the parties apply jointly within 30 days of the agreement's effect. A
    # later application is recorded (the court decides) but flagged, and the window stays missed.
    late = a.judicial_due_at is not None and requested_at > a.judicial_due_at
    a.judicial_requested_at = requested_at
    a.judicial_result = result
    if not late:
        await deadline_clock.meet_deadline(
            session, case_id=a.case_id, kind="judicial_confirmation", now=now
        )
    session.add(
        CaseEvent(
            case_id=a.case_id,
            actor_id=staff.staff_id,
            type="judicial_requested",
            payload={"agreement_id": a.id, "late": late, "result": result},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="agreement.judicial",
        object_type="agreement",
        object_id=str(a.id),
        detail={"result": result, "late": late},
    )
    return await _view(session, a)


async def get_agreement(session: AsyncSession, *, agreement_id: int) -> AgreementView:
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    return await _view(session, a)


async def view_agreement(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    agreement_id: int,
    ip: str = "",
    action: str = "agreement.view",
) -> AgreementView:
    """An agreement for a staff member: its mediator, or anyone who may see the case (the
    same 404 otherwise). Every view is written to the audit log."""
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if a.mediator_id != staff.staff_id:
        try:
            await visible_case(session, staff=staff, case_id=a.case_id)
        except NotFound:
            raise NotFound(f"agreement {agreement_id} does not exist") from None
    await record(
        session,
        actor=staff.actor,
        action=action,
        object_type="agreement",
        object_id=str(a.id),
        ip=ip,
        detail={"case_id": a.case_id},
    )
    return await _view(session, a)


async def case_agreements(session: AsyncSession, *, case_id: int) -> list[dict[str, Any]]:
    """The agreements of a case, for its page (the caller has checked the case is visible)."""
    rows = await session.scalars(
        select(MediationAgreement)
        .where(MediationAgreement.case_id == case_id)
        .order_by(MediationAgreement.id)
    )
    return [
        {"id": a.id, "status": a.status, "created_at": a.created_at, "parties": a.parties}
        for a in rows
    ]


def signature_strokes(data: str) -> list[list[tuple[float, float]]]:
    """The strokes of a validated drawn signature, as lists of (x, y) points."""
    strokes: list[list[tuple[float, float]]] = []
    for cmd, x, y in _POINT_RE.findall(data):
        if cmd == "M":
            strokes.append([])
        strokes[-1].append((float(x), float(y)))
    return strokes


def agreement_pdf(
    view: AgreementView,
    *,
    case_no: str,
    font: Path | None = None,
    tz: str = clock.DEFAULT_TIMEZONE,
) -> bytes:
    """Render the agreement (CPU-bound: call through asyncio.to_thread). Times and the
    effective date are the district's (`tz`), never UTC."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_page()
    font = font or cjk_font()
    pdf.add_font("cjk", "", str(font), collection_font_number=_face_index(font))
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, "人民调解协议书", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(0, 8, f"案件编号：{case_no}    协议编号：{view.id}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=12)
    pdf.ln(2)
    pdf.cell(0, 8, "一、当事人", new_x="LMARGIN", new_y="NEXT")
    roles = {
        "applicant": "申请人",
        "respondent": "被申请人",
        "agent": "代理人",
        "third_party": "第三人",
    }
    for p in view.parties:
        _paragraph(pdf, f"{roles.get(p['role'], p['role'])}：{p['name']}")
    pdf.ln(2)
    pdf.cell(0, 8, "二、纠纷事实及争议事项", new_x="LMARGIN", new_y="NEXT")
    _paragraph(pdf, view.facts)
    pdf.ln(2)
    pdf.cell(0, 8, "三、协议内容（履行方式、期限）", new_x="LMARGIN", new_y="NEXT")
    for i, t in enumerate(view.terms, start=1):
        # "1．" with no space after it: a break at a space would leave the number alone
        _paragraph(pdf, f"{i}．{t['term']}（履行方式：{t['how']}；履行期限：{t['by']}前）")
    pdf.ln(4)
    pdf.cell(0, 8, "四、签名", new_x="LMARGIN", new_y="NEXT")
    for s in view.signatures:
        label = "调解员" if s.signer == "mediator" else "当事人"
        _paragraph(
            pdf,
            f"{label}：{s.signer_name}（{'手写签名' if s.method == 'drawn' else '电子签名'}，"
            f"{clock.format_local(s.signed_at, tz=tz)}）",
        )
        if s.method == "drawn":
            # The drawn strokes, scaled into a 60 x 20 mm box under the line.
            scale = 60 / SIGNATURE_WIDTH
            x0, y0 = pdf.get_x() + 10, pdf.get_y()
            pdf.set_line_width(0.4)
            for stroke in signature_strokes(s.data):
                for (ax, ay), (bx, by) in itertools.pairwise(stroke):
                    pdf.line(x0 + ax * scale, y0 + ay * scale, x0 + bx * scale, y0 + by * scale)
            pdf.set_y(y0 + SIGNATURE_HEIGHT * scale + 2)
    if view.effective_at:
        pdf.ln(2)
        _paragraph(
            pdf,
            f"本协议自各方签名之日（{clock.format_local(view.effective_at, 'date', tz)}）起生效。"
            "当事人可自生效之日起三十日内共同向人民法院申请司法确认。",
        )
    else:
        pdf.cell(0, 7, "（草稿：尚未全部签名，不发生效力）", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def link_session(
    session: AsyncSession, *, agreement_id: int, case_id: int, session_id: int
) -> AgreementView:
    """File the agreement under the mediation session it came from (the session's outcome
    "agreement" names it). The agreement must belong to the session's case."""
    a = await session.get(MediationAgreement, agreement_id)
    if a is None or a.case_id != case_id:
        raise NotFound(
            f"agreement {agreement_id} is not one of case {case_id}", field="agreement_id"
        )
    a.session_id = session_id
    await session.flush()
    return await _view(session, a)


async def session_agreement_ids(session: AsyncSession, *, session_id: int) -> list[int]:
    """The agreements filed under a session, oldest first."""
    rows = await session.scalars(
        select(MediationAgreement.id)
        .where(MediationAgreement.session_id == session_id)
        .order_by(MediationAgreement.id)
    )
    return list(rows)
