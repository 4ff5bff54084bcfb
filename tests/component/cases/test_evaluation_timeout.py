"""评价期限: an unanswered evaluation times out to 未评价 through the deadline sweep, with a
controllable clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import csrf
from server.cases import deadline_service, deadline_sweep, evaluation
from server.cases.evaluation import ReplyNotice
from server.cases.models import (
    CaseDeadline,
    CaseEvent,
    CaseNotification,
    CaseState,
    Evaluation,
    PetitionCase,
)
from server.cases.schemas import EvaluationSubmit
from server.kernel.crypto import PiiCipher
from server.kernel.settings import Settings
from tests.fakes import FakeClock, RecordingNotifier

from .conftest import NOW
from .test_deadlines_and_evaluation import handling_case
from .test_lifecycle import SECRET, fire

VOTE = EvaluationSubmit(staff_rating="satisfied", dept_rating="fair")


async def sweep(
    db: async_sessionmaker[AsyncSession], clock: FakeClock, pii: PiiCipher
) -> deadline_sweep.SweepReport:
    return await deadline_service.run_deadline_sweep(
        db, now=clock.now(), notifier=RecordingNotifier(), pii=pii
    )


async def replied_case(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher, *, days: int | None, at: timedelta
) -> tuple[int, str]:
    """A case replied at NOW + at; returns its id and the evaluation token from the SMS."""
    case_id = await handling_case(db, pii)
    await fire(db, "handler02", case_id, "start_handling")
    notice = ReplyNotice(
        pii=pii, secret=SECRET, base_url="https://xf.example", evaluation_days=days
    )
    await fire(db, "handler02", case_id, "reply", reply="已答复", notice=notice, at=at)
    return case_id, await latest_token(db, case_id)


async def latest_token(db: async_sessionmaker[AsyncSession], case_id: int) -> str:
    async with db() as s:
        body = await s.scalar(
            select(CaseNotification.body)
            .where(CaseNotification.case_id == case_id, CaseNotification.dedupe_key.like("eval:%"))
            .order_by(CaseNotification.id.desc())
            .limit(1)
        )
    assert body is not None
    return body.split("/evaluate/")[1]


async def evaluation_deadline(db: async_sessionmaker[AsyncSession], case_id: int) -> CaseDeadline:
    async with db() as s:
        row = await s.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "evaluation"
            )
        )
    assert row is not None
    return row


async def timeout_events(db: async_sessionmaker[AsyncSession], case_id: int) -> list[CaseEvent]:
    async with db() as s:
        return list(
            await s.scalars(
                select(CaseEvent).where(
                    CaseEvent.case_id == case_id, CaseEvent.type == "evaluation_timeout"
                )
            )
        )


async def test_unanswered_evaluation_times_out_to_unrated(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id, token = await replied_case(db, pii, days=3, at=timedelta())
    dl = await evaluation_deadline(db, case_id)
    # 3 days from Monday 10:00 (Hangzhou): the end of Thursday, local time.
    assert dl.due_at == datetime.fromisoformat("2026-03-05T16:00:00+00:00")
    async with db() as s:
        ev = await s.scalar(select(Evaluation).where(Evaluation.case_id == case_id))
    assert ev is not None and ev.expires_at == dl.due_at  # the link lives as long as the window

    clock = FakeClock(NOW + timedelta(days=2))
    report = await sweep(db, clock, pii)
    assert report.evaluation_timeouts == 0 and report.warnings == 0
    async with db() as s:
        await evaluation.evaluation_for_token(s, secret=SECRET, token=token, now=clock.now())
    clock.current = dl.due_at - timedelta(seconds=1)
    assert (await sweep(db, clock, pii)).evaluation_timeouts == 0

    clock.current = dl.due_at + timedelta(minutes=1)
    report = await sweep(db, clock, pii)
    assert report.evaluation_timeouts == 1
    assert (report.warnings, report.overdue, report.escalations) == (0, 0, 0)  # not staff's
    async with db() as s:
        case = await s.get(PetitionCase, case_id)
        assert case is not None
        assert case.state == CaseState.evaluated and case.evaluated_at == clock.now()
        ev = await s.scalar(select(Evaluation).where(Evaluation.case_id == case_id))
        assert ev is not None and (ev.staff_rating, ev.dept_rating) == ("unrated", "unrated")
        assert ev.used_at is None
    assert (await evaluation_deadline(db, case_id)).status == "lapsed"
    [event] = await timeout_events(db, case_id)
    assert event.payload == {"rating": "unrated", "from": "replied", "to": "evaluated"}
    assert event.actor_id is None and event.at == clock.now()

    # The one-time link no longer works, whatever the clock says.
    for when in (clock.now(), NOW + timedelta(days=1)):
        async with db.begin() as s:
            with pytest.raises(evaluation.EvaluationTimedOut) as err:
                await evaluation.submit_evaluation(
                    s, secret=SECRET, token=token, submit=VOTE, now=when
                )
        assert err.value.http_status == 410

    # Idempotent: later sweeps change nothing.
    clock.current += timedelta(days=1)
    again = await sweep(db, clock, pii)
    assert again.evaluation_timeouts == 0 and again.examined == 0
    assert len(await timeout_events(db, case_id)) == 1

    # 未评价 is not counted as a rating; the case goes on to its revisit.
    async with db() as s:
        from .conftest import who

        board = await evaluation.dashboard(s, staff=await who(s, "supervisor01"), by="staff")
    assert all(r.evaluations == 0 for r in board.rows)
    state = await fire(
        db, "handler02", case_id, "revisit", note="电话回访，已解决", at=timedelta(days=5)
    )
    assert state == CaseState.revisited


async def test_answered_in_time_is_left_alone(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id, token = await replied_case(db, pii, days=None, at=timedelta())
    dl = await evaluation_deadline(db, case_id)
    assert dl.due_at - dl.start_at <= timedelta(days=8)  # the policy's 7 days
    async with db.begin() as s:
        await evaluation.submit_evaluation(
            s, secret=SECRET, token=token, submit=VOTE, now=NOW + timedelta(days=1)
        )
    report = await sweep(db, FakeClock(dl.due_at + timedelta(days=1)), pii)
    assert report.evaluation_timeouts == 0
    assert await timeout_events(db, case_id) == []
    async with db() as s:
        ev = await s.scalar(select(Evaluation).where(Evaluation.case_id == case_id))
    assert ev is not None and ev.staff_rating == "satisfied"
    assert (await evaluation_deadline(db, case_id)).status == "met"


async def test_a_second_reply_starts_a_new_window(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    case_id, first = await replied_case(db, pii, days=3, at=timedelta())
    await fire(db, "handler02", case_id, "reopen", reason="信访人补充材料", at=timedelta(days=1))
    notice = ReplyNotice(pii=pii, secret=SECRET, base_url="https://xf.example", evaluation_days=3)
    await fire(
        db, "handler02", case_id, "reply", reply="补充答复", notice=notice, at=timedelta(days=10)
    )
    second = await latest_token(db, case_id)
    dl = await evaluation_deadline(db, case_id)
    assert dl.status == "open" and dl.start_at == NOW + timedelta(days=10)
    async with db.begin() as s:  # the first reply's unused link was closed by the second
        with pytest.raises(evaluation.EvaluationLinkExpired):
            await evaluation.submit_evaluation(
                s, secret=SECRET, token=first, submit=VOTE, now=NOW + timedelta(days=10, hours=1)
            )
    clock = FakeClock(NOW + timedelta(days=11))
    assert (await sweep(db, clock, pii)).evaluation_timeouts == 0
    clock.current = dl.due_at
    assert (await sweep(db, clock, pii)).evaluation_timeouts == 1
    async with db() as s:
        count = await s.scalar(
            select(func.count())
            .select_from(Evaluation)
            .where(Evaluation.case_id == case_id, Evaluation.staff_rating == "unrated")
        )
    assert count == 2  # neither reply was evaluated: both links end as 未评价
    async with db.begin() as s:
        with pytest.raises(evaluation.EvaluationTimedOut):
            await evaluation.submit_evaluation(
                s, secret=SECRET, token=second, submit=VOTE, now=clock.now()
            )


def test_window_setting_from_the_environment() -> None:
    env = {"ONEDOOR_EVALUATION_WINDOW_DAYS": "10", "ONEDOOR_SECRET_KEY": "x" * 32}
    assert Settings.from_env(env).evaluation_window_days == 10
    assert Settings.from_env({}).evaluation_window_days is None


async def test_the_api_reply_uses_the_configured_window(
    tmp_path: Path, demo_sqlite_url: str
) -> None:
    from server.app import create_app
    from tests.conftest import make_settings, signed_in

    # today's date: without the roll-over a window ending on a weekend is still 2 days long
    app = create_app(
        make_settings(
            tmp_path,
            demo_sqlite_url,
            evaluation_window_days=2,
            deadline_holiday_rollover="none",
        )
    )
    async with TestClient(TestServer(app)) as client:
        token = await signed_in(client, "window_officer")
        me = await (await client.get("/api/me")).json()

        async def post(path: str, body: dict[str, Any]) -> Any:
            resp = await client.post(path, json=body, headers={csrf.HEADER: token})
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

        case = (
            await post(
                "/api/cases",
                {
                    "channel": "window",
                    "site_id": me["site_id"],
                    "summary": "小区路灯损坏多日无人修",
                    "petitioner": {"name": "张三", "phone": "13812345678"},
                },
            )
        )["case"]
        for name in ("accept", "start_handling"):
            await post(f"/api/cases/{case['id']}/transitions", {"transition": name})
        detail = await post(
            f"/api/cases/{case['id']}/transitions", {"transition": "reply", "reply": "已修复"}
        )
    [window] = [d for d in detail["deadlines"] if d["kind"] == "evaluation"]
    length = datetime.fromisoformat(window["due_at"]) - datetime.fromisoformat(window["start_at"])
    assert timedelta(days=2) <= length < timedelta(days=3)
