"""JSON export/import for the provincial petition platform (format: docs/cases.md).

Export leaves out confidential cases and personal data; import is idempotent on the
provincial number (`attributes.provincial_no`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import service
from server.cases.models import CaseEvent, CaseState, Channel, PetitionCase
from server.cases.schemas import IntakeRequest, PetitionerInput
from server.cases.statemachine import STATE_TIMESTAMP
from server.crypto import PiiCipher
from server.errors import PermissionDenied
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
    matter_type: str | None = None
    petitioner: PetitionerInput | None = None


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
    if ids:
        for e in await session.scalars(
            select(CaseEvent).where(CaseEvent.case_id.in_(ids)).order_by(CaseEvent.id)
        ):
            events[e.case_id].append({"type": e.type, "at": e.at.isoformat()})
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
) -> dict[str, int]:
    """Cases assigned by the provincial platform arrive as `transferred` letters (交办)."""
    if not staff.can(Action.case_exchange):
        raise PermissionDenied("your roles may not import cases")
    created = skipped = 0
    for item in cases:
        exists = await session.scalar(
            select(PetitionCase.id).where(
                PetitionCase.attributes["provincial_no"].as_string() == item.provincial_no
            )
        )
        if exists is not None:
            skipped += 1
            continue
        result = await service.intake(
            session,
            pii=pii,
            staff=None,
            now=now,
            request=IntakeRequest(
                channel=Channel.web,
                site_id=item.site_id,
                summary=item.summary,
                matter_type=item.matter_type,
                petitioner=item.petitioner or PetitionerInput(name="（省平台）"),
            ),
        )
        row = await session.get(PetitionCase, result.case.id)
        assert row is not None
        row.attributes = {**row.attributes, "provincial_no": item.provincial_no}
        created += 1
    await record(
        session,
        actor=staff.actor,
        action="case.import",
        detail={"created": created, "skipped": skipped},
    )
    return {"created": created, "skipped": skipped}
