"""Case intake, lifecycle transitions, handlers, visibility and queries.

Services take the session first, never commit, and return views. Every state change writes
the per-state timestamp, a CaseEvent and an audit entry in the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Integer,
    Text,
    and_,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_service as dls
from server.cases.models import (
    CaseCounter,
    CaseDeadline,
    CaseEscalation,
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
from server.cases.schemas import (
    IN_PERSON_CHANNELS,
    STATUTORY_MAX_REPRESENTATIVES,
    CaseDetail,
    CaseListItem,
    CaseQuery,
    CaseSummary,
    DeadlineView,
    HandlerRequest,
    HandlerView,
    IntakeRequest,
    IntakeResult,
    PetitionerInput,
    RepresentativeInput,
    RepresentativeView,
    SupervisionRequest,
    TimelineEvent,
    TransitionRequest,
)
from server.cases.statemachine import (
    STATE_TIMESTAMP,
    CaseFacts,
    ConfidentialTransferBlocked,
    available_transitions,
    can_view,
    check_review_request,
    check_transition,
)
from server.crypto import PiiCipher
from server.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied
from server.org.models import Department, Role, Site

STATE_LABELS = {
    "registered": "登记",
    "accepted": "已受理",
    "not_accepted": "不予受理",
    "redirected_legal": "导入法定途径",
    "transferred": "转送/交办",
    "handling": "办理中",
    "replied": "已答复",
    "evaluated": "已评价",
    "revisited": "已回访",
    "closed": "已结案",
    "review": "复查",
    "re_review": "复核",
    "terminated": "终止",
}
#: The service-chain link (接、转、调、诉、化) a state belongs to.
CHAIN_LINK = {
    "registered": "接",
    "accepted": "接",
    "transferred": "转",
    "handling": "调",
    "redirected_legal": "诉",
    "review": "诉",
    "re_review": "诉",
    "replied": "化",
    "evaluated": "化",
    "revisited": "化",
    "closed": "化",
    "not_accepted": "接",
    "terminated": "化",
}
SELF_SERVICE = frozenset({Channel.kiosk, Channel.qr, Channel.web})
REPEAT_SIMILARITY = 0.35
REPEAT_LOOKBACK = timedelta(days=3 * 365)


class CaseNotFound(NotFound):
    code, message_zh = "case_not_found", "案件不存在或无权查看"


class AlreadyClaimed(PermissionDenied):
    code, message_zh = "already_claimed", "该案件已由其他工作人员认领"


# --- numbering and intake -----------------------------------------------------------------


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


def summary_of(row: PetitionCase) -> CaseSummary:
    return CaseSummary(
        id=row.id,
        case_no=row.case_no,
        site_id=row.site_id,
        channel=row.channel,
        state=row.state,
        summary=row.summary,
        matter_type=row.matter_type,
        first_receiver_id=row.first_receiver_id,
        petitioner_id=row.petitioner_id,
        confidential=row.confidential,
        registered_at=row.registered_at,
    )


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


async def representatives_of(
    session: AsyncSession, *, pii: PiiCipher, case_id: int
) -> list[RepresentativeView]:
    rows = await session.scalars(
        select(CaseRepresentative)
        .where(CaseRepresentative.case_id == case_id)
        .order_by(CaseRepresentative.position)
    )
    return [
        RepresentativeView(
            name=pii.decrypt(r.name_enc),
            phone=pii.decrypt(r.phone_enc),
            id_number=pii.decrypt(r.id_number_enc) if r.id_number_enc else None,
        )
        for r in rows
    ]


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
    """Register a case (state `registered`) with its gap-free number, in the caller's transaction."""
    row = await _insert_case(
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


async def _insert_case(
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
    site = await session.get(Site, site_id)
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
            actor_id=first_receiver_id,
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


ATTRIBUTE_TEXT_MAX = 500


def _validate_attributes(mt: MatterType, attributes: dict[str, Any]) -> dict[str, Any]:
    """The matter type's typed attributes: required ones present, each of its type
    (text: a string of at most 500 characters; int: a whole number; date: an ISO date;
    bool: true/false), nothing unknown. Raises InvalidInput naming the field."""
    out: dict[str, Any] = {}
    for spec in mt.fields or []:
        name, kind = spec["name"], spec.get("type", "text")
        label = spec.get("label", name)
        value = attributes.get(name)
        if value in (None, ""):
            if spec.get("required"):
                raise InvalidInput(
                    f"{mt.code} needs {name}",
                    field=name,
                    reason_zh=f"请填写“{label}”",
                )
            continue
        if kind == "int":
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and value.isdigit())
            ):
                raise InvalidInput(
                    f"{name} must be a whole number",
                    field=name,
                    reason_zh=f"“{label}”应为整数",
                )
            out[name] = int(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise InvalidInput(
                    f"{name} must be true or false", field=name, reason_zh=f"“{label}”应为是或否"
                )
            out[name] = value
        elif kind == "date":
            try:
                out[name] = date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise InvalidInput(
                    f"{name} must be a date (YYYY-MM-DD)",
                    field=name,
                    reason_zh=f"“{label}”应为日期（年-月-日）",
                ) from None
        else:
            if not isinstance(value, str) or len(value) > ATTRIBUTE_TEXT_MAX:
                raise InvalidInput(
                    f"{name} must be text of at most {ATTRIBUTE_TEXT_MAX} characters",
                    field=name,
                    reason_zh=f"“{label}”应为不超过{ATTRIBUTE_TEXT_MAX}字的文字",
                )
            out[name] = value
    unknown = set(attributes) - {s["name"] for s in mt.fields or []}
    if unknown:
        raise InvalidInput(f"unknown attributes: {sorted(unknown)}", fields=sorted(unknown))
    return out


async def intake(
    session: AsyncSession,
    *,
    pii: PiiCipher,
    staff: StaffIdentity | None,
    request: IntakeRequest,
    now: datetime,
    timezone: str = "Asia/Shanghai",
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    ip: str = "",
    max_representatives: int = STATUTORY_MAX_REPRESENTATIVES,
) -> IntakeResult:
    """Register a petition from any channel.

    Staff channels (window, agent, letter, video) need a signed-in staff member who becomes the
    first receiver (首问责任人); self-service channels (kiosk, qr, web) leave it empty until a
    staff member claims the case. Repeat petitions are linked; after 复核, the same facts are
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
        first_receiver_id = staff.staff_id
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
        attributes = _validate_attributes(mt, request.attributes)
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
    row = await _insert_case(
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
        timezone=timezone,
        category=category.value if category else None,
        confidential=confidential,
        accused_dept_id=request.accused_department_id,
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
    await dls.open_deadline(
        session,
        case_id=row.id,
        kind="acceptance",
        start=now,
        now=now,
        tz=ZoneInfo(timezone),
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


async def claim(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, now: datetime
) -> CaseSummary:
    """认领: the first staff member to claim a self-service case becomes its first receiver."""
    if not staff.can(Action.case_create):
        raise PermissionDenied("your roles may not claim cases")
    row = await _case_for_update(session, case_id)
    if row.first_receiver_id is not None:
        if row.first_receiver_id == staff.staff_id:
            return summary_of(row)
        raise AlreadyClaimed("this case already has a first receiver")
    facts = await load_facts(session, row)
    if staff.site_id not in facts.site_path and not staff.can(Action.case_view_all):
        raise PermissionDenied("claim cases of your own site")
    row.first_receiver_id = staff.staff_id
    row.updated_at = now
    session.add(
        CaseEvent(case_id=row.id, actor_id=staff.staff_id, type="claimed", payload={}, at=now)
    )
    await record(
        session, actor=staff.actor, action="case.claim", object_type="case", object_id=str(case_id)
    )
    return summary_of(row)


# --- facts, visibility and detail -------------------------------------------------------------


async def _case_for_update(session: AsyncSession, case_id: int) -> PetitionCase:
    row = await session.scalar(
        select(PetitionCase).where(PetitionCase.id == case_id).with_for_update()
    )
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    return row


async def site_path(session: AsyncSession, site_id: int) -> frozenset[int]:
    path: list[int] = []
    current: int | None = site_id
    while current is not None and len(path) < 8:
        path.append(current)
        current = await session.scalar(select(Site.parent_id).where(Site.id == current))
    return frozenset(path)


async def load_facts(session: AsyncSession, row: PetitionCase) -> CaseFacts:
    handlers = (
        await session.scalars(
            select(CaseHandler).where(CaseHandler.case_id == row.id, CaseHandler.active.is_(True))
        )
    ).all()
    return CaseFacts(
        state=row.state,
        site_id=row.site_id,
        first_receiver_id=row.first_receiver_id,
        lead_dept_id=row.lead_dept_id,
        review_level=row.review_level,
        confidential=row.confidential,
        accused_dept_id=row.accused_dept_id,
        site_path=await site_path(session, row.site_id),
        handler_staff_ids=frozenset(h.staff_id for h in handlers if h.staff_id is not None),
        handler_dept_ids=frozenset(
            h.department_id for h in handlers if h.department_id is not None
        ),
    )


async def visible_case(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, for_update: bool = False
) -> tuple[PetitionCase, CaseFacts]:
    """Load a case the staff member may see; otherwise the same 404 as a missing case (no
    disclosure that a confidential case exists)."""
    row = await (
        _case_for_update(session, case_id) if for_update else session.get(PetitionCase, case_id)
    )
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    facts = await load_facts(session, row)
    if not can_view(staff, facts):
        raise CaseNotFound(f"case {case_id} does not exist or is outside your scope")
    return row, facts


async def case_detail(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    ip: str = "",
    audit_view: bool = True,
    pii: PiiCipher | None = None,
) -> CaseDetail:
    """The case file; every staff view is written to the audit log. With `pii`, a collective
    case's representatives are decrypted into the view."""
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    if audit_view:
        await record(
            session,
            actor=staff.actor,
            action="case.view",
            object_type="case",
            object_id=str(case_id),
            ip=ip,
        )
    return await _detail(session, row, facts, staff, pii=pii)


async def _detail(
    session: AsyncSession,
    row: PetitionCase,
    facts: CaseFacts,
    staff: StaffIdentity | None,
    *,
    pii: PiiCipher | None = None,
) -> CaseDetail:
    handlers = (
        await session.scalars(
            select(CaseHandler).where(CaseHandler.case_id == row.id).order_by(CaseHandler.id)
        )
    ).all()
    deadlines = (
        await session.scalars(
            select(CaseDeadline).where(CaseDeadline.case_id == row.id).order_by(CaseDeadline.id)
        )
    ).all()
    policies = await dls.load_policies(session)
    times = {s.value: getattr(row, STATE_TIMESTAMP[s]) for s in CaseState}
    return CaseDetail(
        id=row.id,
        case_no=row.case_no,
        channel=row.channel,
        category=Category(row.category) if row.category else None,
        matter_type=row.matter_type,
        site_id=row.site_id,
        state=row.state,
        state_label=STATE_LABELS[row.state.value],
        link=CHAIN_LINK[row.state.value],
        summary=row.summary,
        confidential=row.confidential,
        collective=row.collective,
        headcount=row.headcount,
        representatives=(
            await representatives_of(session, pii=pii, case_id=row.id) if pii is not None else None
        ),
        grade=row.grade,
        review_level=row.review_level,
        parent_case_id=row.parent_case_id,
        repeat_of_id=row.repeat_of_id,
        non_accept_proposed=row.non_accept_proposed,
        first_receiver_id=row.first_receiver_id,
        lead_dept_id=row.lead_dept_id,
        legal_route=row.legal_route,
        reply_text=row.reply_text,
        state_times={k: v for k, v in times.items() if v is not None},
        handlers=[
            HandlerView(
                id=h.id,
                department_id=h.department_id,
                staff_id=h.staff_id,
                role=h.role,
                task=h.task,
                reply=h.reply,
                active=h.active,
            )
            for h in handlers
        ],
        deadlines=[DeadlineView(**d) for d in dls.deadline_views(list(deadlines), policies)],
        transitions=[t.name for t in available_transitions(staff, facts)] if staff else [],
    )


async def timeline(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int
) -> list[TimelineEvent]:
    await visible_case(session, staff=staff, case_id=case_id)
    rows = await session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
    )
    return [
        TimelineEvent(id=e.id, type=e.type, actor_id=e.actor_id, payload=e.payload, at=e.at)
        for e in rows
    ]


