"""One runner for every persisted job table and the periodic tasks that feed them.

    JobRunner.run_once() at clock.now():
      ├─► Periodic "deadline_sweep"          due? run it (it takes its own cross-node lock)
      ├─► JobHandler "deadline_notifications" claim ─► perform ─► finish   (case_notification)
      └─► JobHandler "reminders"              claim ─► perform ─► finish   (scheduled_job)
    then the backlog of each table goes to `on_backlog` (the /metrics gauge).

A job table has the columns `id, status, due_at, attempts, last_error, locked_until, sent_at`;
status is one of PENDING, SENT, FAILED, CANCELLED. One RetryPolicy decides for every table:

- Claiming: one short transaction locks a batch of due jobs (`SELECT id … LIMIT n FOR UPDATE
  SKIP LOCKED`), marks them taken for a lease and counts the attempt (`UPDATE … WHERE id IN
  (…) AND status='pending' AND lease free RETURNING id, attempts`). On PostgreSQL SKIP LOCKED
  lets runners on several nodes take disjoint batches. On SQLite (FOR UPDATE does not exist)
  the engine's BEGIN IMMEDIATE serialises the claims: a single writer at a time.
- The handler performs the job outside that transaction (sending a message may be slow).
- A second transaction records the result: `sent`; `pending` again after an exponential
  backoff; `failed` once the attempts are used up; or the status the handler gave up with. It
  is fenced by the attempt number taken with the claim, so a runner whose lease ran out (and
  whose job another runner took over) records nothing.

A runner that dies after claiming leaves the lease to run out; the job is then retried. (A
crash between the gateway accepting a message and the `sent` commit can repeat that one
message: no SMS/e-mail gateway offers more than at-least-once.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
Terminal = Literal["failed", "cancelled"]
BATCH = 50
POLL_INTERVAL = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How every job table is retried. `late_after`: a pending job this late is backlog."""

    max_attempts: int = 6
    lease: timedelta = timedelta(minutes=5)
    backoff_base: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(hours=1)
    late_after: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.lease <= timedelta(0):
            raise ValueError("a retry policy needs at least one attempt and a positive lease")

    def backoff(self, attempts: int) -> timedelta:
        """1, 2, 4 … minutes after the n-th failed attempt, at most backoff_max."""
        return min(self.backoff_base * (1 << min(max(attempts - 1, 0), 20)), self.backoff_max)


DEFAULT_POLICY = RetryPolicy()


class RetryLater(Exception):
    """The job could not be done now (gateway down): retry after the backoff."""


class GiveUp(Exception):
    """The job can never be done (its session is gone, nobody to send to): stop for good."""

    def __init__(self, reason: str, *, status: Terminal = "cancelled") -> None:
        super().__init__(reason)
        self.status: Terminal = status


class Clock(Protocol):
    def now(self) -> datetime: ...


