"""Call queue entries, the `CallQueue` Protocol, the in-process queue and the two transactions
that touch the database: `enqueue_call` (opens the reception session) and `accept_call`
(creates or links the case with the accepting officer as first receiver)."""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import StaffIdentity
from server.cases.intake import create_case
from server.cases.models import Channel
from server.cases.queries import get_case
from server.cases.schemas import PetitionerInput
from server.crypto import PiiCipher
from server.errors import Conflict, NotFound
from server.sessions.models import CallSession, SessionKind


class CallState(enum.StrEnum):
    waiting = "waiting"
    accepted = "accepted"
    ended = "ended"
    cancelled = "cancelled"
    callback = "callback"  # nobody answered in time: the resident booked a call back


STATE_LABELS = {
    CallState.waiting: "等待接听",
    CallState.accepted: "通话中",
    CallState.ended: "已结束",
    CallState.cancelled: "已取消",
    CallState.callback: "已预约回电",
}


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How long a call may wait before the desk flags it, and before the resident is offered a
    call-back booking instead of waiting on (ONEDOOR_QUEUE_FLAG_AFTER_S,
    ONEDOOR_QUEUE_CALLBACK_AFTER_S; the defaults here are the settings' defaults)."""

    flag_after_s: int = 180
    callback_after_s: int = 600

    def __post_init__(self) -> None:
        if self.flag_after_s < 0 or self.callback_after_s < 0:
            raise ValueError("queue thresholds must not be negative")

    @property
    def flag_after_min(self) -> str:
        """For the pages: "3", "1.5"."""
        return f"{round(self.flag_after_s / 60, 1):g}"

    @property
    def callback_after_min(self) -> str:
        return f"{round(self.callback_after_s / 60, 1):g}"


@dataclass(slots=True)
class CallEntry:
    id: int
    site_id: int
    site_name: str
    matter_code: str
    matter_name: str
    #: PII: kept in memory only; a persisted queue stores these encrypted.
    resident_name: str
    resident_phone: str
    agent_id: int
    agent_name: str
    agent_present: bool
    waiting_since: datetime
    session_id: int
    room_id: str
    state: CallState = CallState.waiting
    accepted_by_id: int | None = None
    accepted_by_name: str = ""
    accepted_at: datetime | None = None
    case_id: int | None = None
    case_no: str = ""
    #: Handed over to another window (the first receiver stays the accepting officer).
    assigned_to_id: int | None = None
    handover_note: str = ""
    invited_ids: set[int] = field(default_factory=set)
    callback_at: str = ""
    outcome: str = ""
    ended_at: datetime | None = None

    def waited_s(self, now: datetime) -> int:
        return max(0, int((now - self.waiting_since).total_seconds()))

    def flagged(self, policy: QueuePolicy, now: datetime) -> bool:
        return self.state == CallState.waiting and self.waited_s(now) >= policy.flag_after_s

    def callback_offered(self, policy: QueuePolicy, now: datetime) -> bool:
        return self.state == CallState.waiting and self.waited_s(now) >= policy.callback_after_s

    def public(self, policy: QueuePolicy, now: datetime) -> dict[str, object]:
        """The desk's JSON view: the resident's phone is masked."""
        phone = self.resident_phone
        return {
            "id": self.id,
            "site_id": self.site_id,
            "site_name": self.site_name,
            "matter_code": self.matter_code,
            "matter_name": self.matter_name,
            "resident_name": self.resident_name,
            "resident_phone": f"{phone[:3]}****{phone[-4:]}" if len(phone) == 11 else "",
            "agent_name": self.agent_name,
            "agent_present": self.agent_present,
            "waiting_since": self.waiting_since.isoformat(),
            "waited_s": self.waited_s(now),
            "flagged": self.flagged(policy, now),
            "callback_offered": self.callback_offered(policy, now),
            "state": self.state.value,
            "state_label": STATE_LABELS[self.state],
            "room_id": self.room_id,
            "accepted_by_name": self.accepted_by_name,
            "case_no": self.case_no,
            "callback_at": self.callback_at,
        }


class CallQueue(Protocol):
    """What the desk and the call pages need; a Redis implementation carries it across nodes."""

    async def add(self, entry: CallEntry) -> CallEntry: ...
    async def next_id(self) -> int: ...
    async def get(self, entry_id: int) -> CallEntry: ...
    async def entries(self) -> list[CallEntry]: ...
    async def claim(
        self, entry_id: int, *, officer_id: int, officer_name: str, now: datetime
    ) -> CallEntry: ...
    async def save(self, entry: CallEntry) -> None: ...


class InProcessCallQueue:
    """One node's queue: a dict guarded by one lock (claims are atomic within the process)."""

    def __init__(self) -> None:
        self._entries: dict[int, CallEntry] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def next_id(self) -> int:
        return next(self._ids)

    async def add(self, entry: CallEntry) -> CallEntry:
        async with self._lock:
            self._entries[entry.id] = entry
        return entry

    async def get(self, entry_id: int) -> CallEntry:
        entry = self._entries.get(entry_id)
        if entry is None:
            raise NotFound(f"no queued call {entry_id}")
        return entry

    async def entries(self) -> list[CallEntry]:
        return sorted(self._entries.values(), key=lambda e: e.waiting_since)

    async def claim(
        self, entry_id: int, *, officer_id: int, officer_name: str, now: datetime
    ) -> CallEntry:
        async with self._lock:
            entry = await self.get(entry_id)
            if entry.state != CallState.waiting:
                raise CallTaken(f"call {entry_id} is {entry.state.value}")
            entry.state = CallState.accepted
            entry.accepted_by_id = officer_id
            entry.accepted_by_name = officer_name
            entry.accepted_at = now
            return entry

    async def save(self, entry: CallEntry) -> None:
        async with self._lock:
            self._entries[entry.id] = entry


class CallTaken(Conflict):
    code, message_zh = "call_taken", "该来电已被其他工作人员接听或已结束"


async def enqueue_call(
    session: AsyncSession,
    queue: CallQueue,
    *,
    agent: StaffIdentity,
    site_name: str,
    matter_code: str,
    matter_name: str,
    resident_name: str,
    resident_phone: str,
    now: datetime,
) -> CallEntry:
    """Open a reception session (signaling room) for the community point and queue the call."""
    from signaling import store  # signaling imports server; import at call time

    view = await store.create_session(
        session,
        kind=SessionKind.reception,
        title=f"远程视频接访 · {site_name} · {matter_name}",
        case_id=None,
        capacity=4,
        host_site_id=agent.site_id,
        created_by_id=agent.staff_id,
        recording_allowed=False,
        now=now,
    )
    entry = CallEntry(
        id=await queue.next_id(),
        site_id=agent.site_id,
        site_name=site_name,
        matter_code=matter_code,
        matter_name=matter_name,
        resident_name=resident_name,
        resident_phone=resident_phone,
        agent_id=agent.staff_id,
        agent_name=agent.display_name,
        agent_present=True,
        waiting_since=now,
        session_id=view.id,
        room_id=view.room_id,
    )
    await queue.add(entry)
    await record(
        session,
        actor=agent.actor,
        action="queue.call",
        object_type="call_session",
        object_id=str(view.id),
        detail={"entry": entry.id, "site_id": agent.site_id, "matter": matter_code},
    )
    return entry


async def accept_call(
    session: AsyncSession,
    queue: CallQueue,
    *,
    pii: PiiCipher,
    entry_id: int,
    officer: StaffIdentity,
    now: datetime,
    case_id: int | None = None,
) -> CallEntry:
    """Claim a waiting call; create its case (channel video, the officer as first receiver) or
    link a known case, and attach the reception session to it. Raises CallTaken if another
    officer was faster."""
    entry = await queue.claim(
        entry_id, officer_id=officer.staff_id, officer_name=officer.display_name, now=now
    )
    try:
        if case_id is not None:
            case = await get_case(session, case_id=case_id)
        else:
            case = await create_case(
                session,
                pii=pii,
                site_id=entry.site_id,
                channel=Channel.video,
                summary=f"远程视频接访：{entry.matter_name}（{entry.site_name}）",
                petitioner=PetitionerInput(name=entry.resident_name, phone=entry.resident_phone),
                first_receiver_id=officer.staff_id,
                now=now,
                matter_type=entry.matter_code or None,
                actor=officer.actor,
            )
        await session.execute(
            update(CallSession).where(CallSession.id == entry.session_id).values(case_id=case.id)
        )
        await record(
            session,
            actor=officer.actor,
            action="queue.answer",
            object_type="case",
            object_id=str(case.id),
            detail={"entry": entry.id, "session_id": entry.session_id},
        )
    except BaseException:
        entry.state = CallState.waiting  # the transaction rolls back: the call waits again
        entry.accepted_by_id, entry.accepted_by_name, entry.accepted_at = None, "", None
        await queue.save(entry)
        raise
    entry.case_id, entry.case_no = case.id, case.case_no
    await queue.save(entry)
    return entry
