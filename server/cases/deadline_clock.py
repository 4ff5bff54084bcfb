"""A case's deadlines (期限) as rows: opening, meeting and cancelling them as the case moves,
and the approved changes to the clock: extension (延期), pause (中止计时) and resume. The due
times come from `server.cases.deadlines` (pure); the sweep is `server.cases.deadline_sweep`.

The deployment's counting rules (the district's zone, holiday roll-over, office hours) are
settings: `DeadlineClock.from_settings` reads them once (server/app.py keeps the result in
`keys.deadline_clock`) and every service that opens or moves a deadline takes it as an
argument, so no call site counts with other rules than the deployment's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.deadlines import (
    ClockRules,
    DayMode,
    HolidayCalendar,
    Pause,
    Policy,
    Rollover,
    WarnLevel,
    check_extension,
    effective_due,
    sweep_step,
)
from server.cases.models import (
    CaseDeadline,
    CaseEvent,
    DeadlinePause,
    DeadlinePolicy,
    Holiday,
    PetitionCase,
)
from server.cases.outbox import ResidentPhone, enqueue
from server.cases.schemas import DeadlineView
from server.kernel import clock
from server.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from server.kernel.settings import Settings

OPEN = ("open", "overdue")
#: The petitioner's evaluation window (评价期限): when it runs out unanswered the sweep records
#: the evaluation as 未评价 instead of raising warnings (it is not the staff's deadline).
EVALUATION = "evaluation"
UNRATED = "unrated"


@dataclass(frozen=True, slots=True)
class DeadlineClock:
    """How this deployment counts its deadlines: the district's zone (`ONEDOOR_TIMEZONE`) and
    the counting rules (`ONEDOOR_DEADLINE_HOLIDAY_ROLLOVER`, `ONEDOOR_DEADLINE_OFFICE_HOURS`).
    The defaults are the settings' defaults (tests build one directly)."""

    timezone: str = clock.DEFAULT_TIMEZONE
    rules: ClockRules = field(default_factory=ClockRules)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadlineClock:
        """The one place the deadline settings are read (called once, at startup)."""
        return cls(
            timezone=settings.timezone,
            rules=ClockRules(
                rollover=Rollover(settings.deadline_holiday_rollover),
                office_hours=clock.parse_office_hours(settings.deadline_office_hours),
            ),
        )

    @property
    def tz(self) -> ZoneInfo:
        return clock.zone(self.timezone)

    def due(
        self,
        *,
        start: datetime,
        policy: Policy,
        calendar: HolidayCalendar,
        pauses: list[Pause] | None = None,
        extension_days: int = 0,
        now: datetime | None = None,
    ) -> datetime:
        """`deadlines.effective_due` under this deployment's rules."""
        return effective_due(
            start=start,
            policy=policy,
            calendar=calendar,
            tz=self.tz,
            pauses=pauses or (),
            extension_days=extension_days,
            now=now,
            rollover=self.rules.rollover,
            office_hours=self.rules.office_hours,
        )


@dataclass(frozen=True, slots=True)
class DeadlineState:
    """A deadline after an extension, pause or resume: what the caller reports back."""

    kind: str
    status: str
    start_at: datetime
    base_due_at: datetime
    due_at: datetime
    extension_days: int

    @classmethod
    def of(cls, row: CaseDeadline) -> DeadlineState:
        return cls(
            kind=row.kind,
            status=row.status,
            start_at=row.start_at,
            base_due_at=row.base_due_at,
            due_at=row.due_at,
            extension_days=row.extension_days,
        )


class DeadlineNotOpen(Conflict):
    code, message_zh = "deadline_not_open", "该期限已结束或不存在"


class PauseTooLate(Conflict):
    code, message_zh = "pause_after_expiry", "期限已届满，不能中止计时；逾期状态和抄告级别保留"


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
    deadlines: DeadlineClock,
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
    # calendar days need the holidays too when a period ending on one rolls over
    needs_calendar = (
        policy.day_mode == DayMode.working or deadlines.rules.rollover == Rollover.next_working_day
    )
    calendar = await load_calendar(session) if needs_calendar else HolidayCalendar()
    due = deadlines.due(start=start, policy=policy, calendar=calendar)
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
    session: AsyncSession, row: CaseDeadline, *, now: datetime, deadlines: DeadlineClock
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
    due = deadlines.due(
        start=row.start_at,
        policy=policy,
        calendar=calendar,
        pauses=pauses,
        extension_days=row.extension_days,
        now=now,
    )
    # Offset for a matter-type specific limit (base_due differs from the policy's).
    policy_base = deadlines.due(start=row.start_at, policy=policy, calendar=calendar)
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
    deadlines: DeadlineClock,
    petitioner_phone: ResidentPhone | None = None,
) -> DeadlineState:
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
    check_extension(
        policy_of(prow),
        days=days,
        already_extended=row.extension_days > 0,
        # a paused clock has not run out; an overdue or expired one keeps its status (#17 f.6)
        due=None if row.status == "paused" else row.due_at,
        now=now,
    )
    if not reason.strip():
        raise InvalidInput("an extension needs a reason", field="reason")
    row.extension_days = days
    row.extension_reason = reason
    row.extension_approver_id = staff.staff_id
    row.extended_at = now
    await _recompute(session, row, now=now, deadlines=deadlines)
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
    return DeadlineState.of(row)


async def pause_deadline(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    reason: str,
    now: datetime,
) -> DeadlineState:
    """Stop the clock (e.g. a hearing 听证, an expert appraisal), with reason and approver."""
    if not (staff.can(Action.case_extend_approve) or staff.can(Action.case_supervise)):
        raise PermissionDenied("a leader or supervisor approves a pause")
    row = await _deadline_for_update(session, case_id, kind)
    if row.status not in OPEN:
        raise DeadlineNotOpen(f"the {kind} deadline is {row.status}")
    if row.status == "overdue" or now >= row.due_at:
        # resuming would turn it back to open and erase overdue and escalation (#17 finding 6)
        raise PauseTooLate(f"the {kind} deadline expired at {row.due_at.isoformat()}")
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
    return DeadlineState.of(row)


async def resume_deadline(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    kind: str,
    now: datetime,
    deadlines: DeadlineClock,
) -> DeadlineState:
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
    await _recompute(session, row, now=now, deadlines=deadlines)
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
    return DeadlineState.of(row)


def deadline_views(
    rows: list[CaseDeadline], policies: dict[str, DeadlinePolicy]
) -> list[DeadlineView]:
    return [
        DeadlineView(
            id=r.id,
            kind=r.kind,
            label_zh=policies[r.kind].label_zh if r.kind in policies else r.kind,
            start_at=r.start_at,
            due_at=r.due_at,
            status=r.status,
            warn_level=r.warn_level,
            escalation_level=r.escalation_level,
            extension_days=r.extension_days,
            extension_reason=r.extension_reason,
        )
        for r in rows
    ]
