"""Append to and verify the chained audit log (see `server/audit/chain.py` for the MAC key and
the witnesses that make it tamper-evident).

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

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.anchors import AnchorInvalid
from server.audit.chain import AuditKeys, Head, Witness, chain_of, newest, note_appended
from server.audit.models import AuditEntry
from server.kernel.db import utcnow

GENESIS = "0" * 64
_AUDIT_LOCK_KEY = 0x0D00A0D1  # arbitrary, constant: the advisory lock id for audit appends


def _body(
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    ip: str,
    detail: dict[str, Any],
) -> bytes:
    return json.dumps(
        [prev_hash, at.isoformat(), actor, action, object_type, object_id, ip, detail],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()


def _digest(body: bytes, key_id: str, keys: AuditKeys | None) -> str | None:
    """The entry's chain value: HMAC under `key_id`, or plain SHA-256 for the unkeyed entries
    written before the chain was keyed (key id ''). None: the key is not known here."""
    if not key_id:
        return hashlib.sha256(body).hexdigest()
    return keys.mac(key_id, body) if keys is not None else None


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
    when = at or utcnow()
    detail = json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))
    chain = chain_of(session)
    key_id = chain.keys.current_id if chain is not None else ""
    body = _body(
        prev_hash,
        at=when,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        ip=ip,
        detail=detail,
    )
    digest = _digest(body, key_id, chain.keys if chain is not None else None)
    assert digest is not None  # the current key is always known
    entry = AuditEntry(
        at=when,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        ip=ip,
        detail=detail,
        prev_hash=prev_hash,
        hash=digest,
        key_id=key_id,
    )
    session.add(entry)
    await session.flush()
    if chain is not None:
        note_appended(session, chain, Head(entry.id, digest))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""
    #: Entries after the newest witnessed head (committed, not yet witnessed): not an error.
    unwitnessed: int = 0
    witnesses: tuple[str, ...] = ()


async def verify(
    session: AsyncSession,
    *,
    keys: AuditKeys | None = None,
    witnesses: tuple[Witness, ...] | None = None,
    batch: int = 5000,
) -> VerifyResult:
    """Walk the chain in id order, checking each link and MAC, then check every head the
    witnesses hold against the database. Names the first thing that does not match:
    `edited` (content or MAC), `deleted` (a link to a missing predecessor, or a witnessed entry
    gone), `re-chained` (a witnessed entry whose value changed although its own MAC is valid),
    `truncated` (the log ends before the newest witnessed entry), `unkeyed` (an entry without
    a MAC after keyed ones). Keys and witnesses default to the session's chain."""
    chain = chain_of(session)
    if keys is None and chain is not None:
        keys = chain.keys
    if witnesses is None:
        witnesses = chain.witnesses if chain is not None else ()
    witnessed: dict[int, str] = {}
    for witness in witnesses:
        try:
            heads = await witness.heads()
        except AnchorInvalid as e:
            return VerifyResult(False, 0, e.entry_id, str(e), witnesses=(witness.name,))
        for head in heads:
            if witnessed.get(head.entry_id, head.hash) != head.hash:
                return VerifyResult(
                    False,
                    0,
                    head.entry_id,
                    f"re-chained: the witnesses disagree about entry {head.entry_id}",
                    witnesses=tuple(w.name for w in witnesses),
                )
            witnessed[head.entry_id] = head.hash
    prev_hash = GENESIS
    checked = 0
    last_id = 0
    keyed_seen = False
    names = tuple(w.name for w in witnesses)

    def broken(entry_id: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, checked, entry_id, reason, witnesses=names)

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
            break
        for row in rows:
            for missing in [i for i in witnessed if last_id < i < row.id]:
                return broken(missing, f"deleted: witnessed entry {missing} is missing")
            if row.prev_hash != prev_hash:
                return broken(row.id, "deleted: the entry before it was deleted or changed")
            if row.key_id:
                keyed_seen = True
            elif keyed_seen:
                return broken(row.id, "unkeyed: an entry without a MAC after keyed entries")
            body = _body(
                row.prev_hash,
                at=row.at,
                actor=row.actor,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                ip=row.ip,
                detail=row.detail,
            )
            expected = _digest(body, row.key_id, keys)
            if expected is None:
                return broken(
                    row.id, f"unknown key {row.key_id}: set the secret it was written with"
                )
            if not hmac.compare_digest(expected, row.hash):
                return broken(row.id, "edited: the entry's content does not match its MAC")
            seen = witnessed.get(row.id)
            if seen is not None and not hmac.compare_digest(seen, row.hash):
                return broken(row.id, "re-chained: the entry differs from its witnessed value")
            prev_hash = row.hash
            checked += 1
            last_id = row.id
    newest_head = newest(Head(i, h) for i, h in witnessed.items())
    if newest_head is not None and newest_head.entry_id > last_id:
        return broken(
            last_id + 1 if last_id else None,
            f"truncated: the log ends at entry {last_id}, "
            f"the witnesses saw entry {newest_head.entry_id}",
        )
    unwitnessed = last_id - newest_head.entry_id if newest_head is not None else checked
    return VerifyResult(True, checked, unwitnessed=unwitnessed, witnesses=names)


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
    action: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    object_type: str = "",
    object_id: str = "",
) -> list[AuditView]:
    """Newest first; page with `before_id`. `since` inclusive, `until` exclusive (UTC)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if object_id:
        query = query.where(AuditEntry.object_id == object_id)
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


async def key_usage(session: AsyncSession) -> dict[str, int]:
    """MAC key id → how many audit entries are chained under it ('' : the unkeyed entries)."""
    rows = await session.execute(
        select(AuditEntry.key_id, func.count()).group_by(AuditEntry.key_id)
    )
    return {str(k): int(n) for k, n in rows.all()}
