"""Collective visits (集体访): intake, read back, encryption at rest, key rotation and the
provincial exchange, on SQLite and PostgreSQL; the API and the case page on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import csrf
from server.cases import exchange, intake, queries
from server.cases.deadline_clock import DeadlineClock
from server.cases.models import CaseCounter, CaseRepresentative, PetitionCase
from server.cases.schemas import IntakeRequest
from server.cases.validation import TooManyRepresentatives
from server.kernel.crypto import PiiCipher
from server.pii_rotation import rotate
from tests.conftest import make_settings, signed_in

from .conftest import NOW, centre_id, who

ID = "11010519491231002X"
GROUP = [
    {"name": "赵一", "phone": "13900001111", "id_number": ID},
    {"name": "钱二", "phone": "13900002222"},
]


async def window_intake(
    session: AsyncSession, pii: PiiCipher, *, max_representatives: int = 5, **fields: Any
) -> int:
    request = IntakeRequest.model_validate(
        {
            "channel": "window",
            "site_id": await centre_id(session),
            "summary": "和睦新村三十户居民集体反映电梯停运",
            **fields,
        }
    )
    result = await intake.intake(
        session,
        pii=pii,
        staff=await who(session, "window01"),
        request=request,
        now=NOW,
        deadlines=DeadlineClock(),
        max_representatives=max_representatives,
    )
    return result.case.id


async def counts(db: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    async with db() as s:
        cases = await s.scalar(select(func.count()).select_from(PetitionCase))
        reps = await s.scalar(select(func.count()).select_from(CaseRepresentative))
        seq = await s.scalar(select(func.coalesce(func.sum(CaseCounter.last_seq), 0)))
    return int(cases or 0), int(reps or 0), int(seq or 0)


async def test_intake_reads_back_and_keeps_representatives_encrypted(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db.begin() as s:
        case_id = await window_intake(s, pii, collective=True, headcount=30, representatives=GROUP)
    async with db.begin() as s:
        detail = await queries.case_detail(
            s, staff=await who(s, "window01"), case_id=case_id, pii=pii
        )
        without_pii = await queries.case_detail(s, staff=await who(s, "window01"), case_id=case_id)
    assert detail.collective and detail.headcount == 30
    assert [r.model_dump() for r in detail.representatives or []] == [
        {"name": "赵一", "phone": "13900001111", "id_number": ID},
        {"name": "钱二", "phone": "13900002222", "id_number": None},
    ]
    assert without_pii.headcount == 30 and without_pii.representatives is None

    # At rest: ciphertext under the deployment key, keyed hashes for lookup, no plaintext.
    async with db() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT name_enc, phone_enc, phone_hash, id_number_enc, id_number_hash,"
                    " key_id FROM case_representative WHERE case_id = :id ORDER BY position"
                ),
                {"id": case_id},
            )
        ).all()
    assert len(rows) == 2
    for row, plain in zip(rows, GROUP, strict=True):
        stored = " ".join(str(v) for v in row)
        for value in plain.values():
            assert value not in stored
        assert row.name_enc.startswith(f"v1:{pii.key_id}:") and row.key_id == pii.key_id
        assert pii.decrypt(row.phone_enc) == plain["phone"]
        assert row.phone_hash == pii.lookup_hash(plain["phone"])
    assert rows[0].id_number_hash == pii.lookup_hash(ID)
    assert rows[1].id_number_enc is None and rows[1].id_number_hash is None
    # A lookup by phone finds the case without decrypting anything.
    async with db() as s:
        found = await s.scalar(
            select(CaseRepresentative.case_id).where(
                CaseRepresentative.phone_hash == pii.lookup_hash("139 0000 2222")
            )
        )
    assert found == case_id


async def test_the_deployment_limit_is_enforced_by_the_service_and_nothing_is_written(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    before = await counts(db)
    three = [*GROUP, {"name": "孙三", "phone": "13900003333"}]
    with pytest.raises(TooManyRepresentatives):
        async with db.begin() as s:
            await window_intake(
                s, pii, max_representatives=2, collective=True, headcount=30, representatives=three
            )
    assert await counts(db) == before  # no case, no representative, no case number
    async with db.begin() as s:
        await window_intake(s, pii, collective=True, headcount=30, representatives=three)
    assert await counts(db) == tuple(b + d for b, d in zip(before, (1, 3, 1), strict=True))


async def test_rotation_rewrites_representatives_and_their_lookup_hashes(
    db: async_sessionmaker[AsyncSession],
) -> None:
    old = PiiCipher(b"old-secret")
    async with db.begin() as s:
        case_id = await window_intake(s, old, collective=True, headcount=8, representatives=GROUP)
    new = PiiCipher(b"new-secret", old_secrets=(b"old-secret",))
    async with db.begin() as s:
        assert await rotate(s, pii=new) >= 2  # the representatives (and any petitioner)
    async with db.begin() as s:
        assert await rotate(s, pii=new) == 0
        rows = (
            await s.scalars(
                select(CaseRepresentative)
                .where(CaseRepresentative.case_id == case_id)
                .order_by(CaseRepresentative.position)
            )
        ).all()
    only_new = PiiCipher(b"new-secret")  # the old key can be dropped now
    assert [only_new.decrypt(r.name_enc) for r in rows] == ["赵一", "钱二"]
    assert only_new.decrypt(rows[0].id_number_enc or "") == ID
    assert rows[0].phone_hash == only_new.lookup_hash("13900001111")
    assert rows[0].id_number_hash == only_new.lookup_hash(ID)
    assert all(r.key_id == only_new.key_id for r in rows)
    async with db.begin() as s:
        detail = await queries.case_detail(
            s, staff=await who(s, "window01"), case_id=case_id, pii=only_new
        )
    assert [r.name for r in detail.representatives or []] == ["赵一", "钱二"]


def record(no: str, site: int, **fields: Any) -> exchange.ImportCase:
    return exchange.ImportCase.model_validate(
        {"provincial_no": no, "site_id": site, "summary": f"省平台交办群体诉求{no}", **fields}
    )


async def test_exchange_round_trip_validates_collective_records_one_by_one(
    db: async_sessionmaker[AsyncSession], pii: PiiCipher
) -> None:
    async with db() as s:
        site = await centre_id(s)
    six = [{"name": f"代表{i}", "phone": f"1370000000{i}"} for i in range(6)]
    batch = [
        record("JT-001", site, collective=True, headcount=120, representatives=GROUP),
        record("JT-002", site, collective=True, headcount=50),  # joint petition, no reps
        record("JT-003", site, collective=True, headcount=50, representatives=six),
        record("JT-004", site, representatives=GROUP[:1]),  # not collective
        record("JT-005", site, collective=True, headcount=1, representatives=GROUP),
        record("JT-006", site, collective=True, headcount=9, representatives=[GROUP[0], GROUP[0]]),
        record(
            "JT-007",
            site,
            collective=True,
            headcount=9,
            representatives=[{"name": "周", "phone": "110"}],
        ),
    ]
    before = await counts(db)
    async with db.begin() as s:
        result = await exchange.import_cases(
            s,
            staff=await who(s, "supervisor01"),
            pii=pii,
            cases=batch,
            now=NOW,
            deadlines=DeadlineClock(),
        )
    assert result.created == 2
    rejected = {r.provincial_no: (r.error, r.details.get("field")) for r in result.rejected}
    assert rejected == {
        "JT-003": ("too_many_representatives", "representatives"),
        "JT-004": ("not_collective", "representatives"),
        "JT-005": ("headcount_too_low", "headcount"),
        "JT-006": ("duplicate_representative", "representatives.1"),
        "JT-007": ("invalid_phone", "representatives.0.phone"),
    }
    assert all(r.message_zh for r in result.rejected)
    assert await counts(db) == tuple(b + d for b, d in zip(before, (2, 2, 2), strict=True))

    async with db.begin() as s:
        exported = await exchange.export_cases(
            s,
            staff=await who(s, "supervisor01"),
            since=NOW,
            until=NOW.replace(year=NOW.year + 1),
            now=NOW,
        )
    by_no = {c.provincial_no: c for c in exported.cases if c.provincial_no}
    assert (by_no["JT-001"].collective, by_no["JT-001"].headcount) == (True, 120)
    assert by_no["JT-001"].representative_count == 2
    assert (by_no["JT-002"].headcount, by_no["JT-002"].representative_count) == (50, 0)
    dumped = exported.model_dump_json()
    assert "赵一" not in dumped and "13900001111" not in dumped  # personal data stays out

    # The exported figures, with the representatives as the province holds them, import
    # again (as a new provincial number) to the same case file.
    again = by_no["JT-001"]
    async with db.begin() as s:
        result = await exchange.import_cases(
            s,
            staff=await who(s, "supervisor01"),
            pii=pii,
            cases=[
                record(
                    "JT-101",
                    site,
                    collective=again.collective,
                    headcount=again.headcount,
                    representatives=GROUP,
                )
            ],
            now=NOW,
            deadlines=DeadlineClock(),
        )
        assert result.created == 1
        new_id = await s.scalar(
            select(PetitionCase.id).where(
                PetitionCase.attributes["provincial_no"].as_string() == "JT-101"
            )
        )
        assert new_id is not None
        detail = await queries.case_detail(
            s, staff=await who(s, "supervisor01"), case_id=new_id, pii=pii
        )
    assert (detail.collective, detail.headcount) == (True, 120)
    assert [r.model_dump() for r in detail.representatives or []] == [
        {"name": "赵一", "phone": "13900001111", "id_number": ID},
        {"name": "钱二", "phone": "13900002222", "id_number": None},
    ]


async def post(client: TestClient[Any, Any], token: str, path: str, body: dict[str, Any]) -> Any:
    return await client.post(path, json=body, headers={csrf.HEADER: token})


async def test_api_intake_detail_and_case_page(tmp_path: Path, demo_sqlite_url: str) -> None:
    from server.app import create_app

    app = create_app(make_settings(tmp_path, demo_sqlite_url, collective_max_representatives=2))
    async with TestClient(TestServer(app)) as client:
        token = await signed_in(client, "window_officer")
        me = await (await client.get("/api/me")).json()
        body = {
            "channel": "window",
            "site_id": me["site_id"],
            "summary": "和睦新村三十户居民集体反映电梯停运",
            "collective": True,
            "headcount": 30,
        }
        three = [*GROUP, {"name": "孙三", "phone": "13900003333"}]
        too_many = await post(client, token, "/api/cases", {**body, "representatives": three})
        assert too_many.status == 422
        err = await too_many.json()
        assert err["error"] == "too_many_representatives"
        assert err["message_zh"] == "集体访推选的代表人数超过规定上限"
        assert err["details"]["reason_zh"] == "代表不得超过2人，当前3人"
        none = await post(client, token, "/api/cases", body)
        assert (await none.json())["error"] == "representatives_required"
        plain = await post(
            client,
            token,
            "/api/cases",
            {**body, "collective": False, "headcount": None, "representatives": GROUP},
        )
        assert (await plain.json())["error"] == "not_collective"

        resp = await post(client, token, "/api/cases", {**body, "representatives": GROUP})
        assert resp.status == 201, await resp.text()
        case_id = (await resp.json())["case"]["id"]
        detail = await (await client.get(f"/api/cases/{case_id}")).json()
        assert detail["collective"] is True and detail["headcount"] == 30
        assert detail["representatives"] == [
            {"name": "赵一", "phone": "13900001111", "id_number": ID},
            {"name": "钱二", "phone": "13900002222", "id_number": None},
        ]

        page = await (await client.get(f"/cases/{case_id}")).text()
        assert 'id="representatives"' in page and "来访（联名）人数：30人" in page
        assert "赵一" in page and "13900002222" in page
        assert "110105********002X" in page and ID not in page  # ID number masked on screen
        english = await (await client.get(f"/cases/{case_id}?lang=en")).text()
        assert "Collective visit" in english and "People who came (or signed): 30" in english

        # A case that is not collective shows no such section.
        other = await post(
            client, token, "/api/cases", {**body, "collective": False, "headcount": None}
        )
        other_id = (await other.json())["case"]["id"]
        assert 'id="collective"' not in await (await client.get(f"/cases/{other_id}")).text()
