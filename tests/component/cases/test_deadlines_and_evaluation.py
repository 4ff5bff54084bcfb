"""Extensions, pauses, the sweep, and evaluation links, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases import deadline_clock, deadline_service, evaluation, intake, queries
from server.cases.deadline_clock import DeadlineClock
from server.cases.deadlines import ExtensionRefused
from server.cases.evaluation import ReplyNotice
from server.cases.models import (
    CaseDeadline,
    CaseEscalation,
    CaseNotification,
    CaseState,
    Channel,
    PetitionCase,
    RevisitTask,
)
from server.cases.outbox import ResidentPhone
from server.cases.schemas import CaseQuery, EvaluationSubmit, IntakeRequest
from server.kernel.crypto import PiiCipher
from server.kernel.errors import PermissionDenied
from server.org.models import Staff
from tests.fakes import RecordingNotifier

from .conftest import NOW, centre_id, who
from .test_lifecycle import SECRET, fire, register

TZ = ZoneInfo("Asia/Shanghai")


async def handling_case(db: async_sessionmaker[AsyncSession], pii: PiiCipher) -> int:
    case_id = await register(
        db,
        pii,
        matter="property_management",
        summary="物业公司乱收停车费",
        attributes={"estate": "和睦新村"},
    )
    await fire(db, "handler02", case_id, "accept")
    return case_id


async def test_extension_once_within_limit_by_the_leader_only(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await handling_case(db, pii)

    async def extend(username: str, days: int) -> deadline_clock.DeadlineState:
        async with db.begin() as s:
            return await deadline_clock.extend_deadline(
                s,
                staff=await who(s, username),
                case_id=case_id,
                kind="handling",
                days=days,
                reason="需现场勘验",
                now=NOW + timedelta(days=50),
                deadlines=DeadlineClock(),
                petitioner_phone=ResidentPhone("13812345678", pii),
            )

    with pytest.raises(PermissionDenied):
        await extend("handler02", 10)  # not a leader
    with pytest.raises(PermissionDenied):
        await extend("leader01", 10)  # a leader of another department
    with pytest.raises(ExtensionRefused):
        await extend("leader02", 31)
    row = await extend("leader02", 30)
    # 60 days from 2 March end on 1 May (劳动节), rolled over to the end of 6 May; the 30 days
    # count on from 1 May: 31 May is a Sunday, so the extended period ends with 1 June
    assert row.base_due_at.astimezone(TZ) == datetime(2026, 5, 7, tzinfo=TZ)
    assert row.due_at.astimezone(TZ) == datetime(2026, 6, 2, tzinfo=TZ)
    with pytest.raises(ExtensionRefused):
        await extend("leader02", 1)
    async with db() as s:
        told = await s.scalar(select(CaseNotification).where(CaseNotification.case_id == case_id))
        assert told is not None and "需现场勘验" in told.body


async def test_pause_stops_the_clock(db: async_sessionmaker[AsyncSession], pii: PiiCipher) -> None:
    case_id = await handling_case(db, pii)
    async with db.begin() as s:
        await deadline_clock.pause_deadline(
            s,
            staff=await who(s, "leader02"),
            case_id=case_id,
            kind="handling",
            reason="听证",
            now=NOW + timedelta(days=5),
        )
    async with db.begin() as s:
        row = await deadline_clock.resume_deadline(
            s,
            staff=await who(s, "leader02"),
            case_id=case_id,
            kind="handling",
            now=NOW + timedelta(days=12),
            deadlines=DeadlineClock(),
        )
        assert row.due_at - row.base_due_at == timedelta(days=7)
        assert row.status == "open"


async def test_sweep_warns_escalates_once_and_is_idempotent(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await handling_case(db, pii)
    async with db.begin() as s:
        for username, phone in (
            ("handler02", "13900000002"),
            ("leader02", "13900000012"),
            ("dleader01", "13900000099"),
        ):
            staff = await s.get(Staff, (await who(s, username)).staff_id)
            assert staff is not None
            staff.phone = phone
    notifier = RecordingNotifier()
    report = await deadline_service.run_deadline_sweep(
        db, now=NOW + timedelta(days=10), notifier=notifier
    )
    assert report.ran and report.warnings == 0  # nothing due yet
    # due at the end of 6 May (the 60 days end on 1 May, 劳动节, and roll over to 6 May);
    # 10 May 10:00 is over 3 days late: yellow, red, overdue, levels 1 and 2
    late = NOW + timedelta(days=69)
    report = await deadline_service.run_deadline_sweep(db, now=late, notifier=notifier)
    assert report.overdue >= 1 and report.escalations >= 2
    first = [(m.to, m.subject) for m in notifier.sent]
    assert ("13900000002", "红色预警：办理期限") in first
    assert any(to == "13900000012" and "第1级" in subject for to, subject in first)
    assert any(to == "13900000099" and "第2级" in subject for to, subject in first)
    again = await deadline_service.run_deadline_sweep(db, now=late, notifier=notifier)
    assert (again.warnings, again.overdue, again.escalations, again.sent) == (0, 0, 0, 0)
    assert [(m.to, m.subject) for m in notifier.sent] == first
    async with db() as s:
        dl = await s.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "handling"
            )
        )
        assert dl is not None and dl.status == "overdue" and dl.warn_level == "red"
        levels = list(
            await s.scalars(select(CaseEscalation.level).where(CaseEscalation.deadline_id == dl.id))
        )
        assert sorted(levels) == [1, 2]
        overdue = await queries.list_cases(
            s, staff=await who(s, "supervisor01"), query=CaseQuery(overdue=True)
        )
        assert case_id in {c.id for c in overdue}


async def test_evaluation_link_single_use_expiring_and_unforgeable(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id = await handling_case(db, pii)
    await fire(db, "handler02", case_id, "start_handling")
    notice = ReplyNotice(pii=pii, secret=SECRET, base_url="https://xf.example")
    await fire(db, "handler02", case_id, "reply", reply="已处理", notice=notice)
    async with db() as s:
        sms = await s.scalar(
            select(CaseNotification.body).where(
                CaseNotification.dedupe_key.like("eval:%"), CaseNotification.case_id == case_id
            )
        )
    assert sms is not None
    token = sms.split("/evaluate/")[1]
    # the page says what is rated: the case, the unit, the officer and the reply (issue #15)
    async with db() as s:
        subject = await evaluation.evaluation_subject(
            s, secret=SECRET, token=token, now=NOW + timedelta(hours=1)
        )
        case_no = (await s.get(PetitionCase, case_id)).case_no  # type: ignore[union-attr]
    assert subject.case_no == case_no and subject.reply_summary == "已处理"
    assert subject.department == "区住建局" and subject.staff
    vote = EvaluationSubmit(staff_rating="satisfied", dept_rating="dissatisfied", comment="太慢")
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    for bad in (forged, "1.abc.def", "garbage"):
        async with db.begin() as s:
            with pytest.raises(evaluation.InvalidEvaluationLink):
                await evaluation.submit_evaluation(
                    s, secret=SECRET, token=bad, submit=vote, now=NOW
                )
    async with db.begin() as s:
        with pytest.raises(evaluation.EvaluationLinkExpired):
            await evaluation.submit_evaluation(
                s, secret=SECRET, token=token, submit=vote, now=NOW + timedelta(days=8)
            )
    async with db.begin() as s:
        await evaluation.submit_evaluation(
            s, secret=SECRET, token=token, submit=vote, now=NOW + timedelta(days=1)
        )
    async with db.begin() as s:
        with pytest.raises(evaluation.EvaluationLinkUsed):
            await evaluation.submit_evaluation(
                s, secret=SECRET, token=token, submit=vote, now=NOW + timedelta(days=1)
            )
    async with db() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and row.state == CaseState.evaluated
        assert (
            await s.scalar(
                select(func.count()).select_from(RevisitTask).where(RevisitTask.case_id == case_id)
            )
            == 1
        )
        board = await evaluation.dashboard(s, staff=await who(s, "supervisor01"), by="department")
        dept_rows = [r for r in board.rows if r.evaluations]
        assert dept_rows and dept_rows[0].dissatisfied == 1 and dept_rows[0].satisfaction_rate == 0
        staff_board = await evaluation.dashboard(s, staff=await who(s, "supervisor01"), by="staff")
        assert any(r.satisfied == 1 for r in staff_board.rows)


async def test_case_numbers_unique_and_gap_free_under_concurrency(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        window = await who(s, "window01")
        site = await centre_id(s)

    async def one(i: int) -> str:
        async with db.begin() as s:
            result = await intake.intake(
                s,
                pii=pii,
                staff=window,
                now=NOW,
                deadlines=DeadlineClock(),
                request=IntakeRequest(
                    channel=Channel.window, site_id=site, summary=f"第{i}号测试信访事项"
                ),
            )
            if i % 10 == 7:
                raise RuntimeError("rolled back on purpose")  # its number must come back
            return result.case.case_no

    results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
    numbers = sorted(r for r in results if isinstance(r, str))
    assert len(numbers) == 45 and len(set(numbers)) == 45
    seqs = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    assert seqs == list(range(1, 46))


async def test_a_revisit_closes_its_task_and_a_reopened_case_gets_a_handling_deadline(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """#17 finding 12: revisit tasks never closed; a reopened case had no handling deadline."""
    case_id = await handling_case(db, pii)
    await fire(db, "handler02", case_id, "start_handling")
    notice = ReplyNotice(pii=pii, secret=SECRET, base_url="https://xf.example")
    await fire(db, "handler02", case_id, "reply", reply="已处理", notice=notice)
    async with db() as s:
        sms = await s.scalar(
            select(CaseNotification.body).where(
                CaseNotification.dedupe_key.like("eval:%"), CaseNotification.case_id == case_id
            )
        )
    assert sms is not None
    vote = EvaluationSubmit(staff_rating="dissatisfied", dept_rating="dissatisfied")
    async with db.begin() as s:
        await evaluation.submit_evaluation(
            s, secret=SECRET, token=sms.split("/evaluate/")[1], submit=vote, now=NOW
        )
    # the revisit finds it unresolved: back to handling, with a new handling period
    reopened_at = timedelta(days=70)  # the first handling period (60 days) is long over
    await fire(db, "handler02", case_id, "reopen", at=reopened_at, reason="问题未解决")
    async with db() as s:
        task = await s.scalar(select(RevisitTask).where(RevisitTask.case_id == case_id))
        assert task is not None
        assert (task.status, task.resolved, task.new_state) == ("done", False, "handling")
        assert task.note == "问题未解决" and task.done_at == NOW + reopened_at
        handling = await s.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "handling"
            )
        )
        assert handling is not None and handling.status == "open"
        assert handling.due_at > NOW + reopened_at + timedelta(days=50)
    # replied again and revisited as resolved: no task stays open
    await fire(db, "handler02", case_id, "reply", at=reopened_at, reply="已整改", notice=notice)
    await fire(db, "handler02", case_id, "revisit", at=reopened_at, note="已解决")
    async with db() as s:
        open_tasks = await s.scalar(
            select(func.count())
            .select_from(RevisitTask)
            .where(RevisitTask.case_id == case_id, RevisitTask.status == "open")
        )
    assert open_tasks == 0


