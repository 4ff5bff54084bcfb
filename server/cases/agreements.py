"""调解协议书 (people's mediation agreements, 人民调解法 §§28-33): drafted from a session with
parties, facts and terms (how and by when), signed by every party and the mediator, effective
when all have signed; the 30-day judicial-confirmation window is tracked as a deadline."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.access import (
    check_not_accused_unit,
    masked_name,
    petitioner_in_clear,
    visible_case,
)
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import AgreementSignature, CaseEvent, MediationAgreement, PetitionCase
from server.cases.outbox import ResidentPhone, enqueue
from server.cases.pdf import CJK_FONT_CANDIDATES as CJK_FONT_CANDIDATES
from server.cases.pdf import CjkFontMissing as CjkFontMissing
from server.cases.pdf import cjk_font as cjk_font
from server.cases.pdf import face_index as _face_index
from server.cases.pdf import paragraph as _paragraph
from server.cases.schemas import (
    AgreementDraft,
    AgreementView,
    JudicialPending,
    LinkSignRequest,
    PartySigned,
    PartySignView,
    SignatureView,
    SignLinkSent,
    SignRequest,
)
from server.kernel import clock
from server.kernel.crypto import PiiCipher
from server.kernel.errors import (
    AppError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from server.kernel.signing import SignatureExpired, SignatureInvalid, Signer
from server.org.models import Role


class AgreementLocked(Conflict):
    code, message_zh = "agreement_locked", "协议已生效，不能修改或重复签署"


class InvalidSignature(InvalidInput):
    code, message_zh = "invalid_signature", "手写签名无效，请点击“重签”后重新签名"


class AgreementChanged(Conflict):
    code, message_zh = (
        "agreement_changed",
        "协议内容在发送签署链接后已修改，此链接不能再签署，请向调解员索取新链接",
    )


class InvalidSignLink(AppError):
    code, http_status, message_zh = (
        "invalid_sign_link",
        404,
        "签署链接无效，请核对短信中的链接，或向调解员索取新链接",
    )


class SignLinkExpired(AppError):
    code, http_status, message_zh = (
        "sign_link_expired",
        410,
        "签署链接已过期，请向调解员索取新链接",
    )


class SignLinkSuperseded(AppError):
    code, http_status, message_zh = (
        "sign_link_superseded",
        410,
        "已向您发送了新的签署链接，此链接已失效，请使用最新短信中的链接",
    )


class SignLinkUsed(Conflict):
    code, message_zh = "sign_link_used", "您已签署本协议，此链接不能再次使用"


class IdentificationRequired(InvalidInput):
    code, message_zh = (
        "identification_required",
        "当事人在调解员设备上签署，须先记录身份核验方式（身份证核验须填写身份证号后4位）",
    )


PARTY_ROLE_LABELS = {
    "applicant": "申请人",
    "respondent": "被申请人",
    "agent": "代理人",
    "third_party": "第三人",
}

#: How long a party's signing link stays valid.
SIGN_LINK_TTL = timedelta(days=3)

#: How a signature was given (`AgreementSignature.via`) and how a party was identified.
VIA_LABELS = {
    "own_link": "本人链接签署",
    "mediator_device": "调解员设备签署",
    "own_account": "调解员本人签署",
}
ID_METHOD_LABELS = {"id_card": "身份证核验", "face": "人脸核验", "in_person": "当面核对"}


def how_signed(s: SignatureView) -> str:
    """The way a signature was given, in words: 本人链接签署 / 调解员设备签署（身份证核验，
    尾号1234）; the page and the PDF print it next to the signer."""
    text = VIA_LABELS.get(s.via, s.via)
    if s.via == "mediator_device" and s.id_method:
        ident = ID_METHOD_LABELS.get(s.id_method, s.id_method)
        if s.id_last4:
            ident += f"，身份证号后4位{s.id_last4}"
        text += f"（{ident}）"
    return text


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
        {
            "a": agreement.id,
            "p": party_index,
            "h": agreement_content_hash(agreement)[:32],
            # when it was issued: a newer link for the same party supersedes it
            "n": _issued(now),
        },
        expires_at=now + SIGN_LINK_TTL,
    )


def _issued(now: datetime) -> int:
    return int(now.timestamp() * 1_000_000)


async def _newest_link_issued(
    session: AsyncSession, agreement: MediationAgreement, index: int
) -> int:
    """When the newest link sent to this party was issued (0: none recorded)."""
    payloads = await session.scalars(
        select(CaseEvent.payload).where(
            CaseEvent.case_id == agreement.case_id, CaseEvent.type == "agreement_link_sent"
        )
    )
    return max(
        (
            int(p.get("issued", 0))
            for p in payloads
            if p.get("agreement_id") == agreement.id and p.get("party") == index
        ),
        default=0,
    )


async def verify_party_sign_token(
    session: AsyncSession, *, token: str | None, secret: bytes, now: datetime
) -> tuple[MediationAgreement, str]:
    """The agreement and signer key (`party:N`) a link token names.

    Raises SignatureInvalid / SignatureExpired (bad or old link), NotFound (agreement gone),
    AgreementChanged (the text changed after the link was made), AgreementLocked (effective),
    SignLinkSuperseded (a newer link was sent to the same party: only the newest one signs).
    """
    claims = Signer(secret).verify("agreement_sign", token, now=now)
    try:
        agreement_id, index, digest = int(claims["a"]), int(claims["p"]), str(claims["h"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("the signing link lacks its claims", field="token") from None
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    signed = await session.scalar(
        select(AgreementSignature.id).where(
            AgreementSignature.agreement_id == a.id,
            AgreementSignature.signer_key == f"party:{index}",
        )
    )
    if signed is not None:
        raise SignLinkUsed(f"party {index} has signed already")
    if not 0 <= index < len(a.parties) or agreement_content_hash(a)[:32] != digest:
        raise AgreementChanged("the agreement changed after the link was made")
    if a.status != "draft":
        raise AgreementLocked("the agreement is already effective")
    if int(claims.get("n", 0)) < await _newest_link_issued(session, a, index):
        raise SignLinkSuperseded(f"a newer signing link was sent to party {index}")
    return a, f"party:{index}"


async def _link_agreement(
    session: AsyncSession, *, token: str, secret: bytes, now: datetime
) -> tuple[MediationAgreement, int]:
    """`verify_party_sign_token` with the link's own errors for the party's page and API:
    forged or unknown → InvalidSignLink (404), expired → SignLinkExpired (410); used
    (SignLinkUsed), changed (AgreementChanged) and effective (AgreementLocked) as they are."""
    try:
        a, key = await verify_party_sign_token(session, token=token, secret=secret, now=now)
    except SignatureExpired:
        raise SignLinkExpired("the signing link has expired") from None
    except (SignatureInvalid, NotFound, InvalidInput):
        raise InvalidSignLink("no such signing link") from None
    return a, int(key.split(":")[1])


def _party_role(role: str) -> str:
    return PARTY_ROLE_LABELS.get(role, "当事人")


async def party_sign_view(
    session: AsyncSession, *, token: str, secret: bytes, now: datetime, ip: str = ""
) -> PartySignView:
    """The agreement as its party sees it through their own link (audited
    `agreement.link_view`: a read of case content by someone outside the staff)."""
    a, index = await _link_agreement(session, token=token, secret=secret, now=now)
    claims = Signer(secret).verify("agreement_sign", token, now=now)
    await record(
        session,
        actor=f"party:{a.id}:{index}",
        action="agreement.link_view",
        object_type="agreement",
        object_id=str(a.id),
        ip=ip,
        detail={"case_id": a.case_id, "party": index},
    )
    party = a.parties[index]
    return PartySignView(
        agreement_id=a.id,
        party=index,
        party_role=_party_role(party["role"]),
        party_name_masked=masked_name(party["name"]),
        parties_masked=[
            {"role": _party_role(p["role"]), "name": masked_name(p["name"])} for p in a.parties
        ],
        facts=a.facts,
        terms=a.terms,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
    )


async def sign_with_link(
    session: AsyncSession,
    *,
    token: str,
    secret: bytes,
    request: LinkSignRequest,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str = "",
) -> PartySigned:
    """A party signs through their own link (`via` own_link): they confirmed that they read
    and agree, and typed their full name, which must be the party's."""
    a, index = await _link_agreement(session, token=token, secret=secret, now=now)
    view = await _add_signature(
        session,
        agreement_id=a.id,
        signer=f"party:{index}",
        signer_name=request.signer_name.strip(),
        method=request.method,
        data=request.data or request.signer_name.strip(),
        via="own_link",
        staff=None,
        actor=f"party:{a.id}:{index}",
        now=now,
        deadlines=deadlines,
        ip=ip,
    )
    return PartySigned(agreement_id=a.id, party=index, status=view.status, signed_at=now)


