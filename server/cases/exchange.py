"""JSON export/import for the provincial petition platform (format: docs/cases.md).

Export leaves out confidential cases and personal data; import is idempotent on the
provincial number (`attributes.provincial_no`). Both carry the matter type's typed
attributes (its required fields); an imported record is validated like any intake and is
created whole or not at all (a savepoint per record)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.deadline_clock import DeadlineClock
from server.cases.intake import intake
from server.cases.models import CaseEvent, CaseRepresentative, CaseState, Channel, PetitionCase
from server.cases.schemas import (
    MAX_REPRESENTATIVES,
    STATUTORY_MAX_REPRESENTATIVES,
    IntakeRequest,
    PetitionerInput,
)
from server.cases.statemachine import STATE_TIMESTAMP
from server.cases.validation import MAX_REPRESENTATIVES_CAP
from server.kernel.crypto import PiiCipher
from server.kernel.errors import AppError, InvalidInput, PermissionDenied
from server.org.models import Department

FORMAT = "onedoor.cases.v1"


class ExchangeCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    case_no: str
    channel: Channel
    category: str | None = None
    matter_type: str | None = None
    state: CaseState
    summary: str
    lead_department_code: str | None = None
    registered_at: datetime
    state_times: dict[str, datetime] = Field(default_factory=dict)
    reply: str | None = None
    events: list[dict[str, Any]] = Field(default_factory=list)
    #: The matter type's typed attributes (its required fields among them).
    attributes: dict[str, Any] = Field(default_factory=dict)
    provincial_no: str | None = None
    #: Collective visit (集体访): how many came or signed, and how many representatives
    #: they chose (the representatives' personal data stays out, like the petitioner's).
    collective: bool = False
    headcount: int | None = None
    representative_count: int = 0


class ExchangeFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    format: str = FORMAT
    exported_at: datetime
    cases: list[ExchangeCase]


class ImportCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    provincial_no: str = Field(min_length=1, max_length=64)
    site_id: int
    summary: str = Field(min_length=4, max_length=4000)
    matter_type: str | None = Field(default=None, max_length=64)
    #: The matter type's typed attributes; its required fields must be here.
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=50)
    petitioner: PetitionerInput | None = None
    #: Collective visit (集体访): validated per record like an intake (the rules in
    #: server.cases.validation.check_collective; each representative's phone and ID number
    #: like the petitioner's), so a wrong one rejects its record, not the batch.
    collective: bool = False
    headcount: int | None = None
    representatives: list[dict[str, Any]] = Field(
        default_factory=list, max_length=MAX_REPRESENTATIVES_CAP
    )


class ImportRejection(BaseModel):
    """Why one record of an import was not created (nothing of it was written)."""

    model_config = ConfigDict(frozen=True)
    index: int
    provincial_no: str
    error: str
    message: str
    message_zh: str
    details: dict[str, Any] = Field(default_factory=dict)


class ImportResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    created: int
    skipped: int
    rejected: list[ImportRejection]


class ImportRejected(InvalidInput):
    code, message_zh = "import_rejected", "导入的记录有误，全部未导入，请按逐条说明修正后重新提交"


async def export_cases(
    session: AsyncSession, *, staff: StaffIdentity, since: datetime, until: datetime, now: datetime
) -> ExchangeFile:
    if not staff.can(Action.case_exchange):
        raise PermissionDenied("your roles may not export cases")
    rows = (
        await session.execute(
            select(PetitionCase, Department.code)
            .outerjoin(Department, Department.id == PetitionCase.lead_dept_id)
            .where(
                PetitionCase.registered_at >= since,
                PetitionCase.registered_at < until,
                PetitionCase.confidential.is_(False),
            )
            .order_by(PetitionCase.id)
        )
    ).all()
    ids = [r[0].id for r in rows]
    events: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    representatives: dict[int, int] = {}
    if ids:
        for e in await session.scalars(
            select(CaseEvent).where(CaseEvent.case_id.in_(ids)).order_by(CaseEvent.id)
        ):
            events[e.case_id].append({"type": e.type, "at": e.at.isoformat()})
        collective_ids = [r[0].id for r in rows if r[0].collective]
        if collective_ids:
            representatives = {
                case_id: int(n)
                for case_id, n in await session.execute(
                    select(CaseRepresentative.case_id, func.count())
                    .where(CaseRepresentative.case_id.in_(collective_ids))
                    .group_by(CaseRepresentative.case_id)
                )
            }
    out = []
    for row, dept_code in rows:
        times = {s.value: getattr(row, STATE_TIMESTAMP[s]) for s in CaseState}
        out.append(
            ExchangeCase(
                case_no=row.case_no,
                channel=row.channel,
                category=row.category,
                matter_type=row.matter_type,
                state=row.state,
                summary=row.summary,
                lead_department_code=dept_code,
                registered_at=row.registered_at,
                state_times={k: v for k, v in times.items() if v is not None},
                reply=row.reply_text,
                events=events[row.id],
                attributes={k: v for k, v in row.attributes.items() if k != "provincial_no"},
                provincial_no=row.attributes.get("provincial_no"),
                collective=row.collective,
                headcount=row.headcount,
                representative_count=representatives.get(row.id, 0),
            )
        )
    await record(
        session,
        actor=staff.actor,
        action="case.export",
        detail={"since": since.isoformat(), "until": until.isoformat(), "cases": len(out)},
    )
    return ExchangeFile(exported_at=now, cases=out)


async def import_cases(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    pii: PiiCipher,
    cases: list[ImportCase],
    now: datetime,
    deadlines: DeadlineClock,
    atomic: bool = False,
    max_representatives: int = STATUTORY_MAX_REPRESENTATIVES,
) -> ImportResult:
    """Cases assigned by the provincial platform arrive as `web` cases awaiting a claim.

    Each record is validated as an intake (matter type known and active, its required
    attributes present and typed, petitioner data valid, a collective visit's headcount and
    representatives consistent) and written inside its own savepoint:
    a rejected record leaves nothing behind (no petitioner row, no case number used) and is
    reported with its index, provincial number and error. `atomic=True` rejects the whole
    batch (ImportRejected, nothing written) if any record is rejected.
    """
    if not staff.can(Action.case_exchange):
        raise PermissionDenied("your roles may not import cases")
    created = skipped = 0
    rejected: list[ImportRejection] = []
    for index, item in enumerate(cases):
        exists = await session.scalar(
            select(PetitionCase.id).where(
                PetitionCase.attributes["provincial_no"].as_string() == item.provincial_no
            )
        )
        if exists is not None:
            skipped += 1
            continue
        try:
            async with session.begin_nested():
                result = await intake(
                    session,
                    pii=pii,
                    staff=None,
                    now=now,
                    deadlines=deadlines,
                    request=IntakeRequest.model_validate(
                        {
                            "channel": Channel.web,
                            "site_id": item.site_id,
                            "summary": item.summary,
                            "matter_type": item.matter_type,
                            "attributes": item.attributes,
                            "petitioner": item.petitioner or PetitionerInput(name="（省平台）"),
                            "collective": item.collective,
                            "headcount": item.headcount,
                            "representatives": item.representatives,
                        },
                        context={MAX_REPRESENTATIVES: max_representatives},
                    ),
                    max_representatives=max_representatives,
                )
                row = await session.get(PetitionCase, result.case.id)
                assert row is not None
                row.attributes = {**row.attributes, "provincial_no": item.provincial_no}
                await session.flush()
        except AppError as e:
            rejected.append(
                ImportRejection(
                    index=index,
                    provincial_no=item.provincial_no,
                    error=e.code,
                    message=str(e),
                    message_zh=e.message_zh,
                    details=e.details,
                )
            )
            continue
        created += 1
    if atomic and rejected:
        raise ImportRejected(
            f"{len(rejected)} of {len(cases)} records are invalid; nothing was imported",
            rejected=[r.model_dump() for r in rejected],
        )
    await record(
        session,
        actor=staff.actor,
        action="case.import",
        detail={"created": created, "skipped": skipped, "rejected": len(rejected)},
    )
    return ImportResult(created=created, skipped=skipped, rejected=rejected)
