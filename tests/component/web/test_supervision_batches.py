"""集中交办 and 红牌 (issue #15 item 5): a supervisor assigns a batch of cases to a leader (bad
input said in Chinese; 403 for roles not allowed), the leader sees it on the home page and may
open the cases, the timeline and audit log record it, the leader is told; red cards are listed
and lower the department's 双考 score; the dashboard's date range, drill-down and empty state."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.audit.models import AuditEntry
from server.cases.evaluation import assessment_score
from server.cases.models import CaseDeadline, CaseEvent, CaseNotification, SupervisionBatch
from server.kernel import clock
from server.kernel.db import make_engine, make_sessionmaker, utcnow
from server.org.models import Staff
from tests.component.web.test_case_workbench import as_user, dept_id, register, text_of
from tests.conftest import make_settings

Client = TestClient[Any, Any]


@pytest.fixture
async def db(demo_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(demo_db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def client(tmp_path: Path, demo_db_url: str) -> AsyncIterator[Client]:
    app = create_app(make_settings(tmp_path, demo_db_url))
    async with TestClient(TestServer(app)) as c:
        yield c


async def staff_id(db: async_sessionmaker[AsyncSession], username: str) -> int:
    async with db.begin() as s:
        sid = await s.scalar(select(Staff.id).where(Staff.username == username))
    assert sid is not None
    return sid


def tomorrow() -> str:
    return (clock.local_date(utcnow()) + timedelta(days=3)).isoformat()


def field_error(html: str, name: str) -> str:
    m = re.search(rf'id="b-{name}-err">([^<]*)<', html) or re.search(
        rf'id="r-{name}-err">([^<]*)<', html
    )
    assert m, f"no error next to {name}"
    return m.group(1)


async def post_batch(client: Client, token: str, **fields: Any) -> Any:
    data: list[tuple[str, str]] = [("_csrf", token)]
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            data.append((k, str(item)))
    return await client.post("/cases/batches", data=data, allow_redirects=False)


async def test_a_batch_goes_to_the_leader_who_sees_it_at_home_and_opens_its_cases(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    a, b = await register(client), await register(client)
    leader = await staff_id(db, "dleader01")
    async with db.begin() as s:  # the leader has a phone: they are told by SMS
        row = await s.get(Staff, leader)
        assert row is not None
        row.phone = "13800000001"
    token = await as_user(client, "supervisor01")
    board = await (await client.get(f"/cases/batches?case={a}&case={b}")).text()
    assert f'name="case_ids" value="{a}" checked' in board
    resp = await post_batch(
        client,
        token,
        title="十二月突出问题集中交办",
        leader_id=leader,
        due_date=tomorrow(),
        case_ids=[a, b],
    )
    assert resp.status == 303, await resp.text()
    listing = text_of(await (await client.get("/cases/batches")).text())
    assert "十二月突出问题集中交办" in listing and "已办结 0 / 2 件" in listing
    async with db.begin() as s:
        batch = await s.scalar(select(SupervisionBatch).order_by(SupervisionBatch.id.desc()))
        assert batch is not None and batch.leader_id == leader
        events = (
            await s.scalars(select(CaseEvent).where(CaseEvent.type == "batch_assigned"))
        ).all()
        assert {e.case_id for e in events} >= {a, b}
        audit = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "case.batch_assign", AuditEntry.object_id == str(batch.id)
            )
        )
        assert audit is not None
        sms = await s.scalar(
            select(CaseNotification).where(CaseNotification.dedupe_key == f"batch:{batch.id}")
        )
        assert sms is not None and sms.to == "13800000001"
    await as_user(client, "dleader01")
    home = await (await client.get("/")).text()
    section = home[home.index('id="home-batches"') :]
    assert "十二月突出问题集中交办" in section and f'href="/cases/{a}"' in section
    assert (await client.get(f"/cases/{a}")).status == 200


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"due_date": "2020-01-01"}, "due_date", "办结期限必须晚于当前时间"),
        ({"leader_id": 999999}, "leader_id", "责任领导不存在或不具有部门领导、督办领导角色"),
        ({"leader": "handler05"}, "leader_id", "责任领导不存在或不具有部门领导、督办领导角色"),
        ({"case_ids": []}, "case_ids", "请至少选择一件信访事项"),
        ({"title": ""}, "title", "请填写交办批次名称"),
    ],
)
async def test_bad_batch_input_is_said_in_chinese_and_nothing_is_assigned(
    client: Client,
    db: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    case_id = await register(client)
    fields: dict[str, Any] = {
        "title": "集中交办",
        "leader_id": await staff_id(db, "leader05"),
        "due_date": tomorrow(),
        "case_ids": [case_id],
    }
    for k, v in change.items():
        if k == "leader":
            fields["leader_id"] = await staff_id(db, v)
        else:
            fields[k] = v
    token = await as_user(client, "supervisor01")
    resp = await post_batch(client, token, **fields)
    html = await resp.text()
    assert resp.status == 400
    assert text_of(field_error(html, field)) == message
    if fields["title"]:
        assert f'value="{fields["title"]}"' in html  # typed values kept
    async with db.begin() as s:
        assert await s.scalar(select(SupervisionBatch.id)) is None


async def test_roles_not_allowed_get_403(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "handler05")
    resp = await post_batch(
        client,
        token,
        title="x",
        leader_id=await staff_id(db, "leader05"),
        due_date=tomorrow(),
        case_ids=[case_id],
    )
    assert resp.status == 403
    resp = await client.post(
        "/cases/red-cards",
        data={"_csrf": token, "department_id": "1", "reason": "推诿扯皮"},
        allow_redirects=False,
    )
    assert resp.status == 403
    token = await as_user(client, "dleader01")  # may read 双考 but not issue red cards
    assert (await client.get("/cases/red-cards")).status == 200
    resp = await client.post(
        "/cases/red-cards",
        data={"_csrf": token, "department_id": "1", "reason": "推诿扯皮"},
        allow_redirects=False,
    )
    assert resp.status == 403


async def test_a_red_card_is_listed_and_lowers_the_departments_score(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    dept = await dept_id(db, "civil")
    token = await as_user(client, "supervisor01")
    bad = await client.post(
        "/cases/red-cards", data={"_csrf": token, "department_id": "", "reason": ""}
    )
    assert bad.status == 400
    assert text_of(field_error(await bad.text(), "reason")) == "请填写红牌理由（至少2个字）"
    resp = await client.post(
        "/cases/red-cards",
        data={
            "_csrf": token,
            "department_id": str(dept),
            "reason": "对交办事项推诿扯皮",
            "case_id": str(case_id),
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    cards = text_of(await (await client.get("/cases/red-cards")).text())
    assert "对交办事项推诿扯皮" in cards
    html = await (await client.get("/cases/dashboard")).text()
    row = html[html.index(f'data-key="{dept}"') :]
    row = row[: row.index("</tr>")]
    assert 'data-label="红牌"><a href="/cases/red-cards">1</a>' in row
    assert text_of(row.split('class="score">')[1].split("<")[0]) == "90.0"
    async with db.begin() as s:
        assert await s.scalar(
            select(CaseEvent.id).where(CaseEvent.case_id == case_id, CaseEvent.type == "red_card")
        )


def test_the_score_rule() -> None:
    assert assessment_score(None, None, 0) is None
    assert assessment_score(1.0, 0.5, 0) == 75.0
    assert assessment_score(1.0, None, 2) == 80.0
    assert assessment_score(0.2, 0.2, 5) == 0.0


async def test_the_dashboard_range_drill_down_and_empty_state(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    async with db.begin() as s:  # the acceptance deadline was met late, yesterday
        dl = await s.scalar(select(CaseDeadline).where(CaseDeadline.case_id == case_id))
        assert dl is not None
        dl.status, dl.due_at, dl.met_at = "met", utcnow() - timedelta(days=1), utcnow()
    await as_user(client, "supervisor01")
    empty = await (await client.get("/cases/dashboard?from=2001-01-01&to=2001-01-31")).text()
    assert "没有评价、办结或红牌记录" in text_of(empty) and "<svg" not in empty
    bad = await client.get("/cases/dashboard?from=2026-02-30")
    assert bad.status == 400 and "请按“年-月-日”填写开始日期" in await bad.text()
    html = await (await client.get("/cases/dashboard")).text()
    link = re.search(r'href="([^"]+)" data-drill="overdue"', html)
    assert link, "no drill-down link for the overdue figure"
    listing = await (await client.get(link.group(1).replace("&amp;", "&"))).text()
    assert f'href="/cases/{case_id}"' in listing
    assert "仅显示双评双考统计中该项数字对应的事项" in text_of(listing)
    other = await (
        await client.get(
            link.group(1).replace("&amp;", "&").replace("assess=overdue", "assess=on_time")
        )
    ).text()
    assert f'href="/cases/{case_id}"' not in other