# --- transitions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyNotice:
    """What `transition` needs to send the evaluation link on reply (双评)."""

    pii: PiiCipher
    secret: bytes
    base_url: str
    #: The evaluation window in days (ONEDOOR_EVALUATION_WINDOW_DAYS); None: the
    #: `evaluation` deadline policy's limit (reference data, 7 days as seeded).
    evaluation_days: int | None = None
    #: Only if the case has no evaluation deadline row (never after `reply`).
    default_window: timedelta = timedelta(days=7)


async def transition(
    session: AsyncSession,
    *,
    staff: StaffIdentity | None,
    case_id: int,
    request: TransitionRequest,
    now: datetime,
    timezone: str = "Asia/Shanghai",
    ip: str = "",
    reply_notice: ReplyNotice | None = None,
) -> CaseDetail:
    """Fire one lifecycle transition; all effects in the caller's transaction.

    Raises:
        CaseNotFound, IllegalTransition, PermissionDenied, MissingField,
        ConfidentialTransferBlocked: nothing is written.
    """
    tz = ZoneInfo(timezone)
    if staff is not None:
        row, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    else:
        row = await _case_for_update(session, case_id)
        facts = await load_facts(session, row)
    fields = request.model_dump(exclude={"transition", "attachments"})
    t = check_transition(staff, facts, request.transition, fields)
    if t.name == "transfer":
        target = await session.get(Department, request.target_department_id)
        if target is None:
            raise InvalidInput("unknown target department", field="target_department_id")
    before = row.state
    actor_id = staff.staff_id if staff else None
    payload: dict[str, Any] = {"from": before.value, "to": t.target.value}
    for key in ("reason", "legal_route", "target_department_id", "note"):
        if fields.get(key) not in (None, ""):
            payload[key] = fields[key]
    if request.attachments:
        payload["attachments"] = request.attachments

    match t.name:
        case "accept":
            if row.lead_dept_id is None and staff is not None and staff.department_id is not None:
                row.lead_dept_id = staff.department_id
                session.add(
                    CaseHandler(
                        case_id=row.id,
                        department_id=staff.department_id,
                        staff_id=staff.staff_id,
                        role="lead",
                        task="受理承办",
                        added_by_id=actor_id,
                        added_at=now,
                    )
                )
            await dls.meet_deadline(session, case_id=row.id, kind="acceptance", now=now)
            await dls.open_deadline(
                session,
                case_id=row.id,
                kind="handling",
                start=now,
                now=now,
                tz=tz,
                limit_days=await _matter_days(session, row, "handling"),
            )
        case "not_accept" | "redirect_legal":
            row.legal_route = request.legal_route
            await dls.meet_deadline(session, case_id=row.id, kind="acceptance", now=now)
            await dls.cancel_deadlines(session, case_id=row.id, now=now)
        case "transfer":
            target_id = int(fields["target_department_id"])
            await _deactivate_lead(session, row.id)
            session.add(
                CaseHandler(
                    case_id=row.id,
                    department_id=target_id,
                    role="lead",
                    task=request.reason or "转送/交办",
                    added_by_id=actor_id,
                    added_at=now,
                )
            )
            row.lead_dept_id = target_id
        case "reply":
            row.reply_text = request.reply
            kind = {0: "handling", 1: "review_decision", 2: "re_review_decision"}[row.review_level]
            await dls.meet_deadline(session, case_id=row.id, kind=kind, now=now)
            # A second reply (after reopening) starts both windows again.
            await dls.open_deadline(
                session,
                case_id=row.id,
                kind=dls.EVALUATION,
                start=now,
                now=now,
                tz=tz,
                limit_days=reply_notice.evaluation_days if reply_notice else None,
                restart=True,
            )
            await dls.open_deadline(
                session, case_id=row.id, kind="revisit", start=now, now=now, tz=tz, restart=True
            )
            if row.review_level < 2:
                await dls.open_deadline(
                    session,
                    case_id=row.id,
                    now=now,
                    tz=tz,
                    start=now,
                    kind="review_request" if row.review_level == 0 else "re_review_request",
                )
        case "revisit" | "close":
            await dls.meet_deadline(session, case_id=row.id, kind="revisit", now=now)
            if t.name == "close":
                await dls.cancel_deadlines(
                    session, case_id=row.id, now=now, keep=("review_request", "re_review_request")
                )
        case "reopen":
            payload["reopened"] = True
        case "terminate":
            await dls.cancel_deadlines(session, case_id=row.id, now=now)
        case _:
            pass
    row.state = t.target
    setattr(row, STATE_TIMESTAMP[t.target], now)
    row.updated_at = now
    session.add(CaseEvent(case_id=row.id, actor_id=actor_id, type=t.name, payload=payload, at=now))
    await session.flush()
    if t.name == "reply" and reply_notice is not None:
        from server.cases.evaluation import issue_evaluation

        await issue_evaluation(session, case=row, staff_id=actor_id, now=now, notice=reply_notice)
    await record(
        session,
        actor=staff.actor if staff else "system",
        action=f"case.{t.name}",
        object_type="case",
        object_id=str(row.id),
        ip=ip,
        detail={"from": before.value, "to": t.target.value},
    )
    return await _detail(session, row, await load_facts(session, row), staff)


