"""The job runner on a real (SQLite) job table with an injected clock: claiming, backoff,
attempts running out, a lease running out and another runner taking over, giving up, periodic
tasks, the backlog report, and a clean stop. Time moves only when the test moves the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases.models import CaseNotification
from server.kernel import jobs
from server.kernel.db import make_engine, make_sessionmaker
from tests.fakes import FakeClock

Maker = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@dataclass
class ScriptedJobs:
    """A handler over the outbox table whose jobs do what the test says: "ok", "retry",
    "give_up", or a callable run during the job (to act while a runner holds it)."""

    script: dict[int, list[str | Callable[[], object]]] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    finished_with: list[tuple[int, str]] = field(default_factory=list)
    name: str = "scripted"

    @property
    def model(self) -> type[CaseNotification]:
        return CaseNotification

    async def perform(self, sessionmaker: Maker, job_id: int, *, now: datetime) -> None:
        steps = self.script.get(job_id) or ["ok"]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if callable(step):
            result = step()
            if hasattr(result, "__await__"):
                await result
            step = "ok"
        if step == "retry":
            raise jobs.RetryLater("gateway unreachable")
        if step == "give_up":
            raise jobs.GiveUp("nobody to tell", status="failed")
        if step == "boom":
            raise RuntimeError("a bug")
        self.done.append(job_id)

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        self.finished_with.append((job_id, status))


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Maker]:
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def add_jobs(db: Maker, n: int, *, due_at: datetime = NOW) -> list[int]:
    async with db.begin() as session:
        rows = [
            CaseNotification(
                dedupe_key=f"k{i}-{due_at.isoformat()}",
                case_id=None,
                to="13900000000",
                channel="sms",
                subject="s",
                body=f"b{i}",
                status="pending",
                attempts=0,
                created_at=due_at,
                due_at=due_at,
                last_error="",
            )
            for i in range(n)
        ]
        session.add_all(rows)
        await session.flush()
        return [r.id for r in rows]


async def row(db: Maker, job_id: int) -> CaseNotification:
    async with db() as session:
        found = await session.get(CaseNotification, job_id)
    assert found is not None
    return found


async def test_due_jobs_are_done_once_and_future_ones_wait(db: Maker) -> None:
    now_ids = await add_jobs(db, 3)
    [later] = await add_jobs(db, 1, due_at=NOW + MINUTE)
    handler = ScriptedJobs()
    report = await jobs.run_due(db, handler, now=NOW)
    assert (report.claimed, report.sent) == (3, 3)
    assert handler.done == now_ids
    assert handler.finished_with == [(i, "sent") for i in now_ids]
    assert (await jobs.run_due(db, handler, now=NOW)).claimed == 0  # never twice
    first = await row(db, now_ids[0])
    assert (first.status, first.sent_at, first.attempts, first.locked_until) == (
        "sent",
        NOW,
        1,
        None,
    )
    assert (await jobs.run_due(db, handler, now=NOW + MINUTE)).sent == 1
    assert handler.done[-1] == later


async def test_a_failed_attempt_is_retried_after_the_backoff(db: Maker) -> None:
    [job] = await add_jobs(db, 1)
    handler = ScriptedJobs({job: ["retry", "retry", "ok"]})
    report = await jobs.run_due(db, handler, now=NOW)
    assert report.retrying == 1
    r = await row(db, job)
    assert (r.status, r.attempts, r.due_at, r.last_error) == (
        "pending",
        1,
        NOW + MINUTE,
        "gateway unreachable",
    )
    assert handler.finished_with == [(job, "pending")]
    assert (await jobs.run_due(db, handler, now=NOW + MINUTE / 2)).claimed == 0  # backoff
    await jobs.run_due(db, handler, now=NOW + MINUTE)
    assert (await row(db, job)).due_at == NOW + 3 * MINUTE  # then two minutes
    assert (await jobs.run_due(db, handler, now=NOW + 3 * MINUTE)).sent == 1
    r = await row(db, job)
    assert (r.status, r.attempts, r.last_error) == ("sent", 3, "")


async def test_attempts_exhausted_marks_the_job_failed(db: Maker) -> None:
    [job, crashing] = await add_jobs(db, 2)
    handler = ScriptedJobs({job: ["retry"], crashing: ["boom"]})
    policy = jobs.RetryPolicy(max_attempts=3)
    now = NOW
    statuses = []
    for _ in range(5):
        await jobs.run_due(db, handler, now=now, policy=policy)
        statuses.append((await row(db, job)).status)
        now += timedelta(hours=2)
    assert statuses == ["pending", "pending", "failed", "failed", "failed"]
    r = await row(db, job)
    assert (r.attempts, r.last_error) == (3, "gateway unreachable")
    assert (await row(db, crashing)).status == "failed"  # an unexpected error counts too
    assert (await row(db, crashing)).last_error == "a bug"
    assert handler.finished_with[-1] == (crashing, "failed")


async def test_giving_up_is_final(db: Maker) -> None:
    [job] = await add_jobs(db, 1)
    handler = ScriptedJobs({job: ["give_up"]})
    assert (await jobs.run_due(db, handler, now=NOW)).failed == 1
    r = await row(db, job)
    assert (r.status, r.last_error, r.attempts) == ("failed", "nobody to tell", 1)
    assert (await jobs.run_due(db, handler, now=NOW + timedelta(days=1))).claimed == 0


async def test_a_leased_job_waits_for_its_lease_and_is_then_taken_over(db: Maker) -> None:
    [job] = await add_jobs(db, 1)
    policy = jobs.DEFAULT_POLICY
    async with db.begin() as session:  # a runner claims it, then dies
        [claim] = await jobs.claim(session, CaseNotification, now=NOW, lease=policy.lease, limit=5)
    assert claim == jobs.Claim(job, 1)
    handler = ScriptedJobs()
    assert (await jobs.run_due(db, handler, now=NOW + policy.lease - MINUTE)).claimed == 0
    report = await jobs.run_due(db, handler, now=NOW + policy.lease)
    assert report.sent == 1 and handler.done == [job]
    assert (await row(db, job)).attempts == 2


async def test_a_runner_whose_lease_ran_out_records_nothing(db: Maker) -> None:
    """Runner A is still sending when its lease runs out; runner B takes the job over and
    records it sent. A's late result is dropped (fenced by the attempt number)."""
    [job] = await add_jobs(db, 1)
    policy = jobs.DEFAULT_POLICY
    b = ScriptedJobs()
    b_reports: list[jobs.RunReport] = []

    async def b_takes_over() -> None:
        b_reports.append(await jobs.run_due(db, b, now=NOW + policy.lease + MINUTE))

    a = ScriptedJobs({job: [b_takes_over, "retry"]})
    a_report = await jobs.run_due(db, a, now=NOW)
    assert b_reports[0].sent == 1 and b.done == [job]
    assert (a_report.claimed, a_report.lost, a_report.sent) == (1, 1, 0)
    assert a.finished_with == []
    r = await row(db, job)
    assert (r.status, r.attempts, r.sent_at) == ("sent", 2, NOW + policy.lease + MINUTE)


