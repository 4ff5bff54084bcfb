"""Deadline rows: opening, meeting, extending and pausing them, and the sweep that raises
warnings, marks overdue, escalates (三级抄告) and delivers notifications.

The sweep is idempotent (each step is recorded on the row before anything is sent, and every
message has a unique dedupe key in the outbox) and single-runner across nodes (a Redis lock if
Redis is configured, else a PostgreSQL session advisory lock; SQLite is single-node). The job
runner (server.kernel.jobs) runs it every SWEEP_INTERVAL and delivers the outbox
(`NotificationJobs`) under the same retry policy as every other job table.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.deadlines import (
    DayMode,
    HolidayCalendar,
    Pause,
    Policy,
    WarnLevel,
    check_extension,
    effective_due,
    sweep_step,
)
from server.cases.escalation import ContactKey, contacts_for, load_contact_phones
from server.cases.models import (
    CaseDeadline,
    CaseEscalation,
    CaseEvent,
    CaseNotification,
    CaseState,
    DeadlinePause,
    DeadlinePolicy,
    Evaluation,
    Holiday,
    PetitionCase,
)
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from server.kernel import clock, jobs
from server.notify import NotificationFailed, Notifier
from server.org.models import Role, Staff, StaffRole

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

OPEN = ("open", "overdue")
SWEEP_LOCK_KEY = 0x0D00CA5E  # PostgreSQL advisory lock id for the deadline sweep
SWEEP_BATCH = 1000
SWEEP_INTERVAL = timedelta(seconds=60)
SWEEP_LOCK_TTL_MS = 300_000
OUTBOX_BATCH = 200
#: The petitioner's evaluation window (评价期限): when it runs out unanswered the sweep records
#: the evaluation as 未评价 instead of raising warnings (it is not the staff's deadline).
EVALUATION = "evaluation"
UNRATED = "unrated"


class DeadlineNotOpen(Conflict):
    code, message_zh = "deadline_not_open", "该期限已结束或不存在"


def policy_of(row: DeadlinePolicy) -> Policy:
    return Policy(
        kind=row.kind,
        limit_days=row.limit_days,
        day_mode=DayMode(row.day_mode),
        yellow_days=row.yellow_days,
        extension_max_days=row.extension_max_days,
        escalation_days=tuple(row.escalation_days or ()),
    )


async def load_policies(session: AsyncSession) -> dict[str, DeadlinePolicy]:
    return {row.kind: row for row in await session.scalars(select(DeadlinePolicy))}


async def load_calendar(session: AsyncSession) -> HolidayCalendar:
    rows = (await session.scalars(select(Holiday))).all()
    return HolidayCalendar(
        days_off=frozenset(r.day for r in rows if not r.workday),
        makeup_workdays=frozenset(r.day for r in rows if r.workday),
    )


async def open_deadline(
    session: AsyncSession,
    *,
    case_id: int,
    kind: str,
    start: datetime,
    now: datetime,
    tz: ZoneInfo,
    limit_days: int | None = None,
    restart: bool = False,
) -> CaseDeadline:
    """Start the clock for `kind` (idempotent per case and kind: an existing row is kept).

    `restart=True` starts an existing row again from `start` (a case replied a second time
    after reopening gets a new evaluation and revisit window); its pauses are dropped.
    """
    existing = await session.scalar(
        select(CaseDeadline).where(CaseDeadline.case_id == case_id, CaseDeadline.kind == kind)
    )
    if existing is not None and not restart:
        return existing
    prow = await session.get(DeadlinePolicy, kind)
    if prow is None:
        raise NotFound(f"no deadline policy for {kind!r} (reference data)")
    policy = policy_of(prow)
    if limit_days is not None:
        policy = Policy(
            policy.kind,
            limit_days,
            policy.day_mode,
            policy.yellow_days,
            policy.extension_max_days,
            policy.escalation_days,
        )
    calendar = (
        await load_calendar(session) if policy.day_mode == DayMode.working else HolidayCalendar()
    )
    due = effective_due(start=start, policy=policy, calendar=calendar, tz=tz)
    step = sweep_step(
        due=due, policy=policy, now=now, current_warn=WarnLevel.none, current_escalation=0
    )
    values: dict[str, Any] = {
        "start_at": start,
        "base_due_at": due,
        "due_at": due,
        "status": "open",
        "warn_level": "none",
        "escalation_level": 0,
        # Anything already due is left for the sweep, so notifications go one way only.
        "next_action_at": now
        if step.new_warnings or step.new_escalations or (kind == EVALUATION and due <= now)
        else step.next_action_at,
        "extension_days": 0,
    }
    if existing is not None:
        await session.execute(delete(DeadlinePause).where(DeadlinePause.deadline_id == existing.id))
        values |= {
            "extension_reason": None,
            "extension_approver_id": None,
            "extended_at": None,
            "met_at": None,
        }
        for key, value in values.items():
            setattr(existing, key, value)
        await session.flush()
        return existing
    row = CaseDeadline(case_id=case_id, kind=kind, **values)
    session.add(row)
    await session.flush()
    return row


async def meet_deadline(session: AsyncSession, *, case_id: int, kind: str, now: datetime) -> None:
    await session.execute(
        update(CaseDeadline)
        .where(
            CaseDeadline.case_id == case_id,
            CaseDeadline.kind == kind,
            CaseDeadline.status.in_((*OPEN, "paused")),
        )
        .values(status="met", met_at=now, next_action_at=None)
    )


async def cancel_deadlines(
    session: AsyncSession, *, case_id: int, now: datetime, keep: tuple[str, ...] = ()
) -> None:
    await session.execute(
        update(CaseDeadline)
        .where(
            CaseDeadline.case_id == case_id,
            CaseDeadline.status.in_((*OPEN, "paused")),
            CaseDeadline.kind.not_in(keep),
        )
        .values(status="cancelled", met_at=now, next_action_at=None)
    )


async def _deadline_for_update(session: AsyncSession, case_id: int, kind: str) -> CaseDeadline:
    row = await session.scalar(
        select(CaseDeadline)
        .where(CaseDeadline.case_id == case_id, CaseDeadline.kind == kind)
        .with_for_update()
    )
    if row is None:
        raise DeadlineNotOpen(f"case {case_id} has no {kind} deadline")
    return row


async def _recompute(
    session: AsyncSession, row: CaseDeadline, *, now: datetime, tz: ZoneInfo
) -> None:
    prow = await session.get(DeadlinePolicy, row.kind)
    assert prow is not None
    policy = policy_of(prow)
    calendar = await load_calendar(session)
    # Keep the row's own base due (matter-type overrides) by deriving the limit from it.
    pauses = [
        Pause(p.start_at, p.end_at)
        for p in await session.scalars(
            select(DeadlinePause).where(DeadlinePause.deadline_id == row.id)
        )
    ]
    due = effective_due(
        start=row.start_at,
        policy=policy,
        calendar=calendar,
        tz=tz,
        pauses=pauses,
        extension_days=row.extension_days,
        now=now,
    )
    # Offset for a matter-type specific limit (base_due differs from the policy's).
    policy_base = effective_due(start=row.start_at, policy=policy, calendar=calendar, tz=tz)
    due += row.base_due_at - policy_base
    row.due_at = due
    step = sweep_step(
        due=due,
        policy=policy,
        now=now,
        current_warn=WarnLevel(row.warn_level),
        current_escalation=row.escalation_level,
    )
    row.next_action_at = (
        now
        if step.new_warnings or step.new_escalations or (step.overdue != (row.status == "overdue"))
        else step.next_action_at
    )
    if row.status == "overdue" and not step.overdue:
        row.status = "open"


async def extend_deadline(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    days: int,
    reason: str,
    now: datetime,
    tz: ZoneInfo,
    petitioner_phone: str | None = None,
) -> CaseDeadline:
    """延期: once, at most the policy's maximum, approved by a leader of the handling department.

    Raises:
        PermissionDenied: not a dept_leader, or not of the lead department.
        ExtensionRefused: a second extension, or more days than allowed.
    """
    if not staff.can(Action.case_extend_approve):
        raise PermissionDenied("only a department leader approves an extension")
    case = await session.get(PetitionCase, case_id)
    if case is None:
        raise NotFound(f"case {case_id} does not exist")
    if case.lead_dept_id is not None and staff.department_id != case.lead_dept_id:
        raise PermissionDenied("only the leader of the handling department approves it")
    row = await _deadline_for_update(session, case_id, kind)
    if row.status not in (*OPEN, "paused"):
        raise DeadlineNotOpen(f"the {kind} deadline is {row.status}")
    prow = await session.get(DeadlinePolicy, kind)
    assert prow is not None
    check_extension(policy_of(prow), days=days, already_extended=row.extension_days > 0)
    if not reason.strip():
        raise InvalidInput("an extension needs a reason", field="reason")
    row.extension_days = days
    row.extension_reason = reason
    row.extension_approver_id = staff.staff_id
    row.extended_at = now
    await _recompute(session, row, now=now, tz=tz)
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="deadline_extended",
            payload={
                "kind": kind,
                "days": days,
                "reason": reason,
                "due_at": row.due_at.isoformat(),
            },
            at=now,
        )
    )
    if petitioner_phone:
        # The petitioner is told the reason (信访工作条例).
        await enqueue(
            session,
            key=f"ext:{row.id}",
            case_id=case_id,
            to=petitioner_phone,
            subject="信访事项办理延期告知",
            body=f"您的信访事项办理期限延长{days}日，理由：{reason}",
            now=now,
        )
    await record(
        session,
        actor=staff.actor,
        action="case.deadline_extend",
        object_type="case",
        object_id=str(case_id),
        detail={"kind": kind, "days": days},
    )
    return row


async def pause_deadline(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    reason: str,
    now: datetime,
) -> CaseDeadline:
    """Stop the clock (e.g. a hearing 听证, an expert appraisal), with reason and approver."""
    if not (staff.can(Action.case_extend_approve) or staff.can(Action.case_supervise)):
        raise PermissionDenied("a leader or supervisor approves a pause")
    row = await _deadline_for_update(session, case_id, kind)
    if row.status not in OPEN:
        raise DeadlineNotOpen(f"the {kind} deadline is {row.status}")
    session.add(
        DeadlinePause(deadline_id=row.id, reason=reason, approver_id=staff.staff_id, start_at=now)
    )
    row.status = "paused"
    row.next_action_at = None
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="deadline_paused",
            payload={"kind": kind, "reason": reason},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.deadline_pause",
        object_type="case",
        object_id=str(case_id),
        detail={"kind": kind},
    )
    return row


async def resume_deadline(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    now: datetime,
    tz: ZoneInfo,
) -> CaseDeadline:
    if not (staff.can(Action.case_extend_approve) or staff.can(Action.case_supervise)):
        raise PermissionDenied("a leader or supervisor resumes a paused deadline")
    row = await _deadline_for_update(session, case_id, kind)
    if row.status != "paused":
        raise DeadlineNotOpen(f"the {kind} deadline is not paused")
    pause = await session.scalar(
        select(DeadlinePause).where(
            DeadlinePause.deadline_id == row.id, DeadlinePause.end_at.is_(None)
        )
    )
    if pause is not None:
        pause.end_at = now
    row.status = "open"
    await session.flush()
    await _recompute(session, row, now=now, tz=tz)
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="deadline_resumed",
            payload={"kind": kind, "due_at": row.due_at.isoformat()},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.deadline_resume",
        object_type="case",
        object_id=str(case_id),
        detail={"kind": kind},
    )
    return row


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


# --- the sweep ---------------------------------------------------------------------------


@dataclass
class SweepReport:
    ran: bool
    examined: int = 0
    warnings: int = 0
    overdue: int = 0
    escalations: int = 0
    evaluation_timeouts: int = 0
    sent: int = 0
    failed: int = 0
    details: list[str] = field(default_factory=list)


async def _recipients(
    session: AsyncSession,
    *,
    role: str,
    department_id: int | None,
    cache: dict[tuple[str, int | None], list[str]] | None = None,
) -> list[str]:
    if role not in ("dept_leader", "dept_handler"):
        department_id = None
    if cache is not None and (role, department_id) in cache:
        return cache[(role, department_id)]
    phones = await _query_recipients(session, role=role, department_id=department_id)
    if cache is not None:
        cache[(role, department_id)] = phones
    return phones


async def _query_recipients(
    session: AsyncSession, *, role: str, department_id: int | None
) -> list[str]:
    stmt = (
        select(Staff.phone)
        .join(StaffRole, StaffRole.staff_id == Staff.id)
        .where(StaffRole.role == Role(role), Staff.active.is_(True))
    )
    if role in ("dept_leader", "dept_handler") and department_id is not None:
        stmt = stmt.where(Staff.department_id == department_id)
    return [p for p in await session.scalars(stmt) if p]


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


async def _sweep_batch(
    session: AsyncSession,
    *,
    now: datetime,
    policies: dict[str, DeadlinePolicy],
    report: SweepReport,
    cache: dict[tuple[str, int | None], list[str]],
    contacts: dict[ContactKey, list[str]] | None = None,
    tz: str = clock.DEFAULT_TIMEZONE,
) -> int:
    """One batch of due deadlines: the decisions are made in Python (`sweep_step`), and the
    writes go out as one UPDATE and one INSERT per table (executemany), not row by row."""
    rows = (
        await session.execute(
            select(
                CaseDeadline.id,
                CaseDeadline.case_id,
                CaseDeadline.kind,
                CaseDeadline.due_at,
                CaseDeadline.status,
                CaseDeadline.warn_level,
                CaseDeadline.escalation_level,
                PetitionCase.case_no,
                PetitionCase.lead_dept_id,
            )
            .join(PetitionCase, PetitionCase.id == CaseDeadline.case_id)
            .where(CaseDeadline.status.in_(OPEN), CaseDeadline.next_action_at <= now)
            .order_by(CaseDeadline.next_action_at, CaseDeadline.id)
            .limit(SWEEP_BATCH)
            .with_for_update(of=CaseDeadline, skip_locked=True)
        )
    ).all()
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    escalations: list[dict[str, Any]] = []
    messages: dict[str, dict[str, Any]] = {}

    def message(key: str, case_id: int, to: str, subject: str, body: str) -> None:
        messages.setdefault(
            key,
            {
                "dedupe_key": key,
                "case_id": case_id,
                "to": to,
                "channel": "sms",
                "subject": subject,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "due_at": now,
                "last_error": "",
            },
        )

    def event(case_id: int, type_: str, payload: dict[str, Any]) -> None:
        events.append(
            {"case_id": case_id, "actor_id": None, "type": type_, "payload": payload, "at": now}
        )

    timed_out: list[int] = []
    for dl in rows:
        report.examined += 1
        if dl.kind == EVALUATION:
            lapsed = now >= dl.due_at
            if lapsed:
                timed_out.append(dl.case_id)
            updates.append(
                {
                    "id": dl.id,
                    "status": "lapsed" if lapsed else dl.status,
                    "warn_level": dl.warn_level,
                    "escalation_level": dl.escalation_level,
                    "next_action_at": None if lapsed else dl.due_at,
                }
            )
            continue
        prow = policies.get(dl.kind)
        if prow is None:
            updates.append(
                {
                    "id": dl.id,
                    "status": dl.status,
                    "warn_level": dl.warn_level,
                    "escalation_level": dl.escalation_level,
                    "next_action_at": None,
                }
            )
            continue
        step = sweep_step(
            due=dl.due_at,
            policy=policy_of(prow),
            now=now,
            current_warn=WarnLevel(dl.warn_level),
            current_escalation=dl.escalation_level,
        )
        label = prow.label_zh
        roles = list(prow.escalation_roles or [])
        for level in step.new_warnings:
            report.warnings += 1
            colour = "黄色" if level == WarnLevel.yellow else "红色"
            body = (
                f"案件{dl.case_no}的{label}将于{clock.format_local(dl.due_at, tz=tz)}到期"
                if level == WarnLevel.yellow
                else f"案件{dl.case_no}的{label}已到期，请立即办理"
            )
            for to in (
                await _recipients(
                    session, role="dept_handler", department_id=dl.lead_dept_id, cache=cache
                )
                if roles
                else []
            ):
                message(
                    f"dl:{dl.id}:warn:{level.value}:{to}",
                    dl.case_id,
                    to,
                    f"{colour}预警：{label}",
                    body,
                )
            event(dl.case_id, "deadline_warning", {"kind": dl.kind, "level": level.value})
        status = dl.status
        if step.overdue and status != "overdue":
            report.overdue += 1
            status = "overdue"
            event(dl.case_id, "deadline_overdue", {"kind": dl.kind})
        for esc_level in step.new_escalations:
            if esc_level > len(roles):
                continue
            report.escalations += 1
            role = roles[esc_level - 1]
            escalations.append(
                {
                    "case_id": dl.case_id,
                    "deadline_id": dl.id,
                    "type": "report" if esc_level < 3 else "supervision",
                    "level": esc_level,
                    "to_role": role,
                    "note": f"{label}逾期，第{esc_level}级抄告",
                    "due_at": now + timedelta(days=3),
                    "created_at": now,
                }
            )
            # 三级抄告 recipients: the contact list of the department (or the deployment) for
            # this level if there is one, else the staff holding the policy's role.
            listed = contacts_for(contacts or {}, department_id=dl.lead_dept_id, level=esc_level)
            recipients = (
                listed
                if listed is not None
                else await _recipients(
                    session, role=role, department_id=dl.lead_dept_id, cache=cache
                )
            )
            for to in recipients:
                message(
                    f"dl:{dl.id}:esc:{esc_level}:{to}",
                    dl.case_id,
                    to,
                    f"三级抄告（第{esc_level}级）：{label}逾期",
                    f"案件{dl.case_no}的{label}已逾期，请督办。",
                )
            event(
                dl.case_id,
                "escalated",
                {
                    "kind": dl.kind,
                    "level": esc_level,
                    "to_role": role,
                    "via": "contacts" if listed is not None else "roles",
                    "recipients": len(recipients),
                },
            )
        updates.append(
            {
                "id": dl.id,
                "status": status,
                "warn_level": step.warn_level.value,
                "escalation_level": step.escalation_level,
                "next_action_at": step.next_action_at,
            }
        )
    if updates:
        await session.execute(update(CaseDeadline), updates)
    if timed_out:
        report.evaluation_timeouts += len(timed_out)
        events.extend(await _time_out_evaluations(session, case_ids=timed_out, now=now))
    if escalations:
        await session.execute(insert(CaseEscalation), escalations)
    if events:
        await session.execute(insert(CaseEvent), events)
    await enqueue_many(session, list(messages.values()))
    return len(rows)


async def _time_out_evaluations(
    session: AsyncSession, *, case_ids: list[int], now: datetime
) -> list[dict[str, Any]]:
    """The evaluation window of these cases ran out: their unused links are closed with the
    rating 未评价 (so they stop working), cases still `replied` move on to `evaluated`, and
    each case's timeline says so. Conditional updates: a petitioner who submits at the same
    moment either wins (and the timeout leaves that evaluation alone) or gets 'expired'."""
    await session.execute(
        update(Evaluation)
        .where(
            Evaluation.case_id.in_(case_ids),
            Evaluation.used_at.is_(None),
            Evaluation.staff_rating.is_(None),
        )
        .values(staff_rating=UNRATED, dept_rating=UNRATED, expires_at=now)
        .execution_options(synchronize_session=False)
    )
    rows = await session.execute(
        select(PetitionCase.id, PetitionCase.state).where(PetitionCase.id.in_(case_ids))
    )
    states: dict[int, CaseState] = {row.id: row.state for row in rows}
    moved = [i for i in case_ids if states.get(i) == CaseState.replied]
    if moved:
        await session.execute(
            update(PetitionCase)
            .where(PetitionCase.id.in_(moved), PetitionCase.state == CaseState.replied)
            .values(
                state=CaseState.evaluated,
                evaluated_at=now,
                updated_at=now,
                version=PetitionCase.version + 1,
            )
            .execution_options(synchronize_session=False)
        )
    return [
        {
            "case_id": i,
            "actor_id": None,
            "type": "evaluation_timeout",
            "payload": {
                "rating": UNRATED,
                "from": str(states.get(i, "")),
                "to": CaseState.evaluated.value if i in moved else str(states.get(i, "")),
            },
            "at": now,
        }
        for i in case_ids
    ]


@dataclass(frozen=True, slots=True)
class NotificationJobs:
    """The outbox as a job table of server.kernel.jobs: each pending message is sent once,
    retried with the runner's backoff, and marked failed after its last attempt."""

    notifier: Notifier
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
            to, channel, subject, body = row.to, row.channel, row.subject, row.body
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


async def deliver_notifications(
    sessionmaker: async_sessionmaker[AsyncSession], *, notifier: Notifier, now: datetime
) -> jobs.RunReport:
    """Send every due outbox message once (what the job runner does each round)."""
    report = jobs.RunReport()
    handler = NotificationJobs(notifier)
    while True:
        batch = await jobs.run_due(sessionmaker, handler, now=now, limit=OUTBOX_BATCH)
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
                n = await _sweep_batch(
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
            delivered = await deliver_notifications(sessionmaker, notifier=notifier, now=now)
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


def deadline_views(
    rows: list[CaseDeadline], policies: dict[str, DeadlinePolicy]
) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "label_zh": policies[r.kind].label_zh if r.kind in policies else r.kind,
            "start_at": r.start_at,
            "due_at": r.due_at,
            "status": r.status,
            "warn_level": r.warn_level,
            "escalation_level": r.escalation_level,
            "extension_days": r.extension_days,
            "extension_reason": r.extension_reason,
        }
        for r in rows
    ]
