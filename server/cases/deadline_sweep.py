"""One batch of the deadline sweep: due deadlines raise warnings, turn overdue, escalate
(三级抄告) and, for the petitioner's evaluation window, time out as 未评价. The decisions are
pure (`server.cases.deadlines.sweep_step`); the messages go to the outbox. The runner (lock,
batches, delivery) is `server.cases.deadline_service.run_deadline_sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.cases.deadline_clock import EVALUATION, OPEN, UNRATED, policy_of
from server.cases.deadlines import WarnLevel, sweep_step
from server.cases.escalation import (
    ContactKey,
    confidential_warning_phones,
    contacts_for,
    prefetch_confidential_phones,
    record_recipients,
    role_recipients,
    without_accused_unit,
)
from server.cases.models import (
    CaseDeadline,
    CaseEscalation,
    CaseEvent,
    CaseState,
    DeadlinePolicy,
    Evaluation,
    PetitionCase,
)
from server.cases.outbox import StaffPhone, enqueue_many
from server.kernel import clock

SWEEP_BATCH = 1000


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


async def sweep_batch(
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
                PetitionCase.confidential,
                PetitionCase.accused_dept_id,
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
    notified: list[tuple[int, int | None, int, str]] = []  # who may then open the case
    messages: dict[str, dict[str, Any]] = {}

    def message(key: str, case_id: int, to: str, subject: str, body: str) -> None:
        """A warning or 抄告 to staff (or a named 抄告 contact)."""
        messages.setdefault(
            key,
            {
                "dedupe_key": key,
                "case_id": case_id,
                "to": StaffPhone(to),
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
    await prefetch_confidential_phones(
        session, [dl.case_id for dl in rows if dl.confidential and dl.kind != EVALUATION], cache
    )
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
        accused = dl.accused_dept_id if dl.confidential else None
        for level in step.new_warnings:
            report.warnings += 1
            colour = "黄色" if level == WarnLevel.yellow else "红色"
            body = (
                f"案件{dl.case_no}的{label}将于{clock.format_local(dl.due_at, tz=tz)}到期"
                if level == WarnLevel.yellow
                else f"案件{dl.case_no}的{label}已到期，请立即办理"
            )
            if not roles:
                handlers: list[str] = []
            elif dl.confidential:
                handlers = await confidential_warning_phones(
                    session, case_id=dl.case_id, cache=cache
                )
            else:
                handlers = await role_recipients(
                    session, role="dept_handler", department_id=dl.lead_dept_id, cache=cache
                )
            for to in await without_accused_unit(
                session,
                handlers,
                accused_dept_id=accused,
                cache=cache,
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
            recipients = await without_accused_unit(
                session,
                listed
                if listed is not None
                else await role_recipients(
                    session, role=role, department_id=dl.lead_dept_id, cache=cache
                ),
                accused_dept_id=accused,
                cache=cache,
            )
            notified.append((dl.case_id, dl.lead_dept_id, esc_level, role))
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
        await record_recipients(session, notified, now=now)
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