async def _matter_days(session: AsyncSession, row: PetitionCase, kind: str) -> int | None:
    if row.matter_type is None:
        return None
    days = await session.scalar(
        select(MatterType.deadline_days).where(MatterType.code == row.matter_type)
    )
    value = (days or {}).get(kind)
    return int(value) if value is not None else None


async def _deactivate_lead(session: AsyncSession, case_id: int) -> None:
    for h in await session.scalars(
        select(CaseHandler).where(
            CaseHandler.case_id == case_id, CaseHandler.role == "lead", CaseHandler.active.is_(True)
        )
    ):
        h.active = False


async def request_review(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    reason: str,
    now: datetime,
    timezone: str = "Asia/Shanghai",
    case_no_format: str = "{admin_code}-{year}-{seq:06d}",
    pii: PiiCipher | None = None,
) -> CaseSummary:
    """Register a 复查 (or 复核) request as a child case linked by parent_case_id."""
    if not staff.can(Action.case_create) and not staff.can(Action.case_handle):
        raise PermissionDenied("your roles may not register a review request")
    parent, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    state = check_review_request(facts)
    if not reason.strip():
        raise InvalidInput("a review request needs the petitioner's reasons", field="reason")
    level = parent.review_level + 1
    child = await _insert_case(
        session,
        pii=pii,
        site_id=parent.site_id,
        channel=parent.channel,
        summary=f"{'复查' if level == 1 else '复核'}申请：{reason}",
        petitioner=None,
        petitioner_id=parent.petitioner_id,
        first_receiver_id=staff.staff_id,
        now=now,
        matter_type=parent.matter_type,
        case_no_format=case_no_format,
        timezone=timezone,
        state=state,
        parent_case_id=parent.id,
        review_level=level,
        category=parent.category,
        confidential=parent.confidential,
        accused_dept_id=parent.accused_dept_id,
    )
    child.attributes = {}
    await dls.meet_deadline(
        session,
        case_id=parent.id,
        kind="review_request" if level == 1 else "re_review_request",
        now=now,
    )
    await dls.open_deadline(
        session,
        case_id=child.id,
        now=now,
        tz=ZoneInfo(timezone),
        start=now,
        kind="review_decision" if level == 1 else "re_review_decision",
    )
    session.add(
        CaseEvent(
            case_id=parent.id,
            actor_id=staff.staff_id,
            type="review_requested",
            payload={"child_case_no": child.case_no, "level": level},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.request_review",
        object_type="case",
        object_id=str(parent.id),
        detail={"child": child.id, "level": level},
    )
    return summary_of(child)


async def add_handler(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    request: HandlerRequest,
    now: datetime,
) -> HandlerView:
    """Add a co-handling department or a named expert/supervisor/mediator. Never removes the
    first receiver; blocks the accused unit on confidential cases."""
    if not staff.can(Action.case_assign):
        raise PermissionDenied("your roles may not assign handlers")
    row, facts = await visible_case(session, staff=staff, case_id=case_id, for_update=True)
    if request.department_id is None and request.staff_id is None:
        raise InvalidInput("name a department or a staff member", field="department_id")
    dept_id = request.department_id
    if request.staff_id is not None:
        from server.org.models import Staff

        person = await session.get(Staff, request.staff_id)
        if person is None:
            raise InvalidInput("unknown staff member", field="staff_id")
        dept_id = dept_id or person.department_id
        if row.confidential and person.department_id == row.accused_dept_id and row.accused_dept_id:
            raise ConfidentialTransferBlocked("a member of the accused unit may not handle it")
    if dept_id is not None and await session.get(Department, dept_id) is None:
        raise InvalidInput("unknown department", field="department_id")
    if row.confidential and dept_id is not None and dept_id == row.accused_dept_id:
        raise ConfidentialTransferBlocked("accusation material may not go to the accused unit")
    h = CaseHandler(
        case_id=case_id,
        department_id=dept_id,
        staff_id=request.staff_id,
        role=request.role,
        task=request.task,
        added_by_id=staff.staff_id,
        added_at=now,
        active=True,
    )
    session.add(h)
    row.updated_at = now
    await session.flush()
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="handler_added",
            payload={"department_id": dept_id, "staff_id": request.staff_id, "role": request.role},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.add_handler",
        object_type="case",
        object_id=str(case_id),
        detail={"department_id": dept_id, "role": request.role},
    )
    del facts
    return HandlerView(
        id=h.id,
        department_id=h.department_id,
        staff_id=h.staff_id,
        role=h.role,
        task=h.task,
        reply=h.reply,
        active=h.active,
    )


