"""A case through its whole life, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.models import AuditEntry
from server.cases import access, intake, lifecycle, queries
from server.cases.deadline_clock import DeadlineClock
from server.cases.evaluation import ReplyNotice
from server.cases.models import (
    CaseDeadline,
    CaseEvent,
    CaseHandler,
    CaseNotification,
    CaseState,
    Channel,
    PetitionCase,
)
from server.cases.schemas import (
    HandlerRequest,
    IntakeRequest,
    PetitionerInput,
    TransitionRequest,
)
from server.cases.statemachine import ConfidentialTransferBlocked, MissingField
from server.kernel.crypto import PiiCipher
from server.kernel.errors import IllegalTransition, InvalidInput, PermissionDenied

from .conftest import NOW, centre_id, dept_id, who

SECRET = b"s" * 32
PERSON = PetitionerInput(name="王小明", phone="13812345678", id_number="11010519491231002X")


async def register(
    db: async_sessionmaker[AsyncSession],
    pii: PiiCipher,
    *,
    username: str = "window01",
    summary: str = "某公司拖欠三个月工资未发放",
    matter: str | None = "wage_arrears",
    attributes: dict[str, object] | None = None,
    **kw: object,
) -> int:
    async with db.begin() as s:
        staff = await who(s, username)
        req = IntakeRequest(
            channel=Channel.window,
            site_id=await centre_id(s),
            summary=summary,
            matter_type=matter,
            petitioner=PERSON,
            attributes=attributes
            if attributes is not None
            else ({"employer": "某公司", "months": 3} if matter == "wage_arrears" else {}),
            **kw,
        )
        result = await intake.intake(
            s, pii=pii, staff=staff, request=req, now=NOW, deadlines=DeadlineClock()
        )
        return result.case.id


async def fire(
    db: async_sessionmaker[AsyncSession],
    username: str,
    case_id: int,
    name: str,
    *,
    at: timedelta = timedelta(),
    notice: ReplyNotice | None = None,
    **fields: object,
) -> CaseState:
    async with db.begin() as s:
        staff = await who(s, username)
        detail = await lifecycle.transition(
            s,
            staff=staff,
            case_id=case_id,
            now=NOW + at,
            deadlines=DeadlineClock(),
            reply_notice=notice,
            request=TransitionRequest(transition=name, **fields),
        )
        return detail.state


async def test_whole_life_with_timestamps_events_and_audit(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)
    notice = ReplyNotice(pii=pii, secret=SECRET, base_url="https://xf.example")
    assert (
        await fire(db, "handler01", case_id, "accept", at=timedelta(days=1)) == CaseState.accepted
    )
    await fire(db, "handler01", case_id, "start_handling", at=timedelta(days=2))
    await fire(
        db,
        "handler01",
        case_id,
        "reply",
        at=timedelta(days=10),
        reply="已责令补发工资",
        notice=notice,
    )
    await fire(db, "window01", case_id, "revisit", at=timedelta(days=20), note="工资已到账")
    assert await fire(db, "window01", case_id, "close", at=timedelta(days=21)) == CaseState.closed
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None
        window = await who(s, "window01")
        assert row.first_receiver_id == window.staff_id
        assert row.accepted_at == NOW + timedelta(days=1)
        assert row.handling_at and row.replied_at and row.revisited_at and row.closed_at
        events = list(
            await s.scalars(
                select(CaseEvent.type).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
            )
        )
        assert events[:1] == ["registered"]
        for name in (
            "accept",
            "start_handling",
            "reply",
            "evaluation_link_sent",
            "revisit",
            "close",
        ):
            assert name in events
        deadlines = {
            d.kind: d
            for d in await s.scalars(select(CaseDeadline).where(CaseDeadline.case_id == case_id))
        }
        assert deadlines["acceptance"].status == "met"
        # the matter type shortens handling to 30 days
        assert deadlines["handling"].due_at - deadlines["handling"].start_at <= timedelta(days=31)
        assert deadlines["handling"].status == "met"
        assert deadlines["review_request"].status == "open"  # the petitioner's 30-day window
        sms = await s.scalar(select(CaseNotification).where(CaseNotification.case_id == case_id))
        assert sms is not None and "/evaluate/" in sms.body
        assert "13812345678" not in sms.to and pii.decrypt(sms.to) == "13812345678"
        actions = set(
            await s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == str(case_id)))
        )
        assert {"case.create", "case.accept", "case.reply", "case.close"} <= actions


async def test_denied_and_illegal_transitions_write_nothing(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(db, pii)

    async def counts() -> tuple[int, int, CaseState]:
        async with db() as s:
            events = await s.scalar(
                select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id)
            )
            audits = await s.scalar(select(func.count()).select_from(AuditEntry))
            row = await s.get(PetitionCase, case_id)
            assert row is not None and events is not None and audits is not None
            return events, audits, row.state

    before = await counts()
    with pytest.raises(IllegalTransition):
        await fire(db, "handler01", case_id, "reply", reply="x")
    with pytest.raises(PermissionDenied):
        await fire(db, "window02", case_id, "accept")  # sees the site's cases, not its handler
    with pytest.raises(access.CaseNotFound):
        await fire(db, "handler03", case_id, "accept")  # another department: not even visible
    with pytest.raises(MissingField):
        await fire(db, "handler01", case_id, "not_accept", reason=" ")
    with pytest.raises(InvalidInput):
        await fire(
            db, "handler01", case_id, "redirect_legal", legal_route="petition", reason="应走仲裁"
        )
    assert await counts() == before


async def test_transfer_adds_handlers_and_never_moves_the_first_receiver(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await register(
        db, pii, matter="noise", summary="工地夜间施工噪声扰民", attributes={"location": "和睦新村"}
    )
    async with db() as s:
        urban, housing = await dept_id(s, "urban"), await dept_id(s, "housing")
    await fire(db, "window01", case_id, "transfer", target_department_id=housing, reason="涉及物业")
    assert await fire(db, "handler02", case_id, "accept") == CaseState.accepted
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and row.lead_dept_id == housing
        assert row.first_receiver_id == (await who(s, "window01")).staff_id
        handlers = list(
            await s.scalars(
                select(CaseHandler).where(CaseHandler.case_id == case_id).order_by(CaseHandler.id)
            )
        )
        assert [(h.department_id, h.role, h.active) for h in handlers][:2] == [
            (urban, "lead", False),
            (housing, "lead", True),
        ]
    # the first receiver still sees and tracks it
    async with db.begin() as s:
        detail = await queries.case_detail(s, staff=await who(s, "window01"), case_id=case_id)
        assert detail.state == CaseState.accepted


async def test_confidential_accusation_hidden_from_the_accused_unit(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        urban = await dept_id(s, "urban")
    case_id = await register(
        db,
        pii,
        matter="official_misconduct",
        summary="检举城管执法人员收受好处",
        attributes={"accused": "区城管局某中队"},
        accused_department_id=urban,
    )
    async with db.begin() as s:
        supervisor = await who(s, "supervisor01")
        with pytest.raises(ConfidentialTransferBlocked):
            await lifecycle.add_handler(
                s,
                staff=supervisor,
                case_id=case_id,
                request=HandlerRequest(department_id=urban, role="co"),
                now=NOW,
            )
    async with db.begin() as s:
        handler = await who(s, "handler02")
        await lifecycle.add_handler(
            s,
            staff=await who(s, "supervisor01"),
            case_id=case_id,
            request=HandlerRequest(staff_id=handler.staff_id, role="co"),
            now=NOW,
        )
    async with db.begin() as s:
        assert (
            await queries.case_detail(s, staff=await who(s, "handler02"), case_id=case_id)
        ).confidential
        for outsider in ("handler03", "leader02", "window02"):
            with pytest.raises(access.CaseNotFound):
                await queries.case_detail(s, staff=await who(s, outsider), case_id=case_id)
        from server.cases.schemas import CaseQuery

        for username, visible in (
            ("handler03", False),
            ("supervisor01", True),
            ("handler02", True),
        ):
            items = await queries.list_cases(s, staff=await who(s, username), query=CaseQuery())
            assert (case_id in {i.id for i in items}) is visible
        views = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "case.view", AuditEntry.object_id == str(case_id))
        )
        assert views == 1  # only the successful view is a case view


async def test_repeat_petition_linked_and_flagged_after_re_review(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    first = await register(db, pii)
    await fire(db, "handler01", first, "accept")
    await fire(db, "handler01", first, "start_handling")
    await fire(db, "handler01", first, "reply", reply="答复")
    async with db.begin() as s:
        window = await who(s, "window01")
        review = await lifecycle.request_review(
            s, staff=window, case_id=first, reason="不服答复", now=NOW, deadlines=DeadlineClock()
        )
    assert review.state == CaseState.review
    await fire(db, "window01", review.id, "reply", reply="维持原答复")
    async with db.begin() as s:
        re_review = await lifecycle.request_review(
            s,
            staff=await who(s, "window01"),
            case_id=review.id,
            reason="仍不服",
            now=NOW,
            deadlines=DeadlineClock(),
        )
    assert re_review.state == CaseState.re_review
    await fire(db, "window01", re_review.id, "reply", reply="复核维持")
    async with db.begin() as s:
        from server.cases.statemachine import FinalDecision

        with pytest.raises(FinalDecision):
            await lifecycle.request_review(
                s,
                staff=await who(s, "window01"),
                case_id=re_review.id,
                reason="再次不服",
                now=NOW,
                deadlines=DeadlineClock(),
            )
    # the same person (found by ID number hash) with the same matter again
    async with db.begin() as s:
        result = await intake.intake(
            s,
            pii=pii,
            staff=await who(s, "window01"),
            now=NOW + timedelta(days=90),
            deadlines=DeadlineClock(),
            request=IntakeRequest(
                channel=Channel.window,
                site_id=await centre_id(s),
                summary="公司拖欠工资三个月仍未发放",
                matter_type="wage_arrears",
                attributes={"employer": "某公司", "months": 3},
                petitioner=PetitionerInput(name="王小明", id_number="11010519491231002x"),
            ),
        )
    assert result.repeat_of_case_no is not None
    assert result.non_accept_proposed
    assert result.case.state == CaseState.registered  # a person decides
    # 梯次滤化 (#17 finding 12: every case stayed simple): the first petition is simple; its
    # 复查, 复核 and the repeat petition are complex
    async with db() as s:
        grades = {
            case_id: await s.scalar(select(PetitionCase.grade).where(PetitionCase.id == case_id))
            for case_id in (first, review.id, re_review.id, result.case.id)
        }
    assert grades == {
        first: "simple", review.id: "complex", re_review.id: "complex", result.case.id: "complex"
    }  # fmt: skip


async def test_matter_type_required_fields(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    with pytest.raises(InvalidInput) as err:
        await register(db, pii, attributes={"employer": "某公司"})
    assert err.value.details["field"] == "months"
    with pytest.raises(InvalidInput):
        await register(db, pii, attributes={"employer": "某公司", "months": "三"})


async def _replied(db: async_sessionmaker[AsyncSession], pii: PiiCipher) -> int:
    case_id = await register(db, pii)
    await fire(db, "handler01", case_id, "accept")
    await fire(db, "handler01", case_id, "start_handling")
    await fire(db, "handler01", case_id, "reply", reply="答复")
    return case_id


async def _review(
    db: async_sessionmaker[AsyncSession], case_id: int, *, at: timedelta = timedelta()
) -> int:
    async with db.begin() as s:
        child = await lifecycle.request_review(
            s,
            staff=await who(s, "window01"),
            case_id=case_id,
            reason="不服",
            now=NOW + at,
            deadlines=DeadlineClock(),
        )
        return child.id


async def test_re_review_is_final_for_the_whole_chain(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """#17 finding 5: after 复查 and 复核 a further review was accepted."""
    from server.cases.statemachine import FinalDecision, ReviewAlreadyRequested

    first = await _replied(db, pii)
    review = await _review(db, first)
    with pytest.raises(ReviewAlreadyRequested):
        await _review(db, first)  # the same reply reviewed twice
    await fire(db, "window01", review, "reply", reply="维持原答复")
    re_review = await _review(db, review)
    await fire(db, "window01", re_review, "reply", reply="复核维持")
    for case_id in (first, review, re_review):
        with pytest.raises(FinalDecision) as err:
            await _review(db, case_id)
        assert err.value.http_status == 409
    async with db() as s:
        levels = list(
            await s.scalars(select(PetitionCase.review_level).where(PetitionCase.id > first))
        )
    assert sorted(levels) == [1, 2]  # nothing was created by the refused requests


async def test_late_review_request_refused_with_the_window_end(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """#17 finding 5: a 复查 requested 70 days after its 30-day window was accepted."""
    from server.cases.statemachine import ReviewWindowClosed

    first = await _replied(db, pii)
    async with db() as s:
        due = await s.scalar(
            select(CaseDeadline.due_at).where(
                CaseDeadline.case_id == first, CaseDeadline.kind == "review_request"
            )
        )
    assert due is not None
    with pytest.raises(ReviewWindowClosed) as err:
        await _review(db, first, at=due - NOW + timedelta(days=70))
    local = due.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{local:%Y年%m月%d日}" in err.value.to_json()["message_zh"]
    assert err.value.code == "review_window_closed"
    # within the window the request is registered
    assert await _review(db, first, at=due - NOW - timedelta(minutes=1))