async def send_sign_link(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    agreement_id: int,
    party_index: int,
    phone: str,
    secret: bytes,
    pii: PiiCipher,
    base_url: str,
    now: datetime,
    tz: str = clock.DEFAULT_TIMEZONE,
) -> SignLinkSent:
    """发送签署链接: the agreement's mediator sends one party their own signing link by SMS
    (through the notification outbox). The link is bound to the agreement's text and expires
    after SIGN_LINK_TTL; the SMS gives its end in district time. Every sending is audited
    (`agreement.sign_link_sent`) and noted on the case's timeline (without the number)."""
    if not staff.can(Action.agreement_manage):
        raise PermissionDenied("only a mediator sends signing links")
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if staff.staff_id != a.mediator_id:
        raise PermissionDenied("only the agreement's own mediator sends its signing links")
    if a.status != "draft":
        raise AgreementLocked("the agreement is already effective")
    if not 0 <= party_index < len(a.parties):
        raise InvalidInput(f"party {party_index} is not a party of this agreement", field="party")
    signed = await session.scalar(
        select(AgreementSignature.id).where(
            AgreementSignature.agreement_id == a.id,
            AgreementSignature.signer_key == f"party:{party_index}",
        )
    )
    if signed is not None:
        raise AgreementLocked(f"party {party_index} has signed already")
    token = party_sign_token(a, party_index=party_index, secret=secret, now=now)
    expires_at = now + SIGN_LINK_TTL
    # kept (encrypted) for the 司法确认 reminder before the 30-day window closes
    a.party_phones_enc = {**(a.party_phones_enc or {}), str(party_index): pii.encrypt(phone)}
    party = a.parties[party_index]
    await enqueue(
        session,
        key=f"agreement_link:{a.id}:{party_index}:{now.isoformat()}",
        case_id=a.case_id,
        to=ResidentPhone(phone, pii),
        subject="人民调解协议书签署",
        body=(
            f"{masked_name(party['name'])}您好，请阅读并签署人民调解协议书（协议编号{a.id}）："
            f"{base_url.rstrip('/')}/sign/{token} "
            f"链接有效期至{clock.format_local(expires_at, tz=tz)}（北京时间），仅限本人使用。"
        ),
        now=now,
    )
    session.add(
        CaseEvent(
            case_id=a.case_id,
            actor_id=staff.staff_id,
            type="agreement_link_sent",
            payload={"agreement_id": a.id, "party": party_index, "issued": _issued(now)},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="agreement.sign_link_sent",
        object_type="agreement",
        object_id=str(a.id),
        detail={"case_id": a.case_id, "party": party_index},
    )
    return SignLinkSent(
        agreement_id=a.id,
        party=party_index,
        to=phone[:3] + "****" + phone[-4:],
        expires_at=expires_at,
    )


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
        judicial_court=a.judicial_court,
        judicial_ruling_no=a.judicial_ruling_no,
        signatures=[
            SignatureView(
                signer=s.signer_key,
                signer_name=s.signer_name,
                method=s.method,
                data=s.data,
                signed_at=s.signed_at,
                via=s.via,
                id_method=s.id_method,
                id_last4=s.id_last4,
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
    staff: StaffIdentity,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str = "",
) -> AgreementView:
    """Record one signature given on the agreement's mediator's device: the mediator's own
    (`own_account`), or a party's, present and identified (`mediator_device`, with how they were
    identified: the mediator alone cannot sign for the parties without recording each one's
    identification). A party may instead sign through their own link (`sign_with_link`)."""
    if not staff.can(Action.agreement_manage):
        raise PermissionDenied("only a mediator records signatures on their device")
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if staff.staff_id != a.mediator_id:
        raise PermissionDenied("only the agreement's own mediator records its signatures")
    id_method: str | None = None
    id_last4: str | None = None
    if request.signer.startswith("party:"):
        if request.identification is None:
            raise IdentificationRequired(
                "a party signing on the mediator's device must be identified",
                field="identification",
            )
        if request.identification == "id_card" and not request.id_last4:
            raise IdentificationRequired(
                "an ID card check records the ID number's last four characters",
                field="id_last4",
            )
        id_method = request.identification
        id_last4 = request.id_last4.upper() if request.id_last4 else None
        if id_method != "id_card":
            id_last4 = None
    return await _add_signature(
        session,
        agreement_id=agreement_id,
        signer=request.signer,
        signer_name=request.signer_name,
        method=request.method,
        data=request.data,
        via="own_account" if request.signer == "mediator" else "mediator_device",
        id_method=id_method,
        id_last4=id_last4,
        staff=staff,
        actor=staff.actor,
        now=now,
        deadlines=deadlines,
        ip=ip,
    )


async def _add_signature(
    session: AsyncSession,
    *,
    agreement_id: int,
    signer: str,
    signer_name: str,
    method: str,
    data: str,
    via: str,
    staff: StaffIdentity | None,
    actor: str,
    now: datetime,
    deadlines: DeadlineClock,
    ip: str,
    id_method: str | None = None,
    id_last4: str | None = None,
) -> AgreementView:
    """Write one signature (the agreement row locked), and make the agreement effective when
    every party and the mediator have signed: then the 30-day 司法确认 window starts."""
    a = await session.scalar(
        select(MediationAgreement).where(MediationAgreement.id == agreement_id).with_for_update()
    )
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    if a.status != "draft":
        raise AgreementLocked("the agreement is already effective")
    if signer not in required_signers(a):
        raise InvalidInput(f"{signer} is not a signer of this agreement", field="signer")
    if signer == "mediator" and (staff is None or staff.staff_id != a.mediator_id):
        raise PermissionDenied("only the agreement's mediator signs as mediator")
    if signer.startswith("party:"):
        party = a.parties[int(signer.split(":")[1])]
        if party["name"] != signer_name:
            raise InvalidInput("the signer's name differs from the party's", field="signer_name")
    if method == "drawn":
        check_signature_path(data)
    exists = await session.scalar(
        select(AgreementSignature.id).where(
            AgreementSignature.agreement_id == a.id, AgreementSignature.signer_key == signer
        )
    )
    if exists is not None:
        if via == "own_link":
            raise SignLinkUsed(f"{signer} has signed already")
        raise AgreementLocked(f"{signer} has signed already")
    session.add(
        AgreementSignature(
            agreement_id=a.id,
            signer_key=signer,
            signer_name=signer_name,
            method=method,
            data=data,
            staff_id=staff.staff_id if staff else None,
            signed_at=now,
            via=via,
            id_method=id_method,
            id_last4=id_last4,
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
            deadlines=deadlines,
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
    detail: dict[str, Any] = {"signer": signer, "via": via, "effective": a.status == "effective"}
    if id_method:
        detail["identification"] = id_method
    await record(
        session,
        actor=actor,
        action="agreement.sign",
        object_type="agreement",
        object_id=str(a.id),
        ip=ip,
        detail=detail,
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
    court: str | None = None,
    ruling_no: str | None = None,
) -> AgreementView:
    """记录司法确认: when the parties applied, and (once known) the court, its ruling number
    and result. Only the agreement's own mediator or the court liaison."""
    if not staff.can(Action.agreement_judicial):
        raise PermissionDenied("only a mediator or the court liaison records judicial confirmation")
    a = await session.get(MediationAgreement, agreement_id)
    if a is None:
        raise NotFound(f"agreement {agreement_id} does not exist")
    liaison = Role.court_liaison in staff.roles
    if staff.staff_id != a.mediator_id:
        if not liaison:
            raise PermissionDenied(
                "only the agreement's own mediator or the court liaison records its judicial "
                "confirmation"
            )
        try:  # never a member of the unit an accusation accuses (the same 404 as for none)
            await check_not_accused_unit(session, staff=staff, case_id=a.case_id)
        except NotFound:
            raise NotFound(f"agreement {agreement_id} does not exist") from None
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
    a.judicial_court = (court or "").strip() or None
    a.judicial_ruling_no = (ruling_no or "").strip() or None
    if not late:
        await deadline_clock.meet_deadline(
            session, case_id=a.case_id, kind="judicial_confirmation", now=now
        )
    session.add(
        CaseEvent(
            case_id=a.case_id,
            actor_id=staff.staff_id,
            type="judicial_requested",
            payload={
                "agreement_id": a.id,
                "late": late,
                "result": result,
                "court": a.judicial_court,
                "ruling_no": a.judicial_ruling_no,
            },
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="agreement.judicial",
        object_type="agreement",
        object_id=str(a.id),
        detail={
            "result": result,
            "late": late,
            "case_id": a.case_id,
            "court": a.judicial_court,
            "ruling_no": a.judicial_ruling_no,
        },
    )
    return await _view(session, a)


async def awaiting_judicial(
    session: AsyncSession, *, staff: StaffIdentity, now: datetime, limit: int = 200
) -> list[JudicialPending]:
    """Effective agreements with no 司法确认 recorded yet, the window's end first: for the court
    liaison every such agreement except on an accusation against his own unit (the same rule as
    `record_judicial_confirmation`), for a mediator only his own agreements; none for others."""
    if not staff.can(Action.agreement_judicial):
        return []
    q = select(MediationAgreement).where(
        MediationAgreement.status == "effective",
        MediationAgreement.effective_at.is_not(None),
        MediationAgreement.judicial_requested_at.is_(None),
    )
    liaison = Role.court_liaison in staff.roles
    if not liaison:
        q = q.where(MediationAgreement.mediator_id == staff.staff_id)
    q = q.order_by(MediationAgreement.judicial_due_at, MediationAgreement.id).limit(limit)
    out: list[JudicialPending] = []
    for a in (await session.scalars(q)).all():
        if liaison and a.mediator_id != staff.staff_id:
            try:
                await check_not_accused_unit(session, staff=staff, case_id=a.case_id)
            except NotFound:
                continue
        assert a.effective_at is not None
        in_clear = await petitioner_in_clear(session, staff=staff, case_id=a.case_id)
        out.append(
            JudicialPending(
                agreement_id=a.id,
                case_id=a.case_id,
                case_no=str(
                    await session.scalar(
                        select(PetitionCase.case_no).where(PetitionCase.id == a.case_id)
                    )
                ),
                parties=[
                    f"{_party_role(p['role'])}：{p['name'] if in_clear else masked_name(p['name'])}"
                    for p in a.parties
                ],
                effective_at=a.effective_at,
                judicial_due_at=a.judicial_due_at,
                overdue=a.judicial_due_at is not None and now > a.judicial_due_at,
            )
        )
    return out


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
    roles = PARTY_ROLE_LABELS
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
            f"{how_signed(s)}，{clock.format_local(s.signed_at, tz=tz)}）",
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
    return (await sessions_agreement_ids(session, session_ids=[session_id]))[session_id]


async def sessions_agreement_ids(
    session: AsyncSession, *, session_ids: list[int]
) -> dict[int, list[int]]:
    """The agreements filed under each of `session_ids` (one query), oldest first."""
    out: dict[int, list[int]] = {i: [] for i in session_ids}
    if session_ids:
        for agreement_id, session_id in await session.execute(
            select(MediationAgreement.id, MediationAgreement.session_id)
            .where(MediationAgreement.session_id.in_(session_ids))
            .order_by(MediationAgreement.id)
        ):
            out[session_id].append(agreement_id)
    return out


async def send_judicial_reminders(
    session: AsyncSession, *, pii: PiiCipher, now: datetime, days: int, tz: str
) -> int:
    """Text each party of an effective agreement whose 司法确认 window closes within `days`,
    with nothing recorded yet, a reminder — once per agreement and party (the outbox's key), to
    the phone their signing link went to. Returns how many were queued (audited per agreement)."""
    if days <= 0:
        return 0
    due = await session.scalars(
        select(MediationAgreement).where(
            MediationAgreement.status == "effective",
            MediationAgreement.judicial_requested_at.is_(None),
            MediationAgreement.judicial_due_at.is_not(None),
            MediationAgreement.judicial_due_at > now,
            MediationAgreement.judicial_due_at <= now + timedelta(days=days),
        )
    )
    queued = 0
    for a in due.all():
        assert a.judicial_due_at is not None and a.effective_at is not None
        sent = []
        for index, enc in sorted((a.party_phones_enc or {}).items()):
            party = a.parties[int(index)] if int(index) < len(a.parties) else None
            if party is None:
                continue
            fresh = await enqueue(
                session,
                key=f"judicial_reminder:{a.id}:{index}",
                case_id=a.case_id,
                to=ResidentPhone(pii.decrypt(enc), pii),
                subject="司法确认申请提醒",
                body=(
                    f"{masked_name(party['name'])}您好，您签署的人民调解协议书（协议编号{a.id}）"
                    f"已于{clock.format_local(a.effective_at, 'date', tz)}生效。如需申请司法确认，"
                    f"请双方当事人于{clock.format_local(a.judicial_due_at, tz=tz)}（北京时间）前"
                    "共同向人民法院提出申请。"
                ),
                now=now,
            )
            if fresh:
                sent.append(int(index))
        if sent:
            queued += len(sent)
            await record(
                session,
                actor="system",
                action="agreement.judicial_reminder",
                object_type="agreement",
                object_id=str(a.id),
                detail={"case_id": a.case_id, "parties": sent},
                at=now,
            )
    return queued
