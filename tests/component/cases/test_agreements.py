"""Mediation agreements: effective only when every party and the mediator have signed."""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from typing import Literal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import agreements
from server.cases.access import CaseNotFound
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import CaseDeadline, CaseEvent
from server.cases.schemas import (
    AgreementDraft,
    AgreementView,
    PartyInput,
    SignRequest,
    TermInput,
)
from server.kernel.crypto import PiiCipher
from server.kernel.errors import InvalidInput, NotFound, PermissionDenied

from .conftest import NOW, dept_id, who
from .test_lifecycle import register


async def test_effective_only_when_all_have_signed(db: async_sessionmaker[AsyncSession]) -> None:
    case_id = await register(
        db,
        PiiCipher(secrets.token_bytes(32)),
        matter="neighbour_dispute",
        summary="楼上漏水损坏楼下吊顶，双方协商不成",
    )
    async with db.begin() as s:
        with pytest.raises(PermissionDenied):
            await agreements.draft_agreement(
                s, staff=await who(s, "window01"), case_id=case_id, draft=_draft(), now=NOW
            )
    async with db.begin() as s:
        view = await agreements.draft_agreement(
            s, staff=await who(s, "mediator01"), case_id=case_id, draft=_draft(), now=NOW
        )
    assert view.missing_signers == ["party:0", "party:1", "mediator"]

    async def sign(
        signer: str,
        name: str,
        username: str = "mediator01",
        method: Literal["typed", "drawn"] = "typed",
        data: str | None = None,
    ) -> AgreementView:
        async with db.begin() as s:
            return await agreements.sign_agreement(
                s,
                agreement_id=view.id,
                staff=await who(s, username),
                now=NOW + timedelta(hours=1),
                deadlines=DeadlineClock(),
                request=SignRequest(
                    signer=signer,
                    signer_name=name,
                    method=method,
                    data=data or name,
                    identification=None if signer == "mediator" else "in_person",
                ),
            )

    with pytest.raises(InvalidInput):
        await sign("party:0", "冒名者")
    with pytest.raises(InvalidInput):
        await sign("party:0", "赵一", method="drawn", data="<script>")
    v = await sign("party:0", "赵一", method="drawn", data="M 10 10 L 40 30 L 80 12")
    assert v.status == "draft"
    with pytest.raises(agreements.AgreementLocked):
        await sign("party:0", "赵一")
    v = await sign("party:1", "钱二")
    assert v.status == "draft" and v.missing_signers == ["mediator"]
    with pytest.raises(PermissionDenied):
        await sign("mediator", "调解员乙", username="mediator02")
    v = await sign("mediator", "调解员甲")
    assert v.status == "effective" and v.effective_at is not None
    assert v.judicial_due_at is not None and v.judicial_due_at - v.effective_at <= timedelta(
        days=31
    )
    with pytest.raises(agreements.AgreementLocked):
        await sign("party:1", "钱二")
    await _judicial_confirmation_checks(db, v)
    try:
        font = agreements.cjk_font()
    except agreements.CjkFontMissing:
        pytest.skip("no CJK font installed")
    pdf = agreements.agreement_pdf(v, case_no="TEST-1", font=font)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def _draft() -> AgreementDraft:
    return AgreementDraft(
        parties=[
            PartyInput(name="赵一", role="applicant"),
            PartyInput(name="钱二", role="respondent"),
        ],
        facts="楼上住户卫生间漏水，损坏楼下吊顶。",
        terms=[TermInput(term="钱二赔偿赵一维修费3000元", how="银行转账", by=date(2026, 4, 1))],
    )


