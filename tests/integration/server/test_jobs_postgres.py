"""Two job runners (two nodes, two connection pools) on one real PostgreSQL outbox: every
message goes out exactly once, and the runners really overlap (SKIP LOCKED hands them
disjoint batches while the other holds its own)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.cases.deadline_service import NotificationJobs
from server.cases.models import CaseNotification
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.jobs import DEFAULT_POLICY, JobRunner, claim
from server.kernel.notify import Attachment, NotifyChannel

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
MESSAGES = 120


class FixedClock:
    def now(self) -> datetime:
        return NOW


class NodeNotifier:
    """Records every message in the shared list. Node A's first send waits until node B has
    sent one, so B provably works while A holds a claimed batch."""

    def __init__(
        self, sent: list[str], *, wait_for: asyncio.Event | None, signal: asyncio.Event | None
    ) -> None:
        self.sent = sent
        self.wait_for = wait_for
        self.signal = signal

    async def send(
        self,
        *,
        to: str,
        channel: NotifyChannel,
        subject: str,
        body: str,
        attachments: list[Attachment] | None = None,
    ) -> None:
        if self.wait_for is not None:
            # A guard, not a timing: without it a runner that claimed everything would hang
            # the test instead of failing the assertions below.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    await self.wait_for.wait()
        self.sent.append(body)
        if self.signal is not None:
            self.signal.set()
        await asyncio.sleep(0)  # let the other node's tasks in between messages


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    a, b = make_engine(pg_url), make_engine(pg_url)
    yield a, b
    await a.dispose()
    await b.dispose()


async def test_two_runners_deliver_each_message_exactly_once(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    node_a, node_b = (make_sessionmaker(e) for e in engines)
    async with node_a.begin() as session:
        session.add_all(
            CaseNotification(
                dedupe_key=f"m{i}",
                case_id=None,
                to="13900000000",
                channel="sms",
                subject="s",
                body=f"message {i}",
                status="pending",
                attempts=0,
                created_at=NOW,
                due_at=NOW,
                last_error="",
            )
            for i in range(MESSAGES)
        )
    sent: list[str] = []
    b_sent_one = asyncio.Event()
    runners = [JobRunner(node, clock=FixedClock(), batch=10) for node in (node_a, node_b)]
    runners[0].add_handler(NotificationJobs(NodeNotifier(sent, wait_for=b_sent_one, signal=None)))
    runners[1].add_handler(NotificationJobs(NodeNotifier(sent, wait_for=None, signal=b_sent_one)))

    reports = await asyncio.gather(*(r.run_once() for r in runners))

    counts = Counter(sent)
    assert len(counts) == MESSAGES and set(counts.values()) == {1}
    by_node = [r["deadline_notifications"].sent for r in reports]
    assert sum(by_node) == MESSAGES and all(n > 0 for n in by_node), by_node
    async with node_b() as session:
        rows = (
            await session.execute(
                select(CaseNotification.status, func.count()).group_by(CaseNotification.status)
            )
        ).all()
        attempts = await session.scalar(select(func.max(CaseNotification.attempts)))
    assert {status: int(n) for status, n in rows} == {"sent": MESSAGES} and attempts == 1


async def test_a_claim_takes_no_more_than_its_batch(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    node = make_sessionmaker(engines[0])
    async with node.begin() as session:
        session.add_all(
            CaseNotification(
                dedupe_key=f"m{i}", case_id=None, to="1", channel="sms", subject="s", body="b",
                status="pending", attempts=0, created_at=NOW, due_at=NOW, last_error="",
            )
            for i in range(30)
        )  # fmt: skip
    async with node.begin() as session:
        taken = await claim(
            session, CaseNotification, now=NOW, lease=DEFAULT_POLICY.lease, limit=10
        )
    async with node() as session:
        leased = await session.scalar(
            select(func.count()).where(CaseNotification.locked_until.is_not(None))
        )
    assert len(taken) == 10 and leased == 10
