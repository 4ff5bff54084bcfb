"""Written notices to the petitioner (DOMAIN §5-§7), printed as PDF where the rules call for
one: 受理告知书 (the case was accepted), 不予受理告知书 (refused, with the reason),
导入法定途径告知书 (which statutory procedure applies and why) and 书面答复意见书 (the written
reply). Each exists once the case's state says the decision was taken; a download is a view
of the case's content and is audited (`case.notice_download`).

`notice_pdf` is pure (CPU-bound: call it through asyncio.to_thread); `notice_facts` gathers
what it prints from the case, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import StaffIdentity
from server.cases import pdf as pdfkit
from server.cases.access import site_path, visible_case
from server.cases.models import CaseEvent, CaseState, PetitionCase, Petitioner
from server.cases.statemachine import LEGAL_ROUTES, may_see_petitioner
from server.kernel import clock
from server.kernel.crypto import PiiCipher
from server.kernel.errors import NotFound
from server.org.models import Department, Site, SiteLevel, Staff

S = CaseState

#: kind → (title, the case-page link text).
NOTICE_KINDS: dict[str, str] = {
    "acceptance": "受理告知书",
    "refusal": "不予受理告知书",
    "legal_route": "导入法定途径告知书",
    "reply": "书面答复意见书",
}

#: The event that took the decision each notice reports.
_DECISION_EVENT = {
    "acceptance": "accept",
    "refusal": "not_accept",
    "legal_route": "redirect_legal",
    "reply": "reply",
}

#: The statutory procedures' usual time limits, as general guidance only (the notice says so).
LEGAL_ROUTE_GUIDANCE = {
    "arbitration": "劳动人事争议申请仲裁的时效期间一般为一年，自知道或者应当知道其权利被侵害之日起计算。",
    "review": "申请行政复议一般应当自知道或者应当知道该行政行为之日起六十日内提出。",
    "litigation": "民事诉讼的诉讼时效期间一般为三年；提起行政诉讼一般应当自知道或者应当知道作出行政行为之日起六个月内提出。",
    "mediation": "人民调解不收取费用；调解协议可自生效之日起三十日内共同申请司法确认。",
    "legal_aid": "符合条件的，可以向当地法律援助机构申请法律援助。",
    "police": "涉及违法犯罪的，可以向公安机关报案、控告或者举报。",
}


class NoticeNotAvailable(NotFound):
    code, message_zh = "notice_not_available", "该事项尚无此告知书"


@dataclass(frozen=True, slots=True)
class NoticeFacts:
    """Everything one notice prints (plain values: `notice_pdf` does no I/O)."""

    kind: str
    case_no: str
    district: str
    petitioner: str
    unit: str
    decided_at: datetime
    summary: str = ""
    text: str = ""
    legal_route: str | None = None
    signer: str = ""
    signed_at: datetime | None = None
    room: str = ""  # 导入法定途径: the room the case was handed over to ("" when none)


def available_notices(state: CaseState, *, accepted: bool, replied: bool) -> list[str]:
    """The notices a case has: the acceptance notice once it was accepted, the refusal once
    not accepted, the legal-route notice once redirected, the written reply once replied."""
    out: list[str] = []
    if accepted:
        out.append("acceptance")
    if state == S.not_accepted:
        out.append("refusal")
    if state == S.redirected_legal:
        out.append("legal_route")
    if replied:
        out.append("reply")
    return out


def case_notices(row: PetitionCase) -> list[str]:
    return available_notices(
        row.state, accepted=row.accepted_at is not None, replied=row.replied_at is not None
    )


def _rights(facts: NoticeFacts) -> str:
    match facts.kind:
        case "reply":
            return (
                "如对本答复意见不服，可以自收到本意见书之日起三十日内，"
                "请求原办理机关的上一级行政机关复查。"
            )
        case "refusal":
            return "如对不予受理决定有异议，可以向本级信访工作机构反映。"
        case "legal_route":
            guidance = LEGAL_ROUTE_GUIDANCE.get(facts.legal_route or "", "")
            return (
                f"{guidance}以上时限仅为一般性提示，具体以相关法律法规和有关机关的告知为准。"
                "依法应当通过诉讼、仲裁、行政复议等法定途径解决的事项，信访工作机构不再按信访程序受理。"
            )
        case _:
            return "本事项将依照《信访工作条例》规定的期限办理，办理结果将书面告知。"


def notice_pdf(
    facts: NoticeFacts, *, font: Path | None = None, tz: str = clock.DEFAULT_TIMEZONE
) -> bytes:
    """Render one notice, A4, Simplified Chinese; dates are the district's (`tz`)."""
    pdf = pdfkit.new_document(font)
    title = NOTICE_KINDS[facts.kind]
    pdf.set_font("cjk", size=12)
    pdf.cell(0, 8, facts.district, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(0, 8, f"事项编号：{facts.case_no}", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=12)
    pdf.ln(2)
    pdfkit.paragraph(pdf, f"{facts.petitioner}：")
    day = clock.format_local(facts.decided_at, "date", tz)
    match facts.kind:
        case "acceptance":
            pdfkit.paragraph(
                pdf,
                f"您反映的事项（{facts.summary}），经审查符合受理条件，本机关已于{day}依法受理。",
            )
        case "refusal":
            pdfkit.paragraph(
                pdf,
                f"您反映的事项（{facts.summary}），经审查，本机关于{day}决定不予受理。理由如下：",
            )
            pdfkit.paragraph(pdf, facts.text)
        case "legal_route":
            route = LEGAL_ROUTES.get(facts.legal_route or "", facts.legal_route or "")
            pdfkit.paragraph(
                pdf,
                f"您反映的事项（{facts.summary}），依法应当通过{route}途径解决。"
                f"本机关于{day}决定导入{route}程序，请您依照该程序提出请求。理由如下：",
            )
            pdfkit.paragraph(pdf, facts.text)
            if facts.room:
                pdfkit.paragraph(
                    pdf,
                    f"本机关已将您的事项移交{facts.room}，您可以前往该接谈室咨询并提出申请。",
                )
        case "reply":
            pdfkit.paragraph(pdf, f"您反映的事项（{facts.summary}），现书面答复如下：")
            pdfkit.paragraph(pdf, facts.text)
    pdf.ln(6)
    pdf.cell(0, 8, f"办理单位：{facts.unit}", align="R", new_x="LMARGIN", new_y="NEXT")
    if facts.kind in ("reply", "refusal") and facts.signer:
        signed = clock.format_local(facts.signed_at or facts.decided_at, "date", tz)
        pdf.cell(
            0,
            8,
            f"签发人：{facts.signer}    签发日期：{signed}",
            align="R",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.cell(0, 8, day, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("cjk", size=9)
    pdfkit.paragraph(pdf, "告知事项：" + _rights(facts), height=5)
    return bytes(pdf.output())


async def _district_name(session: AsyncSession, row: PetitionCase) -> str:
    path = await site_path(session, row.site_id)
    names = dict(
        (await session.execute(select(Site.level, Site.name).where(Site.id.in_(sorted(path)))))
        .tuples()
        .all()
    )
    return (
        names.get(SiteLevel.district)
        or names.get(SiteLevel.street)
        or next(iter(names.values()), "")
    )


async def notice_facts(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    pii: PiiCipher,
    ip: str = "",
) -> NoticeFacts:
    """What the notice of this kind prints, for a viewer who may see the case; the download
    is audited. The petitioner's name is in clear only for those who may see it.

    Raises:
        CaseNotFound: the viewer may not see the case.
        NoticeNotAvailable: no such notice, or not (yet) for this case's state.
    """
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    if kind not in NOTICE_KINDS or kind not in case_notices(row):
        raise NoticeNotAvailable(f"case {case_id} has no {kind} notice")
    events = list(
        await session.scalars(
            select(CaseEvent)
            .where(
                CaseEvent.case_id == row.id,
                CaseEvent.type.in_((_DECISION_EVENT[kind], "signed_off")),
            )
            .order_by(CaseEvent.at, CaseEvent.id)
        )
    )
    decision = next((e for e in reversed(events) if e.type == _DECISION_EVENT[kind]), None)
    sign_offs = [
        e for e in events if e.type == "signed_off" and (e.payload or {}).get("kind") == kind
    ]
    signed = sign_offs[-1] if sign_offs else decision
    name = ""
    if row.petitioner_id is not None:
        person = await session.get(Petitioner, row.petitioner_id)
        if person is not None:
            name = pii.decrypt(person.name_enc)
            if not may_see_petitioner(staff, facts):
                name = name[:1] + "*" * (len(name) - 1)
    signer = ""
    if signed is not None and signed.actor_id is not None:
        signer = (
            await session.scalar(select(Staff.display_name).where(Staff.id == signed.actor_id))
            or ""
        )
    unit = ""
    if row.lead_dept_id is not None:
        unit = (
            await session.scalar(select(Department.name).where(Department.id == row.lead_dept_id))
            or ""
        )
    district = await _district_name(session, row)
    payload = (decision.payload or {}) if decision is not None else {}
    decided_at = decision.at if decision is not None else row.updated_at
    text = {
        "refusal": str(payload.get("reason", "")),
        "legal_route": str(payload.get("reason", "")),
        "reply": row.reply_text or "",
    }.get(kind, "")
    await record(
        session,
        actor=staff.actor,
        action="case.notice_download",
        object_type="case",
        object_id=str(row.id),
        ip=ip,
        detail={"kind": kind},
    )
    return NoticeFacts(
        kind=kind,
        case_no=row.case_no,
        district=district,
        petitioner=name or "信访人",
        unit=unit or district,
        decided_at=decided_at,
        summary=row.summary,
        text=text,
        legal_route=row.legal_route or payload.get("legal_route"),
        signer=signer,
        signed_at=signed.at if signed is not None else None,
        room=str(payload.get("room", "")) if kind == "legal_route" else "",
    )