async def supervise(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    case_id: int,
    request: SupervisionRequest,
    now: datetime,
) -> int:
    """督办: attaches at any open state and never changes the state."""
    if not staff.can(Action.case_supervise):
        raise PermissionDenied("your roles may not issue supervision orders")
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    from server.cases.statemachine import OPEN_STATES

    if facts.state not in OPEN_STATES:
        raise IllegalTransition("supervision attaches to open cases only")
    esc = CaseEscalation(
        case_id=case_id,
        type=request.type,
        level=1,
        to_role="dept_leader",
        note=request.note,
        due_at=now + timedelta(days=request.due_days),
        created_by_id=staff.staff_id,
        created_at=now,
    )
    session.add(esc)
    await session.flush()
    session.add(
        CaseEvent(
            case_id=case_id,
            actor_id=staff.staff_id,
            type="supervision",
            payload={"type": request.type, "note": request.note},
            at=now,
        )
    )
    await record(
        session,
        actor=staff.actor,
        action="case.supervise",
        object_type="case",
        object_id=str(row.id),
        detail={"type": request.type},
    )
    return esc.id


# --- queries ---------------------------------------------------------------------------------


def visibility_branches(staff: StaffIdentity) -> list[ColumnElement[bool]]:
    """`can_view` for lists, as disjuncts: a case is visible iff it satisfies one of them.

    Kept in step with statemachine.can_view. Each disjunct is one index-friendly shape
    (first receiver, named handler, lead department, co-handling department, site), so
    `list_cases` runs them as separate queries: ORed together, no index serves the whole.
    An empty list means the staff member sees nothing.
    """
    if not staff.can(Action.case_view):
        return []
    not_accused: ColumnElement[bool] = or_(
        PetitionCase.confidential.is_(False),
        PetitionCase.accused_dept_id.is_(None),
        PetitionCase.accused_dept_id != (staff.department_id or -1),
    )
    if staff.can(Action.case_view_all):
        return [not_accused]
    named = PetitionCase.id.in_(
        select(CaseHandler.case_id).where(
            CaseHandler.staff_id == staff.staff_id, CaseHandler.active.is_(True)
        )
    )
    branches: list[ColumnElement[bool]] = [
        and_(not_accused, PetitionCase.first_receiver_id == staff.staff_id),
        and_(not_accused, named),
    ]
    open_case = and_(not_accused, PetitionCase.confidential.is_(False))
    if staff.department_id is not None and staff.roles & {Role.dept_handler, Role.dept_leader}:
        branches.append(and_(open_case, PetitionCase.lead_dept_id == staff.department_id))
        branches.append(
            and_(
                open_case,
                PetitionCase.id.in_(
                    select(CaseHandler.case_id).where(
                        CaseHandler.department_id == staff.department_id,
                        CaseHandler.active.is_(True),
                    )
                ),
            )
        )
    if Role.street_coordinator in staff.roles:
        streets = select(Site.id).where(
            or_(Site.id == staff.site_id, Site.parent_id == staff.site_id)
        )
        branches.append(and_(open_case, PetitionCase.site_id.in_(streets)))
    if staff.roles & {Role.window_officer, Role.community_agent}:
        branches.append(and_(open_case, PetitionCase.site_id == staff.site_id))
    return branches


