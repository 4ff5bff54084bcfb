"""The deadline sweep's runner and the outbox delivery: every SWEEP_INTERVAL_S each node
tries the sweep, one wins the lock, runs the batches (`server.cases.deadline_sweep`) and
then sends what the outbox holds.

The sweep is idempotent (each step is recorded on the row before anything is sent, and every
message has a unique dedupe key in the outbox) and single-runner across nodes (a Redis lock if
Redis is configured, else a PostgreSQL session advisory lock; SQLite is single-node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record
from server.cases.deadline_clock import load_policies
from server.cases.deadline_sweep import SWEEP_BATCH, SweepReport, sweep_batch
from server.cases.escalation import load_contact_phones
from server.cases.models import CaseNotification
from server.tasks import cancel_and_wait

if TYPE_CHECKING:
    from aiohttp import web
    from redis.asyncio import Redis

    from server.notify import Notifier

logger = logging.getLogger(__name__)

SWEEP_LOCK_KEY = 0x0D00CA5E  # PostgreSQL advisory lock id for the deadline sweep
SWEEP_INTERVAL_S = 60.0
SWEEP_LOCK_TTL_MS = 300_000
MAX_SEND_ATTEMPTS = 5


async def deliver_outbox(
    session: AsyncSession, *, notifier: Notifier, now: datetime, limit: int = 200
) -> tuple[int, int]:
    """Send pending messages; failures stay pending (retried) until MAX_SEND_ATTEMPTS."""
    from server.notify import NotificationFailed

    rows = (
        await session.scalars(
            select(CaseNotification)
            .where(CaseNotification.status == "pending")
            .order_by(CaseNotification.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    sent = failed = 0
    for row in rows:
        row.attempts += 1
        try:
            await notifier.send(
                to=row.to,
                channel="email" if row.channel == "email" else "sms",
                subject=row.subject,
                body=row.body,
            )
        except NotificationFailed:
            failed += 1
            if row.attempts >= MAX_SEND_ATTEMPTS:
                row.status = "failed"
            continue
        row.status = "sent"
        row.sent_at = now
        if row.dedupe_key.startswith("eval:"):
            # Evaluation tokens are stored hashed; do not keep the link in the outbox either.
            row.body = row.body.split("/evaluate/")[0] + "/evaluate/[已发送]"
        sent += 1
    return sent, failed


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
    notifier: Notifier,
    redis: Redis | None = None,
    lock_name: str = "onedoor:lock:deadline_sweep",
    max_batches: int = 1000,
) -> SweepReport:
    """One sweep: warnings, overdue, escalations, then outbox delivery.

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
                )
            if n < SWEEP_BATCH:
                break
        while True:
            async with sessionmaker.begin() as session:
                sent, failed = await deliver_outbox(session, notifier=notifier, now=now)
            report.sent += sent
            report.failed += failed
            if sent + failed == 0 or failed:
                break
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


async def deadline_sweeper(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: runs the sweep every SWEEP_INTERVAL_S on every node (one wins the lock)."""
    from server import keys
    from server.db import utcnow

    async def loop() -> None:
        while True:
            try:
                await run_deadline_sweep(
                    app[keys.db], now=utcnow(), notifier=app[keys.notifier], redis=app[keys.redis]
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("deadline sweep failed; retrying next interval")
            await asyncio.sleep(SWEEP_INTERVAL_S)

    task = asyncio.get_running_loop().create_task(loop(), name="deadline-sweeper")
    yield
    await cancel_and_wait([task])
