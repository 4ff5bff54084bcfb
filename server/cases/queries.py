"""Reading cases: the list with filters and full-text search (keyset paged, see
`list_cases`), the case file and its timeline, and the small look-ups pages need. Only
cases the staff member may see (server.cases.access) are returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Text,
    and_,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from server.audit.service import record
from server.auth.permissions import Action, StaffIdentity
from server.cases import deadline_clock
from server.cases.access import (
    CaseNotFound,
    visibility_branches,
    visibility_clause,
    visible_case,
)
from server.cases.evaluation import assessment_cases
from server.cases.labels import STATE_LABELS, chain_link
from server.cases.models import (
    CaseDeadline,
    CaseEvent,
    CaseHandler,
    CaseRepresentative,
    CaseState,
    Category,
    MediationAgreement,
    PetitionCase,
    Petitioner,
)
from server.cases.schemas import (
    CaseDetail,
    CaseListItem,
    CaseQuery,
    CaseSummary,
    HandlerView,
    PetitionerView,
    RepresentativeView,
    TimelineEvent,
)
from server.cases.statemachine import (
    STATE_TIMESTAMP,
    CaseFacts,
    available_transitions,
    may_see_petitioner,
    other_actions,
)
from server.kernel.crypto import PiiCipher
from server.kernel.db import utcnow
from server.kernel.errors import PermissionDenied
from server.org.models import Department


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
    return await detail_of(session, row, facts, staff, pii=pii)


async def _mediating(session: AsyncSession, case_id: int) -> bool:
    """A mediation agreement of the case, or a mediation session on its timeline."""
    agreement = await session.scalar(
        select(MediationAgreement.id).where(MediationAgreement.case_id == case_id).limit(1)
    )
    if agreement is not None:
        return True
    kinds = await session.scalars(
        select(CaseEvent.payload).where(
            CaseEvent.case_id == case_id, CaseEvent.type == "session_started"
        )
    )
    return any((payload or {}).get("kind") == "mediation" for payload in kinds)


async def detail_of(
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
    policies = await deadline_clock.load_policies(session)
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
        link=chain_link(row.state.value, mediating=await _mediating(session, row.id)),
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
        deadlines=deadline_clock.deadline_views(list(deadlines), policies),
        transitions=[t.name for t in available_transitions(staff, facts)] if staff else [],
        actions=other_actions(staff, facts) if staff else [],
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


def _like_escape(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Search step 1 walks this many of the newest ids (below the cursor) before turning to the
#: text index; see `list_cases`. About sqrt(limit x cases) balances the two steps' worst cases.
SEARCH_WINDOW = 16384


def _deadline_filter(deadline: str, now: datetime) -> ColumnElement[bool]:
    """Cases with a running deadline of that colour (worklist.colour_of, in SQL)."""
    running = CaseDeadline.status.in_(("open", "overdue"))
    late = or_(CaseDeadline.status == "overdue", CaseDeadline.due_at < now)
    if deadline == "overdue":
        cond = late
    elif deadline == "red":
        cond = or_(late, CaseDeadline.warn_level == "red")
    elif deadline == "yellow":
        cond = and_(CaseDeadline.warn_level == "yellow", not_(late))
    else:  # green: running, and none of its running deadlines warned or late
        warned = select(CaseDeadline.case_id).where(
            running, or_(late, CaseDeadline.warn_level.in_(("yellow", "red")))
        )
        return and_(
            PetitionCase.id.in_(select(CaseDeadline.case_id).where(running)),
            PetitionCase.id.not_in(warned),
        )
    return PetitionCase.id.in_(select(CaseDeadline.case_id).where(running, cond))


def _filters(query: CaseQuery, now: datetime | None = None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if query.state is not None:
        out.append(PetitionCase.state == query.state)
    if query.channel is not None:
        out.append(PetitionCase.channel == query.channel)
    if query.deadline is not None:
        out.append(_deadline_filter(query.deadline, now or utcnow()))
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
    if query.assess is not None:
        out.append(
            PetitionCase.id.in_(
                assessment_cases(
                    query.assess,
                    by=query.assess_by,
                    key=query.assess_key,
                    since=query.assess_from,
                    until=query.assess_to,
                )
            )
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
    filters = _filters(query, now)
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
            channel=r.channel,
            site_id=r.site_id,
        )
        for r in rows
    ]


#: The case list page's page size, and the most rows one export writes.
PAGE_SIZE = 20
EXPORT_MAX = 5000


def _item(r: PetitionCase) -> CaseListItem:
    return CaseListItem(
        id=r.id,
        case_no=r.case_no,
        state=r.state,
        summary=r.summary,
        matter_type=r.matter_type,
        lead_dept_id=r.lead_dept_id,
        confidential=r.confidential,
        registered_at=r.registered_at,
        channel=r.channel,
        site_id=r.site_id,
    )


def _page_where(staff: StaffIdentity, query: CaseQuery, now: datetime) -> list[Any]:
    where: list[Any] = [visibility_clause(staff), *_filters(query, now)]
    q = (query.q or "").strip()
    if q:
        where.append(_text_match(q))
    return where


async def list_page(
    session: AsyncSession, *, staff: StaffIdentity, query: CaseQuery, page: int, now: datetime
) -> tuple[list[CaseListItem], int]:
    """One page (PAGE_SIZE rows, newest first) of the cases the staff member may see that
    match the filters and the search, and how many match in all (for the page links)."""
    where = _page_where(staff, query, now)
    total = int(
        await session.scalar(select(func.count()).select_from(PetitionCase).where(*where)) or 0
    )
    rows = await session.scalars(
        select(PetitionCase)
        .where(*where)
        .order_by(PetitionCase.id.desc())
        .offset((max(page, 1) - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    return [_item(r) for r in rows], total


async def export_cases(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    query: CaseQuery,
    now: datetime,
    ip: str = "",
) -> list[CaseListItem]:
    """Every case of the list's filters (at most EXPORT_MAX), under the same visibility and
    confidentiality rule as the list, for the roles that exchange case data; the export is
    written to the audit log with its filters and row count.

    Raises:
        PermissionDenied: the roles may not export.
    """
    if not staff.can(Action.case_exchange):
        raise PermissionDenied("your roles may not export cases")
    rows = await session.scalars(
        select(PetitionCase)
        .where(*_page_where(staff, query, now))
        .order_by(PetitionCase.id.desc())
        .limit(EXPORT_MAX)
    )
    items = [_item(r) for r in rows]
    await record(
        session,
        actor=staff.actor,
        action="case.export",
        object_type="case",
        object_id="",
        ip=ip,
        detail={"rows": len(items), "filters": query.model_dump(mode="json", exclude_none=True)},
    )
    return items


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
        .where(or_(PetitionCase.first_receiver_id == staff_id, PetitionCase.agent_id == staff_id))
        .order_by(PetitionCase.id.desc())
        .limit(limit)
    )
    return [summary_of(r) for r in rows]


async def case_number(session: AsyncSession, *, case_id: int) -> str:
    """The case number for a heading ("" if there is no such case); the caller has already
    checked that the staff member may see what it shows (an agreement of the case)."""
    case_no = await session.scalar(select(PetitionCase.case_no).where(PetitionCase.id == case_id))
    return case_no or ""


async def petitioner_phone(session: AsyncSession, *, pii: PiiCipher, case_id: int) -> str | None:
    """The petitioner's phone, decrypted (to tell them of an extension); None if the case has
    no petitioner or the petitioner gave no phone."""
    phone_enc = await session.scalar(
        select(Petitioner.phone_enc)
        .join(PetitionCase, PetitionCase.petitioner_id == Petitioner.id)
        .where(PetitionCase.id == case_id)
    )
    return pii.decrypt(phone_enc) if phone_enc else None


def _mask(value: str, keep_start: int, keep_end: int) -> str:
    hidden = max(len(value) - keep_start - keep_end, 1)
    return value[:keep_start] + "*" * hidden + (value[-keep_end:] if keep_end else "")


async def case_petitioner(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int, pii: PiiCipher, ip: str = ""
) -> PetitionerView | None:
    """The case's petitioner for the case page (None if the case has none): decrypted for
    those `may_see_petitioner` allows, and that view written to the audit log; masked
    (王**, 139****5678, region and last four of the ID number) for everyone else."""
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    if row.petitioner_id is None:
        return None
    person = await session.get(Petitioner, row.petitioner_id)
    if person is None:
        return None
    name = pii.decrypt(person.name_enc)
    phone = pii.decrypt(person.phone_enc) if person.phone_enc else None
    id_number = pii.decrypt(person.id_number_enc) if person.id_number_enc else None
    if may_see_petitioner(staff, facts):
        await record(
            session,
            actor=staff.actor,
            action="case.petitioner_view",
            object_type="case",
            object_id=str(case_id),
            ip=ip,
        )
        masked_id = _mask(id_number, 6, 4) if id_number else None
        return PetitionerView(name=name, phone=phone, id_number=masked_id, in_clear=True)
    return PetitionerView(
        name=_mask(name, 1, 0),
        phone=_mask(phone, 3, 4) if phone else None,
        id_number=_mask(id_number, 6, 4) if id_number else None,
        in_clear=False,
    )


async def transfer_targets(
    session: AsyncSession, *, staff: StaffIdentity, case_id: int
) -> list[tuple[int, str]]:
    """(id, name) of the departments the case may be transferred to: every department but
    the current lead one and never the unit the petition accuses (检举控告材料不得转送被检举单位)."""
    row, facts = await visible_case(session, staff=staff, case_id=case_id)
    rows = await session.execute(select(Department.id, Department.name).order_by(Department.id))
    return [
        (int(i), str(n))
        for i, n in rows.tuples()
        if i not in (row.lead_dept_id, facts.accused_dept_id)
    ]
