"""Call queue entries, the `CallQueue` Protocol and `QueueService`, what the pages call.

Every change to an entry is a pure function `CallEntry -> CallEntry` (`claimed`, `cancelled`,
...) applied by `CallQueue.update`, which each implementation makes atomic (one lock in-process,
WATCH/MULTI in Redis): two officers accepting the same call on two nodes, one wins and the other
gets `CallTaken`. Two steps touch the database: `enqueue` opens the reception session through
`ReceptionRooms` (the edge's session store, passed in, so this package does not import
signaling) and `accept` creates or links the case with the accepting officer as first receiver.

Entries expire: a waiting call whose community point stopped polling its status for
`ABANDONED_AFTER` is gone (the agent closed the page), and every other state is kept only as
long as the pages need it (`RETAIN`)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import StaffIdentity
from server.cases.access import check_not_accused_unit
from server.cases.deadline_clock import DeadlineClock
from server.cases.intake import intake
from server.cases.models import Channel
from server.cases.queries import get_case
from server.cases.schemas import IntakeRequest, PetitionerInput
from server.cases.statemachine import ConfidentialTransferBlocked
from server.kernel.crypto import PiiCipher
from server.kernel.db import utcnow
from server.kernel.errors import Conflict, NotFound
from server.sessions import service as sessions
from server.sessions.schemas import SessionKind

Clock = Callable[[], datetime]


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

#: A waiting call whose page has not polled its status for this long was abandoned.
ABANDONED_AFTER = timedelta(minutes=5)
#: How long an entry in each other state stays after its last change.
RETAIN: dict[CallState, timedelta] = {
    CallState.accepted: timedelta(hours=12),
    CallState.callback: timedelta(days=2),
    CallState.ended: timedelta(minutes=15),
    CallState.cancelled: timedelta(minutes=15),
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


@dataclass(frozen=True, slots=True)
class CallEntry:
    id: int
    site_id: int
    site_name: str
    matter_code: str
    matter_name: str
    #: PII: the Redis queue stores these (and `handover_note`) encrypted with the PII cipher.
    resident_name: str
    resident_phone: str
    agent_id: int
    agent_name: str
    agent_present: bool
    waiting_since: datetime
    session_id: int
    room_id: str
    #: Last time the community point's page asked for the call's status.
    seen_at: datetime
    #: After this the entry is gone (see `expiry`); set by every change.
    expires_at: datetime
    state: CallState = CallState.waiting
    accepted_by_id: int | None = None
    accepted_by_name: str = ""
    accepted_at: datetime | None = None
    case_id: int | None = None
    case_no: str = ""
    #: Handed over to another window (the first receiver stays the accepting officer).
    assigned_to_id: int | None = None
    handover_note: str = ""
    invited_ids: frozenset[int] = frozenset()
    callback_at: str = ""
    outcome: str = ""
    ended_at: datetime | None = None
    #: An accusation (检举控告): the unit it accuses, as the community point recorded it. No
    #: officer of that unit may accept the call.
    accused_department_id: int | None = None

    def hidden_from(self, staff: StaffIdentity) -> bool:
        """An accusation's call is not shown to (nor accepted by) the accused unit."""
        return (
            self.accused_department_id is not None
            and staff.department_id == self.accused_department_id
        )

    def waited_s(self, now: datetime) -> int:
        return max(0, int((now - self.waiting_since).total_seconds()))

    def flagged(self, policy: QueuePolicy, now: datetime) -> bool:
        return self.state == CallState.waiting and self.waited_s(now) >= policy.flag_after_s

    def callback_offered(self, policy: QueuePolicy, now: datetime) -> bool:
        return self.state == CallState.waiting and self.waited_s(now) >= policy.callback_after_s

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

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


class CallTaken(Conflict):
    code, message_zh = "call_taken", "该来电已被其他工作人员接听或已结束"


class CallNotWaiting(Conflict):
    """Cancelling or booking a call back after an officer answered (or it ended)."""

    code, message_zh = "call_not_waiting", "该来电已不在等待中"


# ------------------------------------------------------------------ changes (pure)


def expiry(entry: CallEntry, now: datetime) -> datetime:
    """When `entry`, just changed at `now`, is gone."""
    if entry.state == CallState.waiting:
        return entry.seen_at + ABANDONED_AFTER
    return now + RETAIN[entry.state]


