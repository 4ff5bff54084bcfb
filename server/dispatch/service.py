"""Training from closed cases, suggestions logged beside decisions, knowledge-base search."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases.models import (
    CaseEvent,
    CaseState,
    DispatchSuggestion,
    KnowledgeArticle,
    PetitionCase,
)
from server.dispatch.model import DispatchModel
from server.kernel.errors import Conflict, NotFound, PermissionDenied

TRAIN_STATES = (CaseState.closed, CaseState.revisited, CaseState.evaluated, CaseState.replied)


class ModelNotTrained(Conflict):
    """No model yet: a state of this deployment, not an outage (409, not 503)."""

    code, message_zh = "dispatch_model_missing", "智能分派模型尚未训练"


@dataclass(frozen=True, slots=True)
class TrainResult:
    cases: int
    departments: int
    model_version: str
    path: str


async def train(
    sessionmaker: async_sessionmaker[AsyncSession], model_path: Path, *, limit: int = 200_000
) -> TrainResult:
    """`onedoor dispatch train`: fit on concluded, non-confidential cases with a lead department."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(PetitionCase.id, PetitionCase.summary, PetitionCase.lead_dept_id)
                .where(
                    PetitionCase.state.in_(TRAIN_STATES),
                    PetitionCase.lead_dept_id.is_not(None),
                    PetitionCase.confidential.is_(False),
                )
                .order_by(PetitionCase.id.desc())
                .limit(limit)
            )
        ).all()
    ids = [int(r[0]) for r in rows]
    texts = [str(r[1]) for r in rows]
    labels = [int(r[2]) for r in rows]
    model = DispatchModel()
    await asyncio.to_thread(model.fit, texts, labels, ids)
    await asyncio.to_thread(model.save, model_path)
    return TrainResult(
        cases=len(ids),
        departments=len(set(labels)),
        model_version=model.version,
        path=str(model_path),
    )


_cache: dict[Path, tuple[float, DispatchModel]] = {}


async def load_model(model_path: Path) -> DispatchModel:
    try:
        mtime = (await asyncio.to_thread(model_path.stat)).st_mtime
    except FileNotFoundError:
        raise ModelNotTrained("run `onedoor dispatch train` first") from None
    cached = _cache.get(model_path)
    if cached and cached[0] == mtime:
        return cached[1]
    model = await asyncio.to_thread(DispatchModel.load, model_path)
    _cache[model_path] = (mtime, model)
    return model


async def suggest_for_case(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    model: DispatchModel,
    now: datetime,
) -> dict[str, Any]:
    """A suggestion for a person to confirm; logged (PIPL art. 24: explain, human in the loop)."""
    if not (staff.can(Action.case_create) or staff.can(Action.case_assign)):
        raise PermissionDenied("your roles may not dispatch cases")
    case = await session.get(PetitionCase, case_id)
    if case is None:
        raise NotFound(f"case {case_id} does not exist")
    suggestion = await asyncio.to_thread(model.suggest, case.summary)
    payload = suggestion.as_json()
    # Similar cases: only non-confidential ones are shown.
    if suggestion.similar:
        visible = set(
            await session.scalars(
                select(PetitionCase.id).where(
                    PetitionCase.id.in_([s.case_id for s in suggestion.similar]),
                    PetitionCase.confidential.is_(False),
                )
            )
        )
        payload["similar"] = [s for s in payload["similar"] if s["case_id"] in visible]
    row = DispatchSuggestion(
        case_id=case_id, model_version=suggestion.model_version, suggestion=payload, created_at=now
    )
    session.add(row)
    await session.flush()
    return {"suggestion_id": row.id, **payload, "note_zh": "系统建议，仅供参考，须由工作人员确认"}


async def record_decision(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    suggestion_id: int,
    department_id: int,
    now: datetime,
) -> None:
    row = await session.get(DispatchSuggestion, suggestion_id)
    if row is None:
        raise NotFound(f"suggestion {suggestion_id} does not exist")
    row.decided_department_id = department_id
    row.decided_by_id = staff.staff_id
    row.decided_at = now
    top = (row.suggestion.get("departments") or [{}])[0].get("department_id")
    session.add(
        CaseEvent(
            case_id=row.case_id,
            actor_id=staff.staff_id,
            type="dispatch_decision",
            payload={"suggested": top, "decided": department_id, "followed": top == department_id},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="dispatch.decide",
        object_type="case",
        object_id=str(row.case_id),
        detail={"suggested": top, "decided": department_id},
    )


async def search_knowledge(
    session: AsyncSession, *, q: str, limit: int = 10
) -> list[dict[str, Any]]:
    """Chinese search without segmentation: every character bigram of the query is tried
    (ILIKE; the trigram GIN index serves it on PostgreSQL) and articles are ranked by hits."""
    q = q.strip()
    if not q:
        return []
    grams = {q[i : i + 2] for i in range(max(1, len(q) - 1))} or {q}
    text = KnowledgeArticle.title + " " + KnowledgeArticle.body
    rows = (
        await session.scalars(
            select(KnowledgeArticle).where(or_(*(text.ilike(f"%{g}%") for g in grams))).limit(200)
        )
    ).all()
    scored = sorted(
        (
            (sum(g in (r.title + r.body) for g in grams) + 2 * sum(g in r.title for g in grams), r)
            for r in rows
        ),
        key=lambda x: (-x[0], x[1].id),
    )
    return [
        {"id": r.id, "title": r.title, "body": r.body, "matter_type": r.matter_type, "score": s}
        for s, r in scored[:limit]
    ]
