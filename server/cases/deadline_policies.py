"""Deadline policies (办理时限) as the system administrator edits them: the figures of each
deadline kind (limit days, day mode, yellow warning days, extension maximum), validated and
audited; and the matter types' per-kind overrides, listed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.cases.deadlines import DayMode
from server.cases.models import DeadlinePolicy, MatterType
from server.kernel.errors import InvalidInput, NotFound

#: Upper bounds a clerk could not mean to exceed (a typo guard, not law).
MAX_LIMIT_DAYS = 366
MAX_EXTENSION_DAYS = 180


@dataclass(frozen=True, slots=True)
class PolicyView:
    kind: str
    label_zh: str
    limit_days: int
    day_mode: str
    yellow_days: int
    extension_max_days: int


@dataclass(frozen=True, slots=True)
class MatterTypeView:
    code: str
    name: str
    active: bool
    overrides: dict[str, int]


async def list_policies(session: AsyncSession) -> list[PolicyView]:
    rows = (await session.scalars(select(DeadlinePolicy).order_by(DeadlinePolicy.kind))).all()
    return [
        PolicyView(
            r.kind, r.label_zh, r.limit_days, r.day_mode, r.yellow_days, r.extension_max_days
        )
        for r in rows
    ]


async def list_matter_types(session: AsyncSession) -> list[MatterTypeView]:
    rows = (await session.scalars(select(MatterType).order_by(MatterType.id))).all()
    return [MatterTypeView(r.code, r.name, r.active, dict(r.deadline_days or {})) for r in rows]


async def update_policy(
    session: AsyncSession,
    *,
    kind: str,
    limit_days: int,
    day_mode: str,
    yellow_days: int,
    extension_max_days: int,
    actor: str,
    ip: str = "",
) -> PolicyView:
    """New figures for one kind; applies to deadlines opened from now on.

    Raises:
        InvalidInput: with `field` naming the figure at fault.
    """
    row = await session.get(DeadlinePolicy, kind)
    if row is None:
        raise NotFound(f"no deadline policy {kind}")
    if not 1 <= limit_days <= MAX_LIMIT_DAYS:
        raise InvalidInput("limit days out of range", field="limit_days")
    if day_mode not in {m.value for m in DayMode}:
        raise InvalidInput("unknown day mode", field="day_mode")
    if not 0 <= yellow_days < limit_days:
        raise InvalidInput("yellow days must be below the limit", field="yellow_days")
    if not 0 <= extension_max_days <= MAX_EXTENSION_DAYS:
        raise InvalidInput("extension days out of range", field="extension_max_days")
    before = {
        "limit_days": row.limit_days,
        "day_mode": row.day_mode,
        "yellow_days": row.yellow_days,
        "extension_max_days": row.extension_max_days,
    }
    after = {
        "limit_days": limit_days,
        "day_mode": day_mode,
        "yellow_days": yellow_days,
        "extension_max_days": extension_max_days,
    }
    row.limit_days, row.day_mode = limit_days, day_mode
    row.yellow_days, row.extension_max_days = yellow_days, extension_max_days
    await session.flush()
    changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changed:
        await record(
            session,
            actor=actor,
            action="deadline_policy.update",
            object_type="deadline_policy",
            object_id=kind,
            ip=ip,
            detail={"changed": changed},
        )
    return PolicyView(kind, row.label_zh, limit_days, day_mode, yellow_days, extension_max_days)


async def update_matter_type(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    active: bool,
    handling_days: int | None,
    actor: str,
    ip: str = "",
) -> MatterTypeView:
    """Rename a matter type, take it out of the intake forms (or back), and set or clear its
    own handling time limit (None: the general policy's). Cases already registered keep
    their deadlines.

    Raises:
        NotFound: no such matter type.
        InvalidInput: a name that is empty or too long (field name), or handling days out of
            range (field handling_days).
    """
    row = await session.scalar(select(MatterType).where(MatterType.code == code))
    if row is None:
        raise NotFound(f"no matter type {code}")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("name 1 to 100 characters", field="name")
    if handling_days is not None and not 1 <= handling_days <= MAX_LIMIT_DAYS:
        raise InvalidInput("handling days out of range", field="handling_days")
    overrides = dict(row.deadline_days or {})
    before = {"name": row.name, "active": row.active, "overrides": dict(overrides)}
    if handling_days is None:
        overrides.pop("handling", None)
    else:
        overrides["handling"] = handling_days
    row.name, row.active, row.deadline_days = name, active, overrides
    await session.flush()
    after = {"name": name, "active": active, "overrides": overrides}
    if before != after:
        await record(
            session,
            actor=actor,
            action="matter_type.update",
            object_type="matter_type",
            object_id=code,
            ip=ip,
            detail={"before": before, "after": after},
        )
    return MatterTypeView(code, name, active, overrides)
