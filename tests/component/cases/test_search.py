"""Case list and search on SQLite and PostgreSQL: the split, two-phase query in
`queries.list_cases` returns exactly what the plain "visible AND filters ORDER BY id DESC
LIMIT n" query returns."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth.permissions import StaffIdentity
from server.cases import access, queries
from server.cases.models import CaseHandler, CaseState, Channel, PetitionCase
from server.cases.schemas import CaseQuery
from server.org.models import Site

from .conftest import NOW, centre_id, dept_id, who

PHRASES = [
    "小区噪声扰民",
    "楼上噪音",
    "物业费纠纷",
    "拖欠工资",
    "噪声",
    "电梯故障噪声大",
    "ab噪声AB",
]
STAFF = ["supervisor01", "handler01", "handler02", "leader03", "window01", "window02"]
QUERIES = [
    CaseQuery(),
    CaseQuery(q="噪声"),
    CaseQuery(q="噪"),
    CaseQuery(q="物业费"),
    CaseQuery(q="AB"),
    CaseQuery(q="纠纷", state=CaseState.handling),
    CaseQuery(q="噪声", limit=3),
    CaseQuery(q="工资", limit=2, before_id=10**9),
    CaseQuery(q="不存在的词"),
    CaseQuery(state=CaseState.registered, limit=5),
]


async def _seed(db: async_sessionmaker[AsyncSession]) -> list[int]:
    """60 cases over departments, sites, receivers, confidential/accused, co-handlers."""
    async with db.begin() as s:
        centre = await centre_id(s)
        other_site = await s.scalar(select(Site.id).where(Site.id != centre).limit(1))
        assert other_site is not None
        depts = [await dept_id(s, code) for code in ("hrss", "housing", "urban")]
        window = await who(s, "window01")
        handler02 = await who(s, "handler02")
        rows = []
        for i in range(60):
            rows.append(
                PetitionCase(
                    case_no=f"T-{i:04d}",
                    site_id=centre if i % 3 else other_site,
                    year=2026,
                    seq=i + 1,
                    channel=Channel.window,
                    summary=f"{PHRASES[i % len(PHRASES)]}第{i}件",
                    state=[CaseState.registered, CaseState.handling][i % 2],
                    confidential=i % 10 == 0,
                    accused_dept_id=depts[2] if i % 10 == 0 else None,
                    lead_dept_id=depts[i % 3] if i % 4 else None,
                    first_receiver_id=window.staff_id if i % 5 == 0 else None,
                    created_at=NOW + timedelta(minutes=i),
                    updated_at=NOW + timedelta(minutes=i),
                    registered_at=NOW + timedelta(minutes=i),
                    attributes={},
                )
            )
        s.add_all(rows)
        await s.flush()
        for row in rows[::7]:
            s.add(
                CaseHandler(
                    case_id=row.id,
                    department_id=depts[1],
                    role="co",
                    active=True,
                    added_at=NOW,
                )
            )
        for row in rows[::11]:
            s.add(
                CaseHandler(
                    case_id=row.id,
                    staff_id=handler02.staff_id,
                    role="expert",
                    active=True,
                    added_at=NOW,
                )
            )
        return [r.id for r in rows]


async def _reference(s: AsyncSession, staff: StaffIdentity, query: CaseQuery) -> list[int]:
    """The plain query: one WHERE with the ORed visibility, newest first."""
    stmt = select(PetitionCase.id).where(access.visibility_clause(staff), *queries._filters(query))
    if query.q:
        stmt = stmt.where(queries._text_match(query.q.strip()))
    return list(await s.scalars(stmt.order_by(PetitionCase.id.desc()).limit(query.limit)))


@pytest.mark.parametrize("window", [1, 4, 25, queries.SEARCH_WINDOW])
async def test_list_matches_the_plain_query(
    db: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Small windows send every branch to step 2 (the text index)."""
    await _seed(db)
    monkeypatch.setattr(queries, "SEARCH_WINDOW", window)
    async with db() as s:
        for username, query in itertools.product(STAFF, QUERIES):
            staff = await who(s, username)
            got = [i.id for i in await queries.list_cases(s, staff=staff, query=query)]
            assert got == await _reference(s, staff, query), (username, query)


async def test_two_character_chinese_search(
    db: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _seed(db)
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 2)
    async with db() as s:
        supervisor = await who(s, "supervisor01")
        rows = await queries.list_cases(s, staff=supervisor, query=CaseQuery(q="噪声", limit=200))
        summaries = {r.id: r.summary for r in rows}
        expected = {
            case_id
            for i, case_id in enumerate(ids)
            if "噪声" in PHRASES[i % len(PHRASES)]
            and not (i % 10 == 0 and supervisor.department_id is not None)
        }
        assert set(summaries) == expected
        assert all("噪声" in text for text in summaries.values())
        assert [r.id for r in rows] == sorted(summaries, reverse=True)
        # Latin letters match case-insensitively on both backends
        upper = await queries.list_cases(s, staff=supervisor, query=CaseQuery(q="ab", limit=200))
        assert {r.id for r in upper} == {ids[i] for i in range(60) if i % len(PHRASES) == 6}
        by_number = await queries.list_cases(s, staff=supervisor, query=CaseQuery(q="T-0007"))
        assert [r.case_no for r in by_number] == ["T-0007"]


async def test_department_handler_sees_lead_co_and_named_cases_only(
    db: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _seed(db)
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 3)
    async with db() as s:
        labour, housing, urban = [await dept_id(s, c) for c in ("hrss", "housing", "urban")]
        for username, dept in (("handler01", labour), ("handler02", housing)):
            staff = await who(s, username)
            assert staff.department_id == dept
        handler02 = await who(s, "handler02")
        got = await queries.list_cases(s, staff=handler02, query=CaseQuery(q="噪声", limit=200))
        rows = {r.id: await s.get(PetitionCase, r.id) for r in got}
        co = {ids[i] for i in range(0, 60, 7)}
        named = {ids[i] for i in range(0, 60, 11)}
        expected = set()
        for i, case_id in enumerate(ids):
            if "噪声" not in PHRASES[i % len(PHRASES)]:
                continue
            confidential = i % 10 == 0
            lead = [labour, housing, urban][i % 3] if i % 4 else None
            if case_id in named or (not confidential and (lead == housing or case_id in co)):
                expected.add(case_id)
        assert set(rows) == expected
        assert any(r is not None and r.lead_dept_id == housing for r in rows.values())
        assert any(case_id in co and case_id not in named for case_id in rows)
