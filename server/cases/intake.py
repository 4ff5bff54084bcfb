"""Case intake: numbering, petitioners and representatives (encrypted), the matter type's
attributes, repeat detection, and the first deadline.

Services take the session first, never commit, and return views. Every registration writes
a CaseEvent and an audit entry in the caller's transaction.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import (
    CaseCounter,
    CaseEvent,
    CaseHandler,
    CaseRepresentative,
    CaseState,
    Category,
    Channel,
    MatterType,
    PetitionCase,
    Petitioner,
)
from server.cases.queries import summary_of
from server.cases.schemas import (
    IN_PERSON_CHANNELS,
    STATUTORY_MAX_REPRESENTATIVES,
    CaseSummary,
    IntakeRequest,
    IntakeResult,
    PetitionerInput,
    RepresentativeInput,
)
from server.cases.statemachine import (
    GRADE_COMPLEX,
    STATE_TIMESTAMP,
    ConfidentialTransferBlocked,
    agent_only,
    escalated_grade,
)
from server.cases.validation import validate_attributes
from server.kernel.crypto import PiiCipher
from server.kernel.errors import InvalidInput, NotFound, PermissionDenied
from server.kernel.ids import ID_MAX
from server.org.models import Department, Site

SELF_SERVICE = frozenset({Channel.kiosk, Channel.qr, Channel.web})
#: Quick registrations: the kiosk's three fields and a video call accepted before the resident
#: has spoken. The matter type's typed attributes are checked if given, and completed during
#: handling; everything else (category, confidentiality, routing, deadline) is decided as usual.
ATTRIBUTES_LATER = frozenset({Channel.kiosk, Channel.video})
REPEAT_SIMILARITY = 0.35
REPEAT_LOOKBACK = timedelta(days=3 * 365)


async def next_case_number(session: AsyncSession, *, site_id: int, year: int) -> int:
    """Atomically take the next number for (site, year).

    The upsert holds the counter row's lock until the intake transaction ends; a rolled-back
    intake therefore gives its number back, so numbers are unique and gap-free.
    """
    dialect = session.bind.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(CaseCounter)
        .values(site_id=site_id, year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=[CaseCounter.site_id, CaseCounter.year],
            set_={"last_seq": CaseCounter.last_seq + 1},
        )
        .returning(CaseCounter.last_seq)
    )
    seq = (await session.execute(stmt)).scalar_one()
    return int(seq)


async def find_petitioner(
    session: AsyncSession, *, pii: PiiCipher, petitioner: PetitionerInput
) -> Petitioner | None:
    """The same person by ID number, else by phone (keyed hashes: no decryption)."""
    for value, column in (
        (petitioner.id_number, Petitioner.id_number_hash),
        (petitioner.phone, Petitioner.phone_hash),
    ):
        if value:
            row = await session.scalar(
                select(Petitioner)
                .where(column == pii.lookup_hash(value))
                .order_by(Petitioner.id)
                .limit(1)
            )
            if row is not None:
                return row
    return None


async def add_petitioner(
    session: AsyncSession, *, pii: PiiCipher, petitioner: PetitionerInput, now: datetime
) -> Petitioner:
    existing = await find_petitioner(session, pii=pii, petitioner=petitioner)
    if existing is not None:
        return existing
    row = Petitioner(
        name_enc=pii.encrypt(petitioner.name),
        phone_enc=pii.encrypt(petitioner.phone) if petitioner.phone else None,
        phone_hash=pii.lookup_hash(petitioner.phone) if petitioner.phone else None,
        id_number_enc=pii.encrypt(petitioner.id_number) if petitioner.id_number else None,
        id_number_hash=pii.lookup_hash(petitioner.id_number) if petitioner.id_number else None,
        address_enc=pii.encrypt(petitioner.address) if petitioner.address else None,
        key_id=pii.key_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def add_representatives(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    case_id: int,
    representatives: list[RepresentativeInput],
    now: datetime,
) -> None:
    """Store a collective case's representatives, encrypted like the petitioner's."""
    for position, rep in enumerate(representatives):
        session.add(
            CaseRepresentative(
                case_id=case_id,
                position=position,
                name_enc=pii.encrypt(rep.name),
                phone_enc=pii.encrypt(rep.phone),
                phone_hash=pii.lookup_hash(rep.phone),
                id_number_enc=pii.encrypt(rep.id_number) if rep.id_number else None,
                id_number_hash=pii.lookup_hash(rep.id_number) if rep.id_number else None,
                key_id=pii.key_id,
                created_at=now,
            )
        )


async def create_case(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    site_id: int,
    channel: Channel,
    summary: str,
    petitioner: PetitionerInput | None,
    first_receiver_id: int | None,
    now: datetime,
    matter_type: str | None = None,
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    timezone: str = "Asia/Shanghai",
    actor: str = "system",
) -> CaseSummary:
    """A bare case record (state `registered`) with its gap-free number, in the caller's
    transaction: no category, routing, confidentiality or deadline. For restores and fixtures
    only; every intake channel goes through `intake`."""
    row = await insert_case(
        session,
        pii=pii,
        site_id=site_id,
        channel=channel,
        summary=summary,
        petitioner=petitioner,
        first_receiver_id=first_receiver_id,
        now=now,
        matter_type=matter_type,
        case_no_format=case_no_format,
        timezone=timezone,
    )
    await record(
        session,
        actor=actor,
        action="case.create",
        object_type="case",
        object_id=str(row.id),
        detail={"case_no": row.case_no, "channel": channel.value},
    )
    return summary_of(row)


async def insert_case(
    session: AsyncSession,
    *,
    pii: PiiCipher | None,
    site_id: int,
    channel: Channel,
    summary: str,
    petitioner: PetitionerInput | None,
    first_receiver_id: int | None,
    now: datetime,
    matter_type: str | None,
    case_no_format: str,
    timezone: str,
    state: CaseState = CaseState.registered,
    petitioner_id: int | None = None,
    **extra: Any,
) -> PetitionCase:
    # a value no id column holds names no site (and would overflow the driver: server.kernel.ids)
    site = await session.get(Site, site_id) if 1 <= site_id <= ID_MAX else None
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    year = now.astimezone(ZoneInfo(timezone)).year
    seq = await next_case_number(session, site_id=site_id, year=year)
    if petitioner is not None:
        if pii is None:
            raise RuntimeError("a petitioner needs the PII cipher")
        petitioner_id = (await add_petitioner(session, pii=pii, petitioner=petitioner, now=now)).id
    row = PetitionCase(
        case_no=case_no_format.format(admin_code=site.admin_code, year=year, seq=seq),
        site_id=site_id,
        year=year,
        seq=seq,
        channel=channel,
        petitioner_id=petitioner_id,
        summary=summary,
        matter_type=matter_type,
        first_receiver_id=first_receiver_id,
        state=state,
        created_at=now,
        updated_at=now,
        registered_at=now,
        attributes={},
        **extra,
    )
    if state != CaseState.registered:
        setattr(row, STATE_TIMESTAMP[state], now)
    session.add(row)
    await session.flush()
    session.add(
        CaseEvent(
            case_id=row.id,
            actor_id=first_receiver_id if first_receiver_id is not None else extra.get("agent_id"),
            type=state.value,
            payload={"channel": channel.value},
            at=now,
        )
    )
    return row


def _bigrams(value: str) -> set[str]:
    chars = re.sub(r"[\s\W_]+", "", value)
    return {chars[i : i + 2] for i in range(len(chars) - 1)} or {chars}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of character bigrams (works for Chinese without segmentation)."""
    x, y = _bigrams(a), _bigrams(b)
    return len(x & y) / len(x | y) if x and y else 0.0