async def _judicial_confirmation_checks(
    db: async_sessionmaker[AsyncSession], v: AgreementView
) -> None:
    """#17 finding 10: another mediator recorded a confirmation requested two months after the
    30-day window; it was accepted and the deadline marked met."""
    assert v.effective_at is not None and v.judicial_due_at is not None
    effective = v.effective_at

    async def judicial(username: str, requested: timedelta, now: timedelta) -> AgreementView:
        async with db.begin() as s:
            return await agreements.record_judicial_confirmation(
                s,
                staff=await who(s, username),
                agreement_id=v.id,
                requested_at=effective + requested,
                result=None,
                now=effective + now,
            )

    with pytest.raises(PermissionDenied):  # not the agreement's mediator
        await judicial("mediator02", timedelta(days=3), timedelta(days=3))
    with pytest.raises(InvalidInput):  # before the agreement took effect
        await judicial("mediator01", timedelta(days=-1), timedelta(days=3))
    with pytest.raises(InvalidInput):  # in the future
        await judicial("mediator01", timedelta(days=9), timedelta(days=3))
    await judicial("mediator01", timedelta(days=60), timedelta(days=61))  # late: flagged
    async with db() as s:
        status = await s.scalar(
            select(CaseDeadline.status).where(
                CaseDeadline.case_id == v.case_id, CaseDeadline.kind == "judicial_confirmation"
            )
        )
        late = await s.scalar(
            select(CaseEvent.payload).where(
                CaseEvent.case_id == v.case_id, CaseEvent.type == "judicial_requested"
            )
        )
    assert status != "met" and late is not None and late["late"] is True
    await judicial("mediator01", timedelta(days=3), timedelta(days=61))  # within the window
    async with db() as s:
        status = await s.scalar(
            select(CaseDeadline.status).where(
                CaseDeadline.case_id == v.case_id, CaseDeadline.kind == "judicial_confirmation"
            )
        )
    assert status == "met"