async def test_the_runner_runs_periodic_tasks_on_time_and_reports_the_backlog(db: Maker) -> None:
    clock = FakeClock(NOW)
    sweeps: list[datetime] = []
    backlog: dict[str, int] = {}
    failures: list[str] = []

    async def sweep(now: datetime) -> None:
        sweeps.append(now)

    async def broken(now: datetime) -> None:
        raise RuntimeError("broken periodic task")

    runner = jobs.JobRunner(
        db,
        clock=clock,
        batch=2,
        on_backlog=backlog.__setitem__,
        on_failure=failures.append,
    )
    handler = ScriptedJobs()
    runner.add_periodic(jobs.Periodic("sweep", every=timedelta(seconds=60), run=sweep))
    runner.add_periodic(jobs.Periodic("broken", every=timedelta(seconds=60), run=broken))
    runner.add_handler(handler)
    with pytest.raises(ValueError, match="registered already"):
        runner.add_handler(ScriptedJobs())
    assert runner.names == ["sweep", "broken", "scripted"]

    ids = await add_jobs(db, 5, due_at=NOW - timedelta(minutes=10))  # five, 10 min late
    reports = await runner.run_once()
    assert reports["scripted"].sent == 5 and handler.done == ids  # drained past the batch
    assert sweeps == [NOW] and failures == ["broken"]
    assert backlog == {"scripted": 0}

    clock.current += timedelta(seconds=30)
    await runner.run_once()
    assert sweeps == [NOW]  # not due yet
    clock.current += timedelta(seconds=30)
    await runner.run_once()
    assert sweeps == [NOW, NOW + MINUTE] and failures == ["broken", "broken"]

    [stuck] = await add_jobs(db, 1, due_at=clock.current - timedelta(minutes=10))
    handler.script[stuck] = ["retry"]
    await runner.run_once()
    clock.current += timedelta(minutes=10)  # its backoff passed long ago: it is late again
    backlog.clear()
    async with db.begin() as session:  # held by another runner: counted, not done
        await jobs.claim(
            session, CaseNotification, now=clock.current, lease=timedelta(hours=1), limit=1
        )
    await runner.run_once()
    assert backlog == {"scripted": 1}


async def test_the_runner_stops_cleanly(db: Maker) -> None:
    runner = jobs.JobRunner(db, clock=FakeClock(NOW), poll_interval=timedelta(hours=1))
    runner.add_handler(ScriptedJobs())
    await add_jobs(db, 1)
    runner.start()
    assert runner.running
    with pytest.raises(RuntimeError, match="running already"):
        runner.start()
    with pytest.raises(RuntimeError, match="before the runner starts"):
        runner.add_handler(ScriptedJobs(name="late"))
    runner.wake()
    await runner.stop()
    assert not runner.running
