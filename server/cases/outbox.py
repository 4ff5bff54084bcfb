"""The notification outbox (CaseNotification): messages are added here in the caller's
transaction, each under a unique dedupe key, and delivered later by
`server.cases.deadline_service.deliver_outbox`, so a message is never sent twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.models import CaseNotification


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    case_id: int | None,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    channel: str = "sms",
) -> bool:
    """Add a message to the outbox unless one with the same key exists (idempotent)."""
    exists = await session.scalar(
        select(CaseNotification.id).where(CaseNotification.dedupe_key == key)
    )
    if exists is not None:
        return False
    session.add(
        CaseNotification(
            dedupe_key=key,
            case_id=case_id,
            to=to,
            channel=channel,
            subject=subject,
            body=body,
            status="pending",
            attempts=0,
            created_at=now,
            due_at=now,
            last_error="",
        )
    )
    return True


async def enqueue_many(session: AsyncSession, messages: list[dict[str, Any]]) -> None:
    """Add messages to the outbox in one statement; a key already there is skipped (the
    unique dedupe key decides, so concurrent or repeated sweeps cannot send twice)."""
    if not messages:
        return
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        upsert(CaseNotification).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        messages,
    )