def visibility_clause(staff: StaffIdentity) -> ColumnElement[bool]:
    """SQL form of `can_view` (the OR of `visibility_branches`)."""
    branches = visibility_branches(staff)
    return or_(*branches) if branches else false()


def _like_escape(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Search step 1 walks this many of the newest ids (below the cursor) before turning to the
#: text index; see `list_cases`. About sqrt(limit x cases) balances the two steps' worst cases.
SEARCH_WINDOW = 16384


def _filters(query: CaseQuery) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if query.state is not None:
        out.append(PetitionCase.state == query.state)
    if query.site_id is not None:
        out.append(PetitionCase.site_id == query.site_id)
    if query.department_id is not None:
        out.append(PetitionCase.lead_dept_id == query.department_id)
    if query.matter_type:
        out.append(PetitionCase.matter_type == query.matter_type)
    if query.registered_from is not None:
        out.append(PetitionCase.registered_at >= query.registered_from)
    if query.registered_to is not None:
        out.append(PetitionCase.registered_at < query.registered_to)
    if query.overdue is not None:
        overdue_ids = select(CaseDeadline.case_id).where(CaseDeadline.status == "overdue")
        out.append(
            PetitionCase.id.in_(overdue_ids)
            if query.overdue
            else PetitionCase.id.not_in(overdue_ids)
        )
    if query.before_id is not None:
        out.append(PetitionCase.id < query.before_id)
    return out


def _text_match(q: str) -> ColumnElement[bool]:
    """The search itself, the same on every backend: summary contains q (case-insensitive),
    or q is the case number."""
    return or_(
        PetitionCase.summary.ilike(f"%{_like_escape(q)}%", escape="\\"),
        PetitionCase.case_no == q,
    )


def _text_index_clause(q: str, dialect: str) -> tuple[bool, list[ColumnElement[bool]]]:
    """Whether a PostgreSQL index can find `_text_match(q)`, and what to add so that it does.

    Three or more characters: the trigram index answers the ILIKE itself. Two characters
    (common in Chinese: 噪声, 漏水): pg_trgm extracts nothing from them, so the bigram GIN
    index on `case_bigrams(summary)` (migration 0005) answers "contains this bigram", and
    the ILIKE rechecks. One character, and SQLite: no index.
    """
    if dialect != "postgresql" or len(q) < 2:
        return False, []
    if len(q) >= 3:
        return True, []
    bigrams = func.case_bigrams(PetitionCase.summary, type_=pg.ARRAY(Text))
    return True, [
        or_(
            bigrams.contains(func.case_bigrams(q, type_=pg.ARRAY(Text))),
            PetitionCase.case_no == q,
        )
    ]


async def list_cases(
    session: AsyncSession, *, staff: StaffIdentity, query: CaseQuery, now: datetime | None = None
) -> list[CaseListItem]:
    """Filter and full-text search, newest first, keyset paged (`before_id`).

    Each visibility branch is its own query (ORed together they defeat every index), and
    the newest `limit` ids of the branches are merged. Without a search term a branch is one
    `ORDER BY id DESC LIMIT n`, served by the (column, id) indexes. With one, no single plan
    suits both a common term (walk the newest rows and test the text: the first n hits come
    quickly) and a rare term or a rare combination with the filters (intersect the text
    index with the filters, then sort the few rows), and the planner cannot tell them apart
    (it assumes the term and the filters are independent). So each branch is searched in two
    steps:

    1. the newest SEARCH_WINDOW ids below the cursor, walked in order: bounded work, and
       enough for any term common enough that step 2 would be expensive;
    2. only if step 1 found fewer than `limit`: the ids below the window through the text
       index, sorted explicitly (`ORDER BY id + 0`) so that PostgreSQL intersects bitmaps
       instead of walking the primary key until it has seen every row.

    Same rows and order as the plain query (tests/component/cases/test_search.py checks
    it on both backends); docs/cases.md has the plans and figures.
    """
    branches = visibility_branches(staff)
    if not branches:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # asyncpg prepares every statement, and after five runs PostgreSQL may switch to a
        # generic plan: one that cannot see that "%噪声%" has no trigram scans the whole
        # trigram index (0.4 s instead of 10 ms). Plan these with the values, always.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    filters = _filters(query)
    n = query.limit
    q = (query.q or "").strip()
    if q:
        ids = await _search_ids(session, branches, filters, q, n, query.before_id)
        if not ids:
            return []
        wanted: Any = sorted(ids, reverse=True)[:n]
    else:
        parts = [
            select(PetitionCase.id)
            .where(branch, *filters)
            .order_by(PetitionCase.id.desc())
            .limit(_lit(n))
            .subquery()
            for branch in branches
        ]
        wanted = union_all(*(select(p.c.id) for p in parts)).subquery().select()
    rows = await session.scalars(
        select(PetitionCase)
        .where(PetitionCase.id.in_(wanted))
        .order_by(PetitionCase.id.desc())
        .limit(_lit(n))
    )
    return [
        CaseListItem(
            id=r.id,
            case_no=r.case_no,
            state=r.state,
            summary=r.summary,
            matter_type=r.matter_type,
            lead_dept_id=r.lead_dept_id,
            confidential=r.confidential,
            registered_at=r.registered_at,
        )
        for r in rows
    ]


def _lit(n: int) -> ColumnElement[int]:
    """An integer written into the SQL, not bound: with prepared statements a bound LIMIT
    becomes a guess (10 % of the rows) once PostgreSQL switches to a generic plan."""
    return literal_column(str(int(n)), Integer)


async def _search_ids(
    session: AsyncSession,
    branches: list[ColumnElement[bool]],
    filters: list[ColumnElement[bool]],
    q: str,
    n: int,
    before_id: int | None,
) -> set[int]:
    """The newest `n` matching ids of every branch (see `list_cases`)."""
    top = before_id
    if top is None:
        newest = await session.scalar(select(func.max(PetitionCase.id)))
        if newest is None:
            return set()
        top = newest + 1
    window_floor = top - SEARCH_WINDOW  # step 1 looks at window_floor <= id < top
    match = _text_match(q)
    step1 = [
        select(literal(b).label("branch"), PetitionCase.id.label("id"))
        .where(branch, *filters, match, PetitionCase.id >= window_floor)
        .order_by(PetitionCase.id.desc())
        .limit(_lit(n))
        .subquery()
        for b, branch in enumerate(branches)
    ]
    ids: set[int] = set()
    found = [0] * len(branches)
    for b, case_id in await session.execute(union_all(*(select(p) for p in step1))):
        ids.add(case_id)
        found[b] += 1
    short = [b for b in range(len(branches)) if found[b] < n]
    if not short or window_floor <= 1:
        return ids
    indexed, index_clause = _text_index_clause(q, session.get_bind().dialect.name)
    # with no index for the term, walking the primary key is the best there is
    order = (PetitionCase.id + _lit(0)).desc() if indexed else PetitionCase.id.desc()
    step2 = [
        select(PetitionCase.id)
        .where(branches[b], *filters, *index_clause, match, PetitionCase.id < window_floor)
        .order_by(order)
        .limit(_lit(n - found[b]))
        .subquery()
        for b in short
    ]
    ids.update(await session.scalars(union_all(*(select(p.c.id) for p in step2))))
    return ids


async def get_case(session: AsyncSession, *, case_id: int) -> CaseSummary:
    row = await session.get(PetitionCase, case_id)
    if row is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    return summary_of(row)


async def cases_for_receiver(
    session: AsyncSession, *, staff_id: int, limit: int = 50
) -> list[CaseSummary]:
    rows = await session.scalars(
        select(PetitionCase)
        .where(PetitionCase.first_receiver_id == staff_id)
        .order_by(PetitionCase.id.desc())
        .limit(limit)
    )
    return [summary_of(r) for r in rows]