async def test_a_mediator_who_may_not_see_an_accusation_cannot_draft_on_it(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db() as s:
        urban = await dept_id(s, "urban")
    case_id = await register(
        db,
        PiiCipher(secrets.token_bytes(32)),
        matter="official_misconduct",
        summary="检举城管执法人员收受好处",
        attributes={"accused": "区城管局某中队"},
        accused_department_id=urban,
    )
    async with db.begin() as s:
        with pytest.raises(CaseNotFound):
            await agreements.draft_agreement(
                s, staff=await who(s, "mediator01"), case_id=case_id, draft=_draft(), now=NOW
            )


async def test_a_party_link_signs_only_its_agreement_and_text(
    db: async_sessionmaker[AsyncSession],
) -> None:
    from server.cases.models import MediationAgreement
    from server.kernel.signing import SignatureExpired, SignatureInvalid, Signer

    case_id = await register(
        db, PiiCipher(secrets.token_bytes(32)), matter="neighbour_dispute", summary="漏水纠纷"
    )
    async with db.begin() as s:
        view = await agreements.draft_agreement(
            s, staff=await who(s, "mediator01"), case_id=case_id, draft=_draft(), now=NOW
        )
    secret = secrets.token_bytes(32)
    async with db.begin() as s:
        a = await s.get(MediationAgreement, view.id)
        assert a is not None
        with pytest.raises(InvalidInput):
            agreements.party_sign_token(a, party_index=5, secret=secret, now=NOW)
        token = agreements.party_sign_token(a, party_index=1, secret=secret, now=NOW)
        got, signer = await agreements.verify_party_sign_token(
            s, token=token, secret=secret, now=NOW + timedelta(hours=1)
        )
        assert (got.id, signer) == (view.id, "party:1")
        with pytest.raises(SignatureInvalid):  # another deployment's key: forged
            await agreements.verify_party_sign_token(
                s, token=token, secret=secrets.token_bytes(32), now=NOW
            )
        with pytest.raises(SignatureInvalid):  # a token for another purpose
            await agreements.verify_party_sign_token(
                s,
                token=Signer(secret).sign("csrf", {"a": view.id}, expires_at=NOW + timedelta(1)),
                secret=secret,
                now=NOW,
            )
        with pytest.raises(SignatureExpired):
            await agreements.verify_party_sign_token(
                s, token=token, secret=secret, now=NOW + agreements.SIGN_LINK_TTL * 2
            )
        a.terms = [*a.terms, {"what": "另赔偿100元", "by": "2026-12-31"}]
        await s.flush()
        with pytest.raises(agreements.AgreementChanged) as err:
            await agreements.verify_party_sign_token(s, token=token, secret=secret, now=NOW)
        assert "已修改" in err.value.message_zh


async def _effective_agreement(db: async_sessionmaker[AsyncSession], case_id: int) -> int:
    """An effective agreement on the case, written as rows (a confidential case's named
    mediator is beside the point here)."""
    from server.cases.models import MediationAgreement

    async with db.begin() as s:
        mediator = await who(s, "mediator01")
        a = MediationAgreement(
            case_id=case_id,
            mediator_id=mediator.staff_id,
            parties=[{"name": "赵一", "role": "applicant"}, {"name": "钱二", "role": "respondent"}],
            facts="双方就赔偿达成一致。",
            terms=[{"term": "赔偿100元", "how": "现金", "by": "2026-04-01"}],
            status="effective",
            created_at=NOW,
            effective_at=NOW,
            judicial_due_at=NOW + timedelta(days=30),
            performance_status="pending",
        )
        s.add(a)
        await s.flush()
        return a.id


async def test_court_liaison_records_judicial_confirmation_but_never_on_an_accusation_of_his_unit(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """#17 item 4: 司法确认 by the agreement's mediator or the court liaison role; a court
    liaison in the unit an accusation accuses gets the same 404 as for no agreement."""
    pii = PiiCipher(secrets.token_bytes(32))
    plain = await register(db, pii, matter="neighbour_dispute", summary="漏水纠纷")
    async with db() as s:
        court_dept = (await who(s, "court01")).department_id
    assert court_dept is not None
    accusation = await register(
        db,
        pii,
        matter="official_misconduct",
        summary="检举某法院联络人员收受好处",
        attributes={"accused": "区法院诉讼服务中心"},
        accused_department_id=court_dept,
    )
    agreement_id = 0
    for case_id, expect in ((plain, None), (accusation, CaseNotFound)):
        agreement_id = await _effective_agreement(db, case_id)
        async with db.begin() as s:
            court = await who(s, "court01")
            call = agreements.record_judicial_confirmation(
                s,
                staff=court,
                agreement_id=agreement_id,
                requested_at=NOW + timedelta(days=40),
                result=None,
                now=NOW + timedelta(days=41),
            )
            if expect is None:
                view = await call
                assert view.judicial_requested_at is not None
            else:
                with pytest.raises(NotFound):
                    await call
    async with db() as s:
        late = await s.scalar(
            select(CaseEvent.payload).where(
                CaseEvent.case_id == plain, CaseEvent.type == "judicial_requested"
            )
        )
        status = await s.scalar(
            select(CaseDeadline.status).where(
                CaseDeadline.case_id == plain, CaseDeadline.kind == "judicial_confirmation"
            )
        )
    assert late is not None and late["late"] is True  # 40 days after effect: flagged
    assert status != "met"
    async with db.begin() as s:  # a role with no part in 司法确认
        with pytest.raises(PermissionDenied):
            await agreements.record_judicial_confirmation(
                s,
                staff=await who(s, "handler01"),
                agreement_id=agreement_id,
                requested_at=NOW,
                result=None,
                now=NOW,
            )


async def test_the_sent_signing_link_is_blanked_in_the_outbox(
    db: async_sessionmaker[AsyncSession],
) -> None:
    from server.cases.deadline_service import deliver_notifications
    from server.cases.models import CaseNotification
    from tests.fakes import RecordingNotifier

    pii = PiiCipher(secrets.token_bytes(32))
    case_id = await register(db, pii, matter="neighbour_dispute", summary="漏水纠纷")
    async with db.begin() as s:
        view = await agreements.draft_agreement(
            s, staff=await who(s, "mediator01"), case_id=case_id, draft=_draft(), now=NOW
        )
        sent = await agreements.send_sign_link(
            s,
            staff=await who(s, "mediator01"),
            agreement_id=view.id,
            party_index=1,
            phone="13912345678",
            secret=secrets.token_bytes(32),
            pii=pii,
            base_url="https://onedoor.example/",
            now=NOW,
        )
    assert sent.to == "139****5678"
    notifier = RecordingNotifier()
    async with db() as s:  # the party's number is kept encrypted until it is sent
        stored = await s.scalar(
            select(CaseNotification.to).where(
                CaseNotification.dedupe_key.startswith("agreement_link:")
            )
        )
    assert stored is not None and "13912345678" not in stored
    await deliver_notifications(db, notifier=notifier, now=NOW, pii=pii)
    [sms] = [m for m in notifier.sent if "/sign/" in m.body]
    assert sms.to == "13912345678" and "钱*您好" in sms.body
    # NOW is 10:00 in Beijing; the link runs three days
    assert "链接有效期至2026-03-05 10:00（北京时间）" in sms.body
    async with db() as s:
        body = await s.scalar(
            select(CaseNotification.body).where(
                CaseNotification.dedupe_key.startswith("agreement_link:")
            )
        )
    assert body is not None and "/sign/[已发送] 链接有效期至" in body
    assert sms.body.split("/sign/")[1].split(" ")[0] not in body


async def test_agreements_awaiting_judicial_confirmation_for_the_court_liaison(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """#17 remaining item 2 (service part): the court liaison's list of effective agreements
    with no 司法确认 yet, window end first, overdue flagged, never an accusation of his unit;
    a mediator sees only his own, a handler none; a recorded one leaves the list."""
    pii = PiiCipher(secrets.token_bytes(32))
    plain = await register(db, pii, matter="neighbour_dispute", summary="漏水纠纷")
    async with db() as s:
        court_dept = (await who(s, "court01")).department_id
    assert court_dept is not None
    accusation = await register(
        db,
        pii,
        matter="official_misconduct",
        summary="检举某法院联络人员收受好处",
        attributes={"accused": "区法院诉讼服务中心"},
        accused_department_id=court_dept,
    )
    on_plain = await _effective_agreement(db, plain)
    await _effective_agreement(db, accusation)
    async with db() as s:
        court = await who(s, "court01")
        listed = await agreements.awaiting_judicial(s, staff=court, now=NOW + timedelta(days=5))
        late = await agreements.awaiting_judicial(s, staff=court, now=NOW + timedelta(days=31))
        mine = await agreements.awaiting_judicial(s, staff=await who(s, "mediator01"), now=NOW)
        other = await agreements.awaiting_judicial(s, staff=await who(s, "mediator02"), now=NOW)
        handler = await agreements.awaiting_judicial(s, staff=await who(s, "handler01"), now=NOW)
    assert [p.agreement_id for p in listed if p.case_id in (plain, accusation)] == [on_plain]
    assert [p.overdue for p in listed if p.case_id == plain] == [False]
    assert [p.overdue for p in late if p.case_id == plain] == [True]
    assert {p.case_id for p in mine} >= {plain, accusation}  # the mediator's own agreements
    assert not {p.case_id for p in other} & {plain, accusation}
    assert handler == []
    async with db.begin() as s:
        await agreements.record_judicial_confirmation(
            s,
            staff=await who(s, "court01"),
            agreement_id=on_plain,
            requested_at=NOW + timedelta(days=3),
            result=None,
            now=NOW + timedelta(days=4),
        )
    async with db() as s:
        after = await agreements.awaiting_judicial(
            s, staff=await who(s, "court01"), now=NOW + timedelta(days=5)
        )
    assert plain not in {p.case_id for p in after}
