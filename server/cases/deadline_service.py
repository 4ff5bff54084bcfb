"""The deadline sweep's runner and the outbox delivery: the job runner (server.kernel.jobs)
runs the sweep every SWEEP_INTERVAL on every node, one wins the lock and runs the batches
(`server.cases.deadline_sweep`); the outbox is a job table (`NotificationJobs`) delivered
under the same retry policy as every other job table.

The sweep is idempotent (each step is recorded on the row before anything is sent, and every
message has a unique dedupe key in the outbox) and single-runner across nodes (a Redis lock if
Redis is configured, else a PostgreSQL session advisory lock; SQLite is single-node).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record
from server.cases.deadline_clock import load_policies
from server.cases.deadline_sweep import SWEEP_BATCH, SweepReport, sweep_batch
from server.cases.escalation import load_contact_phones
from server.cases.models import CaseNotification
from server.cases.outbox import recipient_of
from server.kernel import clock, jobs
from server.kernel.crypto import DecryptionFailed, PiiCipher
from server.kernel.notify import NotificationFailed, Notifier

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x0D00CA5E  # PostgreSQL advisory lock id for the deadline sweep
SWEEP_INTERVAL = timedelta(seconds=60)
SWEEP_LOCK_TTL_MS = 300_000
OUTBOX_BATCH = 200
#: Messages of a batch handed to the gateway at once (each a round trip to it and a commit).
OUTBOX_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class NotificationJobs:
    """The outbox as a job table of server.kernel.jobs: each pending message is sent once,
    retried with the runner's backoff, and marked failed after its last attempt."""

    notifier: Notifier
    #: Opens residents' numbers (outbox.ResidentPhone); without it a sealed row fails.
    pii: PiiCipher | None = None
    name: str = "deadline_notifications"

    @property
    def model(self) -> type[CaseNotification]:
        return CaseNotification

    async def perform(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, *, now: datetime
    ) -> None:
        async with sessionmaker.begin() as session:
            row = await session.get(CaseNotification, job_id)
            if row is None:
                raise jobs.GiveUp("message gone")
            stored, channel, subject, body = row.to, row.channel, row.subject, row.body
        try:
            to = recipient_of(stored, self.pii)
        except DecryptionFailed as e:
            raise jobs.GiveUp("the recipient's number cannot be decrypted", status="failed") from e
        try:
            await self.notifier.send(
                to=to, channel="email" if channel == "email" else "sms", subject=subject, body=body
            )
        except NotificationFailed as e:
            raise jobs.RetryLater(str(e) or type(e).__name__) from e

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        row = await session.get(CaseNotification, job_id)
        if status == jobs.SENT and row is not None and row.dedupe_key.startswith("eval:"):
            # Evaluation tokens are stored hashed; do not keep the link in the outbox either.
            row.body = row.body.split("/evaluate/")[0] + "/evaluate/[已发送]"
        elif (
            status == jobs.SENT and row is not None and row.dedupe_key.startswith("agreement_link:")
        ):
            # A party's signing link is their credential: once sent, the outbox forgets it.
            head, _, tail = row.body.partition("/sign/")
            row.body = head + "/sign/[已发送] " + tail.partition(" ")[2]


async def deliver_notifications(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    notifier: Notifier,
    now: datetime,
    pii: PiiCipher | None = None,
) -> jobs.RunReport:
    """Send every due outbox message once (what the job runner does each round)."""
    report = jobs.RunReport()
    handler = NotificationJobs(notifier, pii)
    while True:
        batch = await jobs.run_due(
            sessionmaker, handler, now=now, limit=OUTBOX_BATCH, concurrency=OUTBOX_CONCURRENCY
        )
        report.add(batch)
        if batch.claimed < OUTBOX_BATCH:
            return report


@contextlib.asynccontextmanager
async def _single_runner(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None, lock_name: str
) -> AsyncIterator[bool]:
    if redis is not None:
        token = secrets.token_hex(16)
        got = bool(await redis.set(lock_name, token, nx=True, px=SWEEP_LOCK_TTL_MS))
        try:
            yield got
        finally:
            if got:
                await redis.eval(
                    "if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) else return 0 end",
                    1,
                    lock_name,
                    token,
                )
        return
    async with sessionmaker() as lock_session:
        if lock_session.bind.dialect.name != "postgresql":
            yield True  # SQLite: one node; BEGIN IMMEDIATE serialises writers anyway
            return
        got = bool(
            await lock_session.scalar(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": SWEEP_LOCK_KEY}
            )
        )
        try:
            yield got
        finally:
            if got:
                await lock_session.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK_KEY}
                )
            await lock_session.commit()


async def run_deadline_sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    notifier: Notifier | None,
    redis: Redis | None = None,
    lock_name: str = "onedoor:lock:deadline_sweep",
    max_batches: int = 1000,
    tz: str = clock.DEFAULT_TIMEZONE,
    pii: PiiCipher | None = None,
) -> SweepReport:
    """One sweep: warnings, overdue, escalations, then (given a notifier) outbox delivery.
    The job runner sweeps without a notifier: it delivers the outbox itself, as a job table.

    Returns `ran=False` when another node holds the lock. Each batch commits on its own, so a
    crash loses nothing already recorded and a rerun repeats nothing.
    """
    async with _single_runner(sessionmaker, redis, lock_name) as got:
        if not got:
            return SweepReport(ran=False)
        report = SweepReport(ran=True)
        async with sessionmaker.begin() as session:
            policies = await load_policies(session)
            contacts = await load_contact_phones(session)
        cache: dict[tuple[str, int | None], list[str]] = {}  # recipients, for this sweep
        for _ in range(max_batches):
            async with sessionmaker.begin() as session:
                n = await sweep_batch(
                    session,
                    now=now,
                    policies=policies,
                    report=report,
                    cache=cache,
                    contacts=contacts,
                    tz=tz,
                )
            if n < SWEEP_BATCH:
                break
        if notifier is not None:
            delivered = await deliver_notifications(
                sessionmaker, notifier=notifier, now=now, pii=pii
            )
            report.sent = delivered.sent
            report.failed = delivered.retrying + delivered.failed
        if report.escalations or report.overdue or report.evaluation_timeouts:
            async with sessionmaker.begin() as session:
                await record(
                    session,
                    actor="system:sweep",
                    action="case.deadline_sweep",
                    detail={
                        "warnings": report.warnings,
                        "overdue": report.overdue,
                        "escalations": report.escalations,
                        "evaluation_timeouts": report.evaluation_timeouts,
                    },
                )
        return report