async def intake(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    staff: StaffIdentity | None,
    request: IntakeRequest,
    now: datetime,
    deadlines: DeadlineClock,
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    ip: str = "",
    max_representatives: int = STATUTORY_MAX_REPRESENTATIVES,
) -> IntakeResult:
    """Register a petition from any channel: the one intake pipeline (REST, kiosk, video desk).

    Decided here and only here: the category and confidentiality (from the matter type), the
    lead department (the matter type's default competent department, never the accused unit),
    repeat detection, the first receiver and the acceptance deadline (受理告知).

    Staff channels (window, agent, letter, video) need a signed-in staff member who becomes the
    first receiver (首问责任人: for the video desk, the officer who accepts the call), and who
    may not belong to the unit an accusation accuses; self-service channels (kiosk, qr, web)
    leave it empty until a staff member claims the case. Repeat petitions are linked; after 复核, the same facts are
    flagged for non-acceptance (a person decides). A collective visit (集体访) keeps its
    headcount and its representatives (at most `max_representatives`, the deployment's
    setting: the request may have been validated without it).
    """
    request.check_collective(
        in_person=request.channel in IN_PERSON_CHANNELS, max_representatives=max_representatives
    )
    warnings: list[str] = []
    if request.channel in SELF_SERVICE:
        first_receiver_id = None
    else:
        if staff is None:
            raise PermissionDenied(f"channel {request.channel.value} is registered by staff")
        if not staff.can(Action.case_create):
            raise PermissionDenied("your roles may not register cases")
        if request.channel == Channel.agent and not request.on_behalf_consent:
            raise InvalidInput(
                "an agent registration needs the resident's consent",
                field="on_behalf_consent",
                reason_zh="代办须经信访人同意",
            )
        if agent_only(staff) and request.site_id != staff.site_id:
            raise PermissionDenied(
                "a community agent registers for residents of their own community only",
                reason_zh="代办员只能为本社区群众登记",
            )
        first_receiver_id = staff.staff_id
    agent_id: int | None = None
    if request.channel == Channel.agent and staff is not None:
        # the agent registers on the resident's behalf and keeps sight of it; an officer of the
        # site claims it as first receiver (首问责任人), like a self-service registration
        agent_id, first_receiver_id = staff.staff_id, None
    if request.channel in (Channel.web, Channel.qr, Channel.kiosk) and request.petitioner is None:
        raise InvalidInput(
            "self-service petitions need the petitioner's name and phone",
            field="petitioner",
            reason_zh="请填写信访人姓名和联系电话",
        )
    category: Category | None = None
    lead_dept_id: int | None = None
    attributes: dict[str, Any] = {}
    mt: MatterType | None = None
    if request.matter_type:
        mt = await session.scalar(
            select(MatterType).where(
                MatterType.code == request.matter_type, MatterType.active.is_(True)
            )
        )
        if mt is None:
            raise InvalidInput(f"unknown matter type {request.matter_type!r}", field="matter_type")
        category = mt.category
        attributes = validate_attributes(
            mt.code,
            mt.fields or [],
            request.attributes,
            require=request.channel not in ATTRIBUTES_LATER,
        )
        if mt.default_department_code:
            lead_dept_id = await session.scalar(
                select(Department.id).where(Department.code == mt.default_department_code)
            )
    elif request.attributes:
        raise InvalidInput("attributes need a matter type", field="attributes")
    confidential = category == Category.accusation
    if request.accused_department_id is not None:
        if await session.get(Department, request.accused_department_id) is None:
            raise InvalidInput("unknown accused department", field="accused_department_id")
        if lead_dept_id == request.accused_department_id:
            lead_dept_id = None
            warnings.append("默认承办单位为被检举单位，已取消默认分派，请另行指定承办单位")
    if (
        confidential
        and request.accused_department_id is not None
        and first_receiver_id is not None
        and staff is not None
        and staff.department_id == request.accused_department_id
    ):
        raise ConfidentialTransferBlocked("a member of the accused unit may not receive it")
    row = await insert_case(
        session,
        pii=pii,
        site_id=request.site_id,
        channel=request.channel,
        summary=request.summary,
        petitioner=request.petitioner,
        first_receiver_id=first_receiver_id,
        now=now,
        matter_type=request.matter_type,
        case_no_format=case_no_format,
        timezone=deadlines.timezone,
        category=category.value if category else None,
        confidential=confidential,
        accused_dept_id=request.accused_department_id,
        agent_id=agent_id,
        lead_dept_id=lead_dept_id,
        collective=request.collective,
        headcount=request.headcount,
    )
    row.attributes = attributes
    if request.representatives:
        await add_representatives(
            session, pii=pii, case_id=row.id, representatives=request.representatives, now=now
        )
    if lead_dept_id is not None:
        session.add(
            CaseHandler(
                case_id=row.id,
                department_id=lead_dept_id,
                role="lead",
                task="默认承办（事项目录）",
                added_at=now,
                active=True,
            )
        )
    repeat_of, proposed = await _detect_repeat(session, row=row, now=now)
    if repeat_of is not None:
        row.repeat_of_id = repeat_of.id
        row.non_accept_proposed = proposed
        # 梯次滤化 (DOMAIN §4): a repeated petition is no longer an initial, simple one
        row.grade = escalated_grade(row.grade, GRADE_COMPLEX)
        session.add(
            CaseEvent(
                case_id=row.id,
                actor_id=None,
                type="repeat_detected",
                payload={"repeat_of": repeat_of.case_no, "non_accept_proposed": proposed},
                at=now,
            )
        )
        if proposed:
            warnings.append("同一事实和理由已经复核终结，系统建议不再受理，请工作人员决定")
        else:
            warnings.append(f"疑似重复信访，已关联案件{repeat_of.case_no}")
    limit = (mt.deadline_days or {}).get("acceptance") if mt else None
    await deadline_clock.open_deadline(
        session,
        case_id=row.id,
        kind="acceptance",
        start=now,
        now=now,
        deadlines=deadlines,
        limit_days=limit,
    )
    await session.flush()
    await record(
        session,
        actor=staff.actor if staff else f"petitioner:{request.channel.value}",
        action="case.create",
        object_type="case",
        object_id=str(row.id),
        ip=ip,
        detail={
            "case_no": row.case_no,
            "channel": request.channel.value,
            "repeat_of": row.repeat_of_id,
            **(
                {
                    "headcount": request.headcount,
                    "representatives": len(request.representatives),
                }
                if request.collective
                else {}
            ),
        },
    )
    return IntakeResult(
        case=summary_of(row),
        repeat_of_case_no=repeat_of.case_no if repeat_of else None,
        non_accept_proposed=row.non_accept_proposed,
        warnings=warnings,
    )