async def test_an_overdue_deadline_is_neither_extended_nor_paused(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    """#17 finding 6: a handling deadline overdue at escalation level 3 could still be
    extended, and went back to open."""
    from server.cases.deadline_clock import PauseTooLate
    from server.cases.deadlines import ExtensionTooLate

    case_id = await handling_case(db, pii)
    late = NOW + timedelta(days=80)
    await deadline_service.run_deadline_sweep(db, now=late, notifier=RecordingNotifier())

    async def state() -> tuple[str, int]:
        async with db() as s:
            dl = await s.scalar(
                select(CaseDeadline).where(
                    CaseDeadline.case_id == case_id, CaseDeadline.kind == "handling"
                )
            )
            assert dl is not None
            return dl.status, dl.escalation_level

    before = await state()
    assert before[0] == "overdue" and before[1] >= 1
    with pytest.raises(ExtensionTooLate):
        async with db.begin() as s:
            await deadline_clock.extend_deadline(
                s,
                staff=await who(s, "leader02"),
                case_id=case_id,
                kind="handling",
                days=10,
                reason="需现场勘验",
                now=late,
                deadlines=DeadlineClock(),
            )
    with pytest.raises(PauseTooLate):
        async with db.begin() as s:
            await deadline_clock.pause_deadline(
                s,
                staff=await who(s, "leader02"),
                case_id=case_id,
                kind="handling",
                reason="听证",
                now=late,
            )
    assert await state() == before
