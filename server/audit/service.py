"""Append to and verify the hash-chained audit log.

Appends are serialised (a PostgreSQL transaction-level advisory lock; SQLite's BEGIN IMMEDIATE
already serialises writers) so two transactions can never chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.chain import PENDING_KEY, config_of
from server.audit.models import AuditEntry
from server.db import utcnow

GENESIS = "0" * 64
_AUDIT_LOCK_KEY = 0x0D00A0D1  # arbitrary, constant: the advisory lock id for audit appends


def _digest(
    prev_hash: str,
    *,
    key: bytes | None,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    ip: str,
    detail: dict[str, Any],
) -> str:
    body = json.dumps(
        [prev_hash, at.isoformat(), actor, action, object_type, object_id, ip, detail],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    if key is None:  # the unkeyed chain of earlier versions (sessions without a ChainConfig)
        return hashlib.sha256(body.encode()).hexdigest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    object_type: str = "",
    object_id: str = "",
    ip: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry in the caller's transaction (it commits or rolls back with it)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    prev = await session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    prev_hash = prev or GENESIS
    config = config_of(session.info)
    when = at or utcnow()
    detail = json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))
    entry = AuditEntry(
        at=when,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        ip=ip,
        detail=detail,
        prev_hash=prev_hash,
        hash=_digest(
            prev_hash,
            key=config.key if config else None,
            at=when,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            ip=ip,
            detail=detail,
        ),
    )
    session.add(entry)
    await session.flush()
    # Witnessed outside the database once the caller's transaction commits (server/audit/chain).
    session.info.setdefault(PENDING_KEY, []).append((entry.id, entry.hash))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


async def verify(session: AsyncSession, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain in id order; report the first row whose link or content is broken, or
    that disagrees with the witness, and any witnessed entry missing from the table.

    Detects an edited row (its MAC), a row deleted from the middle (the next row's link), a
    chain recomputed without the key (the MAC of the first rewritten row) or rebuilt as an
    unkeyed chain from the genesis (the witness), and rows deleted from the tail (the witness).
    """
    config = config_of(session.info)
    witnessed = await config.witnessed() if config else {}
    prev_hash = GENESIS
    checked = 0
    last_id = 0
    keyed_seen = False
    witnessed_ids = sorted(witnessed)
    next_witnessed = 0  # index into witnessed_ids: the first not yet met in the walk
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.id > last_id)
                .order_by(AuditEntry.id)
                .limit(batch)
            )
        ).all()
        if not rows:
            if next_witnessed < len(witnessed_ids):
                return VerifyResult(
                    False,
                    checked,
                    witnessed_ids[next_witnessed],
                    "tail truncated: a witnessed entry is missing",
                )
            return VerifyResult(ok=True, checked=checked)
        for row in rows:
            if row.prev_hash != prev_hash:
                return VerifyResult(
                    False, checked, row.id, "chain broken: a row before it was deleted or edited"
                )
            fields: dict[str, Any] = {
                "at": row.at,
                "actor": row.actor,
                "action": row.action,
                "object_type": row.object_type,
                "object_id": row.object_id,
                "ip": row.ip,
                "detail": row.detail,
            }
            key = config.key if config else None
            if row.hash == _digest(row.prev_hash, key=key, **fields):
                keyed_seen = keyed_seen or key is not None
            elif (
                key is None or keyed_seen or row.hash != _digest(row.prev_hash, key=None, **fields)
            ):
                # Unkeyed rows are legacy only before the first keyed one.
                return VerifyResult(False, checked, row.id, "row content was edited")
            if next_witnessed < len(witnessed_ids) and witnessed_ids[next_witnessed] < row.id:
                return VerifyResult(
                    False,
                    checked,
                    witnessed_ids[next_witnessed],
                    "a witnessed entry is missing from the chain",
                )
            if row.id in witnessed and witnessed[row.id] != row.hash:
                return VerifyResult(
                    False, checked, row.id, "row differs from the witness: the chain was rebuilt"
                )
            if next_witnessed < len(witnessed_ids) and witnessed_ids[next_witnessed] == row.id:
                next_witnessed += 1
            prev_hash = row.hash
            checked += 1
            last_id = row.id


@dataclass(frozen=True, slots=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    ip: str
    detail: dict[str, Any]


async def list_entries(
    session: AsyncSession,
    *,
    action_prefix: str = "",
    actor: str = "",
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditView]:
    """Newest first; page with `before_id`."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action_prefix:
        query = query.where(AuditEntry.action.startswith(action_prefix, autoescape=True))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = (await session.scalars(query)).all()
    return [
        AuditView(r.id, r.at, r.actor, r.action, r.object_type, r.object_id, r.ip, r.detail)
        for r in rows
    ]