async def _detect_repeat(
    session: AsyncSession, *, row: PetitionCase, now: datetime
) -> tuple[PetitionCase | None, bool]:
    """Same petitioner (same person row, found by ID/phone hash) and a similar matter."""
    if row.petitioner_id is None:
        return None, False
    earlier = (
        await session.scalars(
            select(PetitionCase)
            .where(
                PetitionCase.petitioner_id == row.petitioner_id,
                PetitionCase.id != row.id,
                PetitionCase.registered_at >= now - REPEAT_LOOKBACK,
            )
            .order_by(PetitionCase.id.desc())
            .limit(50)
        )
    ).all()
    best: PetitionCase | None = None
    for other in earlier:
        same_type = row.matter_type is not None and other.matter_type == row.matter_type
        if same_type or similarity(row.summary, other.summary) >= REPEAT_SIMILARITY:
            best = other
            break
    if best is None:
        return None, False
    # Walk to the original, then look for a concluded 复核 in its family.
    root = best
    while root.parent_case_id is not None:
        parent = await session.get(PetitionCase, root.parent_case_id)
        if parent is None:
            break
        root = parent
    family_ids = {root.id, best.id, *(c.id for c in earlier)}
    concluded = await session.scalar(
        select(PetitionCase.id)
        .where(
            PetitionCase.review_level == 2,
            PetitionCase.replied_at.is_not(None),
            or_(PetitionCase.parent_case_id.in_(family_ids), PetitionCase.id.in_(family_ids)),
        )
        .limit(1)
    )
    if concluded is None:
        # A 复核 child's parent is a 复查 child: look one more level down.
        reviews = select(PetitionCase.id).where(PetitionCase.parent_case_id.in_(family_ids))
        concluded = await session.scalar(
            select(PetitionCase.id)
            .where(
                PetitionCase.review_level == 2,
                PetitionCase.replied_at.is_not(None),
                PetitionCase.parent_case_id.in_(reviews),
            )
            .limit(1)
        )
    return best, concluded is not None