class JobHandler(Protocol):
    """One job table and what doing one of its jobs means."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> type[Any]:
        """The ORM class of the table (with the job columns named in the module docstring)."""
        ...

    async def perform(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, *, now: datetime
    ) -> None:
        """Do the job (its own transactions). Raises RetryLater or GiveUp; any other
        exception counts as a failed attempt too (and is logged with its traceback)."""
        ...

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        """Called in the transaction that recorded `status` (SENT, PENDING for a retry,
        FAILED or CANCELLED), to update what depends on it."""
        ...


@dataclass(frozen=True, slots=True)
class Claim:
    job_id: int
    #: The job's attempt count after this claim: the finish is fenced by it.
    attempt: int


@dataclass(slots=True)
class RunReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Claimed, but the lease ran out and another runner took the job over.
    lost: int = 0

    def add(self, other: RunReport) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.lost += other.lost


def _due(model: type[Any], now: datetime) -> Any:
    free = model.locked_until.is_(None) | (model.locked_until <= now)
    return (model.status == PENDING) & (model.due_at <= now) & free


async def claim(
    session: AsyncSession, model: type[Any], *, now: datetime, lease: timedelta, limit: int
) -> list[Claim]:
    """Take up to `limit` due jobs of `model` for a lease (see the module docstring).

    Two statements, not `UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`:
    PostgreSQL may rescan such a subquery for the outer UPDATE, and each rescan skips the rows
    the UPDATE has just changed, so one runner took every due job, not `limit` of them.
    """
    ids = (
        await session.scalars(
            select(model.id)
            .where(_due(model, now))
            .order_by(model.due_at, model.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not ids:
        return []
    rows = await session.execute(
        update(model)
        .where(model.id.in_(ids), _due(model, now))
        .values(locked_until=now + lease, attempts=model.attempts + 1)
        .returning(model.id, model.attempts)
        .execution_options(synchronize_session=False)
    )
    return [Claim(int(i), int(a)) for i, a in sorted(rows.all())]


async def _finish(
    session: AsyncSession, model: type[Any], c: Claim, values: dict[str, Any]
) -> bool:
    result = await session.execute(
        update(model)
        .where(model.id == c.job_id, model.attempts == c.attempt, model.status == PENDING)
        .values(locked_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


async def run_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    handler: JobHandler,
    *,
    now: datetime,
    policy: RetryPolicy = DEFAULT_POLICY,
    limit: int = BATCH,
    concurrency: int = 1,
) -> RunReport:
    """Claim one batch of due jobs of `handler`'s table, perform each, record the results.

    `concurrency` jobs of the batch are performed at once (each still in its own transactions
    and with its own fenced result): for jobs that wait on the network, such as an SMS
    gateway, one at a time makes a batch last a round trip and a commit per job.
    """
    model = handler.model
    async with sessionmaker.begin() as session:
        claims = await claim(session, model, now=now, lease=policy.lease, limit=limit)
    report = RunReport(claimed=len(claims))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(c: Claim) -> None:
        async with gate:
            await _run_one(sessionmaker, handler, c, now=now, policy=policy, report=report)

    async with asyncio.TaskGroup() as tasks:
        for c in claims:
            tasks.create_task(one(c))
    return report


async def _run_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    handler: JobHandler,
    c: Claim,
    *,
    now: datetime,
    policy: RetryPolicy,
    report: RunReport,
) -> None:
    model = handler.model
    values: dict[str, Any]
    try:
        await handler.perform(sessionmaker, c.job_id, now=now)
    except GiveUp as e:
        values = {"status": e.status, "last_error": str(e)[:2000]}
    except Exception as e:
        if not isinstance(e, RetryLater):
            logger.exception("%s job %s raised", handler.name, c.job_id)
        error = (str(e) or type(e).__name__)[:2000]
        if c.attempt >= policy.max_attempts:
            values = {"status": FAILED, "last_error": error}
            logger.warning("%s job %s failed for good: %s", handler.name, c.job_id, error)
        else:
            values = {"due_at": now + policy.backoff(c.attempt), "last_error": error}
            logger.info("%s job %s will be retried: %s", handler.name, c.job_id, error)
    else:
        values = {"status": SENT, "sent_at": now, "last_error": ""}
    status = str(values.get("status", PENDING))
    async with sessionmaker.begin() as session:
        if not await _finish(session, model, c, values):
            logger.warning("%s job %s: lease lost, result not recorded", handler.name, c.job_id)
            report.lost += 1
            return
        await handler.finished(session, c.job_id, status, now=now)
    if status == SENT:
        report.sent += 1
    elif status == PENDING:
        report.retrying += 1
    elif status == FAILED:
        report.failed += 1
    else:
        report.cancelled += 1


async def backlog(
    session: AsyncSession, model: type[Any], *, now: datetime, late: timedelta
) -> int:
    """Pending jobs that should have been done more than `late` ago."""
    count = await session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.status == PENDING, model.due_at < now - late)
    )
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class Periodic:
    """A task run every `every` by the runner (first at its first round)."""

    name: str
    every: timedelta
    run: Callable[[datetime], Awaitable[object]]


class JobRunner:
    """Runs the registered periodic tasks and job tables in one loop: a round at start, then
    one every `poll_interval`, at a periodic task's time, or as soon as `wake()` is called.

    `run_once()` is one round (tests drive it with an injected clock); `start()`/`stop()` run
    the loop as one task, stopped with `server.kernel.tasks.cancel_and_wait`.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        policy: RetryPolicy = DEFAULT_POLICY,
        poll_interval: timedelta = POLL_INTERVAL,
        batch: int = BATCH,
        on_backlog: Callable[[str, int], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._db = sessionmaker
        self._clock = clock
        self.policy = policy
        self._poll_interval = poll_interval
        self._batch = batch
        self._on_backlog = on_backlog or (lambda name, count: None)
        self._on_failure = on_failure or (lambda name: None)
        self._handlers: list[JobHandler] = []
        self._periodics: list[Periodic] = []
        self._next_at: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._periodics] + [h.name for h in self._handlers]

    def add_periodic(self, periodic: Periodic) -> None:
        self._check_name(periodic.name)
        self._periodics.append(periodic)

    def add_handler(self, handler: JobHandler) -> None:
        self._check_name(handler.name)
        self._handlers.append(handler)

    def _check_name(self, name: str) -> None:
        if name in self.names:
            raise ValueError(f"{name!r} is registered already")
        if self._task is not None:
            raise RuntimeError("register handlers before the runner starts")

    def wake(self) -> None:
        """Run a round now (e.g. a booking queued invites) rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> dict[str, RunReport]:
        """One round: due periodic tasks, then every job table drained of due jobs."""
        reports: dict[str, RunReport] = {}
        for p in self._periodics:
            now = self._clock.now()
            if self._next_at.get(p.name, now) > now:
                continue
            self._next_at[p.name] = now + p.every
            try:
                await p.run(now)
            except Exception:
                self._on_failure(p.name)
                logger.exception("%s failed; next run in %s", p.name, p.every)
        for h in self._handlers:
            total = reports[h.name] = RunReport()
            try:
                while True:
                    r = await run_due(
                        self._db, h, now=self._clock.now(), policy=self.policy, limit=self._batch
                    )
                    total.add(r)
                    if r.claimed < self._batch:
                        break
                async with self._db() as session:
                    count = await backlog(
                        session, h.model, now=self._clock.now(), late=self.policy.late_after
                    )
                self._on_backlog(h.name, count)
            except Exception:
                self._on_failure(h.name)
                logger.exception("%s round failed; next round in %s", h.name, self._poll_interval)
        return reports

    def _seconds_to_next_round(self) -> float:
        wait = self._poll_interval
        now = self._clock.now()
        for at in self._next_at.values():
            wait = min(wait, at - now)
        return max(wait.total_seconds(), 0.0)

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._seconds_to_next_round()):
                    await self._wake.wait()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, *, name: str = "jobs-runner") -> None:
        """Run the loop as one task (on the running event loop) until `stop()`."""
        if self._task is not None:
            raise RuntimeError("the runner is running already")
        self._task = asyncio.get_running_loop().create_task(self.run_forever(), name=name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has ended (a lost cancellation is repeated)."""
        if self._task is not None:
            await cancel_and_wait([self._task])
