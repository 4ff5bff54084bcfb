"""Provincial exchange: imports carry the matter type's required fields, each record is
validated like an intake and written whole or not at all; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import csrf
from server.cases import exchange
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import CaseCounter, PetitionCase, Petitioner
from server.kernel.crypto import PiiCipher
from server.kernel.errors import PermissionDenied
from tests.conftest import signed_in

from .conftest import NOW, centre_id, who


def record(no: str, site: int, matter: str | None, **attributes: Any) -> exchange.ImportCase:
    return exchange.ImportCase.model_validate(
        {
            "provincial_no": no,
            "site_id": site,
            "summary": f"省平台交办事项{no}",
            "matter_type": matter,
            "attributes": attributes,
            # one petitioner each (a phone number identifies a petitioner)
            "petitioner": {"name": "李四", "phone": f"139{int(no.split('-')[1]):08d}"},
        }
    )


async def counts(db: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    async with db() as s:
        cases = await s.scalar(select(func.count()).select_from(PetitionCase))
        people = await s.scalar(select(func.count()).select_from(Petitioner))
        seq = await s.scalar(select(func.coalesce(func.sum(CaseCounter.last_seq), 0)))
    return int(cases or 0), int(people or 0), int(seq or 0)


async def test_records_with_required_fields_are_validated_one_by_one(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        site = await centre_id(s)
    before = await counts(db)
    batch = [
        record("ZJ-001", site, "wage_arrears", employer="某建筑公司", months=3, workers=12),
        record("ZJ-002", site, "property_management"),  # lacks 小区名称 (estate)
        record("ZJ-003", site, "no_such_type"),
        record("ZJ-004", site, "wage_arrears", employer="某公司", months="三"),
        record("ZJ-005", site, "elderly_care"),  # no required fields
        record("ZJ-006", site, "noise", location="和睦新村", colour="red"),  # unknown field
        record("ZJ-001", site, "wage_arrears", employer="某建筑公司", months=3),  # repeated
    ]
    async with db.begin() as s:
        result = await exchange.import_cases(
            s,
            staff=await who(s, "supervisor01"),
            pii=pii,
            cases=batch,
            now=NOW,
            deadlines=DeadlineClock(),
        )
    assert (result.created, result.skipped) == (2, 1)
    by_no = {r.provincial_no: r for r in result.rejected}
    assert sorted(by_no) == ["ZJ-002", "ZJ-003", "ZJ-004", "ZJ-006"]
    missing = by_no["ZJ-002"]
    assert missing.index == 1 and missing.error == "invalid_input"
    assert missing.details == {"field": "estate", "reason_zh": "请填写“小区名称”"}
    assert by_no["ZJ-003"].details == {"field": "matter_type"}
    assert by_no["ZJ-004"].details["field"] == "months"
    assert by_no["ZJ-006"].details == {"fields": ["colour"]}

    # Nothing of a rejected record was written: two cases, two petitioners, two numbers.
    after = await counts(db)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (2, 2, 2)
    async with db() as s:
        rows = {
            r.attributes["provincial_no"]: r
            for r in await s.scalars(select(PetitionCase).where(PetitionCase.registered_at == NOW))
            if "provincial_no" in r.attributes
        }
    assert sorted(rows) == ["ZJ-001", "ZJ-005"]
    wage = rows["ZJ-001"]
    assert wage.attributes == {
        "employer": "某建筑公司",
        "months": 3,
        "workers": 12,
        "provincial_no": "ZJ-001",
    }
    assert wage.matter_type == "wage_arrears" and wage.category == "appeal"
    assert wage.lead_dept_id is not None  # the matter type's default department
    # Gap-free numbers although records in between were rejected.
    assert rows["ZJ-005"].seq == wage.seq + 1


async def test_atomic_import_writes_nothing_when_a_record_is_rejected(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        site = await centre_id(s)
    before = await counts(db)
    batch = [
        record("ZJ-101", site, "social_insurance", employer="某公司"),
        record("ZJ-102", site, "social_insurance"),
    ]
    with pytest.raises(exchange.ImportRejected) as err:
        async with db.begin() as s:
            await exchange.import_cases(
                s,
                staff=await who(s, "supervisor01"),
                pii=pii,
                cases=batch,
                now=NOW,
                deadlines=DeadlineClock(),
                atomic=True,
            )
    [rejection] = err.value.details["rejected"]
    assert rejection["provincial_no"] == "ZJ-102" and rejection["details"]["field"] == "employer"
    assert await counts(db) == before
    async with db.begin() as s:  # fixed, the same batch goes through
        result = await exchange.import_cases(
            s,
            staff=await who(s, "supervisor01"),
            pii=pii,
            cases=[batch[0], record("ZJ-102", site, "social_insurance", employer="某厂")],
            now=NOW,
            deadlines=DeadlineClock(),
            atomic=True,
        )
    assert (result.created, result.rejected) == (2, [])


async def test_export_carries_the_required_fields_and_imports_back(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        site = await centre_id(s)
    async with db.begin() as s:
        supervisor = await who(s, "supervisor01")
        with pytest.raises(PermissionDenied):
            await exchange.import_cases(
                s,
                staff=await who(s, "window01"),
                pii=pii,
                cases=[],
                now=NOW,
                deadlines=DeadlineClock(),
            )
        await exchange.import_cases(
            s,
            staff=supervisor,
            pii=pii,
            cases=[record("ZJ-201", site, "demolition", project="运河新城")],
            now=NOW,
            deadlines=DeadlineClock(),
        )
    async with db.begin() as s:
        out = await exchange.export_cases(
            s, staff=supervisor, since=NOW, until=NOW + timedelta(seconds=1), now=NOW
        )
    [case] = [c for c in out.cases if c.provincial_no == "ZJ-201"]
    assert case.attributes == {"project": "运河新城"} and case.matter_type == "demolition"
    # Another deployment takes the exported record in, required field and all.
    again = exchange.ImportCase(
        provincial_no=case.case_no,
        site_id=site,
        summary=case.summary,
        matter_type=case.matter_type,
        attributes=case.attributes,
    )
    async with db.begin() as s:
        result = await exchange.import_cases(
            s, staff=supervisor, pii=pii, cases=[again], now=NOW, deadlines=DeadlineClock()
        )
    assert (result.created, result.rejected) == (1, [])


async def test_import_api_reports_per_record(app_client: TestClient[Any, Any]) -> None:
    token = await signed_in(app_client, "centre_supervisor")
    me = await (await app_client.get("/api/me")).json()
    good = {
        "provincial_no": "ZJ-301",
        "site_id": me["site_id"],
        "summary": "拖欠工资两个月",
        "matter_type": "wage_arrears",
        "attributes": {"employer": "某餐饮公司", "months": 2},
    }
    bad = {**good, "provincial_no": "ZJ-302", "attributes": {"employer": "某餐饮公司"}}
    resp = await app_client.post(
        "/api/cases/import?atomic=true", json={"cases": [good, bad]}, headers={csrf.HEADER: token}
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "import_rejected" and body["message_zh"]
    [rejection] = body["details"]["rejected"]
    assert rejection["index"] == 1 and rejection["details"]["reason_zh"] == "请填写“拖欠月数”"
    resp = await app_client.post(
        "/api/cases/import", json={"cases": [good, bad]}, headers={csrf.HEADER: token}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["created"] == 1 and [r["provincial_no"] for r in body["rejected"]] == ["ZJ-302"]
    listing = await (await app_client.get("/api/cases", params={"q": "拖欠工资两个月"})).json()
    assert len(listing["items"]) == 1