def _changed(entry: CallEntry, now: datetime, **changes: object) -> CallEntry:
    new = dataclasses.replace(entry, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(new, expires_at=expiry(new, now))


def seen(entry: CallEntry, now: datetime) -> CallEntry:
    """The community point is still there: a waiting call stays (other states keep theirs)."""
    if entry.state != CallState.waiting:
        return entry
    return _changed(entry, now, seen_at=max(entry.seen_at, now))


def claimed(entry: CallEntry, *, officer_id: int, officer_name: str, now: datetime) -> CallEntry:
    if entry.state != CallState.waiting:
        raise CallTaken(f"call {entry.id} is {entry.state.value}")
    return _changed(
        entry,
        now,
        state=CallState.accepted,
        accepted_by_id=officer_id,
        accepted_by_name=officer_name,
        accepted_at=now,
    )


def released(entry: CallEntry, *, officer_id: int, now: datetime) -> CallEntry:
    """Undo `claimed` (the case could not be created): the call waits again."""
    if entry.state != CallState.accepted or entry.accepted_by_id != officer_id:
        return entry
    return _changed(
        entry,
        now,
        state=CallState.waiting,
        accepted_by_id=None,
        accepted_by_name="",
        accepted_at=None,
        case_id=None,
        case_no="",
        seen_at=max(entry.seen_at, now),
    )


def with_case(entry: CallEntry, *, case_id: int, case_no: str, now: datetime) -> CallEntry:
    return _changed(entry, now, case_id=case_id, case_no=case_no)


def cancelled(entry: CallEntry, *, now: datetime) -> CallEntry:
    if entry.state != CallState.waiting:
        raise CallNotWaiting(f"call {entry.id} is {entry.state.value}")
    return _changed(entry, now, state=CallState.cancelled, ended_at=now)


def callback_booked(entry: CallEntry, *, callback_at: str, now: datetime) -> CallEntry:
    if entry.state != CallState.waiting:
        raise CallNotWaiting(f"call {entry.id} is {entry.state.value}")
    return _changed(entry, now, state=CallState.callback, callback_at=callback_at)


def invited(entry: CallEntry, *, staff_id: int, note: str, now: datetime) -> CallEntry:
    return _changed(
        entry,
        now,
        invited_ids=entry.invited_ids | {staff_id},
        handover_note=note or entry.handover_note,
    )


def handed_over(entry: CallEntry, *, staff_id: int, note: str, now: datetime) -> CallEntry:
    return _changed(entry, now, assigned_to_id=staff_id, handover_note=note or entry.handover_note)


def ended(entry: CallEntry, *, outcome: str, now: datetime) -> CallEntry:
    return _changed(entry, now, state=CallState.ended, outcome=outcome, ended_at=now)


# ------------------------------------------------------------------ the store


class CallQueue(Protocol):
    """Where entries live: `InProcessCallQueue` (one node) or `RedisCallQueue` (every node of a
    deployment sees the same queue). An entry past its `expires_at` is gone for every method."""

    async def next_id(self) -> int:
        """A new entry id, unique across the deployment."""
        ...

    async def add(self, entry: CallEntry, *, now: datetime) -> None: ...

    async def get(self, entry_id: int, *, now: datetime) -> CallEntry:
        """Raises:
        NotFound: no such entry, or it expired."""
        ...

    async def entries(self, *, now: datetime) -> list[CallEntry]:
        """Every live entry, oldest call first."""
        ...

    async def update(
        self, entry_id: int, change: Callable[[CallEntry], CallEntry], *, now: datetime
    ) -> CallEntry:
        """Apply `change` atomically: no other change to the entry, on any node, happens between
        reading it and writing the result. If `change` raises, nothing is written.

        Raises:
            NotFound: no such entry, or it expired.
        """
        ...


def _check_not_accused(entry: CallEntry, department_id: int | None) -> None:
    if entry.accused_department_id is not None and department_id == entry.accused_department_id:
        raise ConfidentialTransferBlocked("a member of the accused unit may not join the call")


def call_not_found(entry_id: int) -> NotFound:
    return NotFound(f"no queued call {entry_id}")


# ------------------------------------------------------------------ what the pages call


@dataclass(frozen=True, slots=True)
class ReceptionRoom:
    session_id: int
    room_id: str


class ReceptionRooms(Protocol):
    """The reception session (signaling room) behind a queued call, provided by whoever owns
    sessions (wired in `server/app.py`)."""

    async def open(
        self,
        session: AsyncSession,
        *,
        title: str,
        site_id: int,
        created_by_id: int,
        now: datetime,
    ) -> ReceptionRoom:
        """Create the session (kind reception, no case yet) in the caller's transaction."""
        ...

    async def link_case(
        self, session: AsyncSession, *, session_id: int, case_id: int, deadlines: DeadlineClock
    ) -> None:
        """Attach the session to the case created (or chosen) when the call is accepted."""
        ...


class SessionReceptionRooms:
    """`ReceptionRooms` kept by the sessions service: a reception session for four, not
    recorded, filed under the case once the call is answered."""

    async def open(
        self,
        session: AsyncSession,
        *,
        title: str,
        site_id: int,
        created_by_id: int,
        now: datetime,
    ) -> ReceptionRoom:
        view = await sessions.create_session(
            session,
            kind=SessionKind.reception,
            title=title,
            case_id=None,
            capacity=4,
            host_site_id=site_id,
            created_by_id=created_by_id,
            recording_allowed=False,
            now=now,
        )
        return ReceptionRoom(session_id=view.id, room_id=view.room_id)

    async def link_case(
        self, session: AsyncSession, *, session_id: int, case_id: int, deadlines: DeadlineClock
    ) -> None:
        await sessions.attach_case(
            session, session_id=session_id, case_id=case_id, deadlines=deadlines
        )


@dataclass(frozen=True, slots=True)
class QueueService:
    """The reception queue as the pages see it: one per app (`keys.call_queue`)."""

    queue: CallQueue
    policy: QueuePolicy
    rooms: ReceptionRooms
    pii: PiiCipher
    #: The deployment's settings for the cases the desk registers (as the REST intake has).
    deadlines: DeadlineClock
    clock: Clock = utcnow
    case_no_format: str = "{admin_code}-{year}-{seq:06d}"

    def now(self) -> datetime:
        return self.clock()

    async def entries(self, *, viewer: StaffIdentity | None = None) -> list[CallEntry]:
        """Every live entry; for a `viewer`, without the calls hidden from them (an accusation
        never shows its caller to the accused unit)."""
        entries = await self.queue.entries(now=self.clock())
        if viewer is None:
            return entries
        return [e for e in entries if not e.hidden_from(viewer)]

    async def get(self, entry_id: int) -> CallEntry:
        return await self.queue.get(entry_id, now=self.clock())

    async def status(self, entry_id: int) -> CallEntry:
        """The community point's page polls this: it keeps a waiting call from expiring."""
        now = self.clock()
        entry = await self.queue.get(entry_id, now=now)
        if entry.state != CallState.waiting:
            return entry
        return await self.queue.update(entry_id, lambda e: seen(e, now), now=now)

    async def enqueue(
        self,
        session: AsyncSession,
        *,
        agent: StaffIdentity,
        site_name: str,
        matter_code: str,
        matter_name: str,
        resident_name: str,
        resident_phone: str,
        accused_department_id: int | None = None,
    ) -> CallEntry:
        """Open a reception session (signaling room) for the community point and queue the
        call. The entry is queued last, so a failed database step queues nothing; if the
        transaction fails after it, the entry points at no session and expires unanswered."""
        now = self.clock()
        room = await self.rooms.open(
            session,
            title=f"远程视频接访 · {site_name} · {matter_name}",
            site_id=agent.site_id,
            created_by_id=agent.staff_id,
            now=now,
        )
        entry_id = await self.queue.next_id()
        await record(
            session,
            actor=agent.actor,
            action="queue.call",
            object_type="call_session",
            object_id=str(room.session_id),
            detail={"entry": entry_id, "site_id": agent.site_id, "matter": matter_code},
        )
        entry = CallEntry(
            id=entry_id,
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
            session_id=room.session_id,
            room_id=room.room_id,
            seen_at=now,
            expires_at=now + ABANDONED_AFTER,
            accused_department_id=accused_department_id,
        )
        await self.queue.add(entry, now=now)
        return entry

    async def accept(
        self,
        session: AsyncSession,
        *,
        entry_id: int,
        officer: StaffIdentity,
        case_id: int | None = None,
    ) -> CallEntry:
        """Claim a waiting call; create its case through the intake pipeline (channel video, the
        officer as first receiver; category, confidentiality, routing and the acceptance
        deadline as for any channel) or link a known case, and attach the reception session.

        Raises:
            NotFound: no such call, or it is hidden from the officer (an accusation against
                their unit: the pipeline would refuse them as its first receiver too).
            CallTaken: another officer (on any node) was faster, or the call is no longer
                waiting.
        """
        now = self.clock()

        def claim(e: CallEntry) -> CallEntry:
            if e.hidden_from(officer):  # the accused unit: to them the call is not there
                raise call_not_found(e.id)
            return claimed(
                e, officer_id=officer.staff_id, officer_name=officer.display_name, now=now
            )

        entry = await self.queue.update(entry_id, claim, now=now)
        try:
            if case_id is not None:
                await check_not_accused_unit(session, staff=officer, case_id=case_id)
                case = await get_case(session, case_id=case_id)
            else:
                case = (
                    await intake(
                        session,
                        pii=self.pii,
                        staff=officer,
                        request=IntakeRequest(
                            channel=Channel.video,
                            site_id=entry.site_id,
                            summary=f"远程视频接访：{entry.matter_name}（{entry.site_name}）",
                            matter_type=entry.matter_code or None,
                            petitioner=PetitionerInput(
                                name=entry.resident_name, phone=entry.resident_phone
                            ),
                            accused_department_id=entry.accused_department_id,
                        ),
                        now=now,
                        deadlines=self.deadlines,
                        case_no_format=self.case_no_format,
                    )
                ).case
            await self.rooms.link_case(
                session, session_id=entry.session_id, case_id=case.id, deadlines=self.deadlines
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
            await self.release(entry_id, officer=officer)  # the transaction rolls back
            raise
        return await self.queue.update(
            entry_id,
            lambda e: with_case(e, case_id=case.id, case_no=case.case_no, now=now),
            now=now,
        )

    async def release(self, entry_id: int, *, officer: StaffIdentity) -> None:
        """The transaction of `accept` failed after it returned (at commit): the call waits
        again, unless someone else holds it by now."""
        now = self.clock()
        await self.queue.update(
            entry_id, lambda e: released(e, officer_id=officer.staff_id, now=now), now=now
        )

    async def cancel(self, entry_id: int) -> CallEntry:
        now = self.clock()
        return await self.queue.update(entry_id, lambda e: cancelled(e, now=now), now=now)

    async def book_callback(self, entry_id: int, *, callback_at: str) -> CallEntry:
        now = self.clock()
        return await self.queue.update(
            entry_id, lambda e: callback_booked(e, callback_at=callback_at, now=now), now=now
        )

    async def invite(
        self, entry_id: int, *, staff_id: int, department_id: int | None, note: str
    ) -> CallEntry:
        """Invite a colleague (`department_id`: theirs) into the reception.

        Raises:
            ConfidentialTransferBlocked: they belong to the unit the accusation accuses.
        """
        return await self._to_colleague(invited, entry_id, staff_id, department_id, note)

    async def hand_over(
        self, entry_id: int, *, staff_id: int, department_id: int | None, note: str
    ) -> CallEntry:
        """Hand the call to a colleague (`department_id`: theirs) at another window.

        Raises:
            ConfidentialTransferBlocked: they belong to the unit the accusation accuses.
        """
        return await self._to_colleague(handed_over, entry_id, staff_id, department_id, note)

    async def _to_colleague(
        self,
        step: Callable[..., CallEntry],
        entry_id: int,
        staff_id: int,
        department_id: int | None,
        note: str,
    ) -> CallEntry:
        """Invite or hand over (`step`), never to the unit an accusation accuses."""
        now = self.clock()

        def change(e: CallEntry) -> CallEntry:
            _check_not_accused(e, department_id)
            return step(e, staff_id=staff_id, note=note, now=now)

        return await self.queue.update(entry_id, change, now=now)

    async def end(self, entry_id: int, *, outcome: str) -> CallEntry:
        now = self.clock()
        return await self.queue.update(
            entry_id, lambda e: ended(e, outcome=outcome, now=now), now=now
        )
