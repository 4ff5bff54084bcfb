"""Appending to a case's timeline (办理过程) from outside the case engine: a session of the case
started, ended, had no-shows or got its outcome. The event types are labelled in web/labels.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.models import CaseEvent


async def append_event(
    session: AsyncSession,
    *,
    case_id: int,
    type: str,
    at: datetime,
    payload: dict[str, Any] | None = None,
    actor_id: int | None = None,
) -> None:
    """One line on the case's timeline (append-only; nothing else on the case changes)."""
    session.add(
        CaseEvent(case_id=case_id, actor_id=actor_id, type=type, payload=payload or {}, at=at)
    )
    await session.flush()
