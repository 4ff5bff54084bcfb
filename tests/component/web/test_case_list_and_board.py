"""The office's work lists (issue #15, items 1, 5 and 7): the home page's "my work now" with
counts on the tiles, per role; the case list's filters, pages, deadline column, bad filter
values (a message in Chinese, not a 500) and the CSV export (same visibility, audited); the
supervision board of overdue and warned cases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.audit.models import AuditEntry
from server.kernel.db import make_engine, make_sessionmaker
from tests.component.web.test_case_workbench import WALK_IN, as_user, dept_id, register, text_of
from tests.component.web.test_supervision import make_overdue
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


async def register_many(client: Client, n: int) -> list[int]:
    token = await as_user(client, "window01")
    ids = []
    for i in range(n):
        resp = await client.post(
            "/cases/new",
            data={"_csrf": token, **WALK_IN, "summary": f"第{i + 1}号诉求：养老院收费不透明"},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        ids.append(int(re.findall(r"/cases/(\d+)", resp.headers["Location"])[0]))
    return ids


def tile(html: str, url: str) -> str:
    match = re.search(rf'<a class="menu-tile" href="{re.escape(url)}"[^>]*>.*?</a>', html)
    assert match, url
    return match.group(0)


def tile_words(html: str, url: str) -> str:
    """The tile's accessible text, spaces dropped ("我的信访事项1件待办")."""
    return "".join(text_of(tile(html, url)).split())


# --- home: my work now ------------------------------------------------------------------------


async def test_home_counts_the_cases_waiting_for_each_role(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)  # 养老服务, led by 区民政局 (handler05)
    await as_user(client, "handler05")
    html = await (await client.get("/")).text()
    assert tile_words(html, "/cases") == "我的信访事项1件待办"
    waiting = html[html.index('id="waiting-list"') :]
    assert f'href="/cases/{case_id}"' in waiting[: waiting.index("</ul>")]
    assert 'data-colour="green"' in waiting  # the acceptance clock runs
    assert "没有逾期的信访事项" in text_of(html)

    await as_user(client, "handler02")  # another unit: nothing waits, said in words
    html = await (await client.get("/")).text()
    assert "目前没有等待您办理的信访事项" in text_of(html)
    assert tile_words(html, "/cases") == "我的信访事项"

    await make_overdue(db, case_id)
    await as_user(client, "handler05")
    html = await (await client.get("/")).text()
    overdue = html[html.index('id="overdue-list"') :]
    assert f'href="/cases/{case_id}"' in overdue[: overdue.index("</ul>")]
    assert 'data-colour="red"' in overdue and "已超期" in text_of(overdue)

    await as_user(client, "dleader01")  # the 督办领导, told at level 2
    html = await (await client.get("/")).text()
    escalated = html[html.index('id="escalated-list"') :]
    assert f'href="/cases/{case_id}"' in escalated[: escalated.index("</ul>")]
    assert tile_words(html, "/cases/board") == "逾期预警督办台1件待办"


async def test_a_supervision_order_shows_on_the_units_home_and_the_verdict_on_the_supervisors(
    client: Client,
) -> None:
    case_id = await register(client)
    token = await as_user(client, "supervisor01")
    await client.post(
        f"/cases/{case_id}/actions/supervise",
        data={"_csrf": token, "type": "supervision", "note": "请报告进展", "due_days": "7"},
    )
    await as_user(client, "leader05")
    html = await (await client.get("/")).text()
    assert 'id="home-supervisions"' in html and f'href="/cases/{case_id}"' in html
    token = await as_user(client, "handler05")
    await client.post(
        f"/cases/{case_id}/actions/respond_supervision",
        data={"_csrf": token, "response": "已公示收费明细"},
    )
    await as_user(client, "supervisor01")
    html = await (await client.get("/")).text()
    assert tile_words(html, "/cases") == "我的信访事项1件待办"  # the verdict waits


# --- the case list ----------------------------------------------------------------------------


async def test_the_list_pages_by_twenty_and_filters(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    ids = await register_many(client, 22)
    html = await (await client.get("/cases")).text()
    assert "共 22 件" in text_of(html) and "第 1 / 2 页" in text_of(html)
    assert html.count('<tr><td data-label="事项编号">') == 20
    assert f'href="/cases/{ids[-1]}"' in html and f'href="/cases/{ids[0]}"' not in html
    assert 'rel="next"' in html and 'aria-current="page"' in html
    page2 = await (await client.get("/cases?page=2")).text()
    assert page2.count('<tr><td data-label="事项编号">') == 2
    assert f'href="/cases/{ids[0]}"' in page2
    # filters: search, channel, state, department, deadline status, date range
    one = await (await client.get("/cases", params={"q": "第7号"})).text()
    assert "共 1 件" in text_of(one) and f'href="/cases/{ids[6]}"' in one
    assert "共 0 件" in text_of(await (await client.get("/cases?channel=letter")).text())
    assert "共 22 件" in text_of(await (await client.get("/cases?channel=window")).text())
    civil = await dept_id(db, "civil")
    housing = await dept_id(db, "housing")
    assert "共 22 件" in text_of(await (await client.get(f"/cases?department_id={civil}")).text())
    assert "共 0 件" in text_of(await (await client.get(f"/cases?department_id={housing}")).text())
    assert "共 0 件" in text_of(await (await client.get("/cases?date_to=2020-01-01")).text())
    assert "共 22 件" in text_of(await (await client.get("/cases?date_from=2020-01-01")).text())
    await make_overdue(db, ids[3])
    overdue = await (await client.get("/cases?deadline=overdue")).text()
    assert "共 1 件" in text_of(overdue) and 'data-colour="red"' in overdue
    assert "共 21 件" in text_of(await (await client.get("/cases?deadline=green")).text())
    # a filtered page's links keep the filters
    filtered = await (await client.get("/cases?channel=window&page=1")).text()
    assert "/cases?channel=window&amp;page=2" in filtered


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("state=nonsense", "state", "请选择有效的办理状态"),
        ("date_from=2026-13-45", "date_from", "请按“年-月-日”填写登记日期"),
        ("deadline=purple", "deadline", "请选择有效的期限状态"),
        ("department_id=abc", "department_id", "请选择有效的承办单位"),
        ("page=0", "page", "页码无效"),
        ("date_from=2026-12-02&date_to=2026-12-01", "date_to", "结束日期不能早于开始日期"),
    ],
)
async def test_a_bad_filter_value_is_said_in_chinese_next_to_its_field(
    client: Client, query: str, field: str, message: str
) -> None:
    await register(client)
    resp = await client.get(f"/cases?{query}")
    html = await resp.text()
    assert resp.status == 400
    assert "筛选条件有误" in text_of(html) and message in text_of(html)
    if field != "page":  # the page number is no field of the form
        assert f'id="f-{field}-err">{message}<' in html and 'aria-invalid="true"' in html


async def test_the_export_is_for_the_centre_applies_visibility_and_is_audited(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    open_case = await register(client)
    urban = await dept_id(db, "urban")
    await register(
        client,
        matter_type="official_misconduct",
        summary="举报某执法人员收受好处",
        accused_department=str(urban),
        **{"attr-official_misconduct-accused": "区城管局某中队"},
    )
    assert (await client.get("/cases/export.csv")).status == 403  # a window officer
    html = await (await client.get("/cases")).text()
    assert 'id="export"' not in html
    await as_user(client, "supervisor01")
    assert 'id="export"' in await (await client.get("/cases")).text()
    resp = await client.get("/cases/export.csv?channel=window")
    assert resp.status == 200 and resp.content_type == "text/csv"
    body = (await resp.read()).decode("utf-8")
    assert body.startswith("\ufeff事项编号,状态")
    lines = body.strip().splitlines()
    assert len(lines) == 3
    assert "养老院收费不透明" in body and "区民政局" in body
    assert "收受好处" not in body and "（检举控告件，内容保密）" in body
    async with db() as s:
        audited = await s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "case.export")
        )
    assert audited == 1
    assert open_case


# --- the supervision board --------------------------------------------------------------------


async def test_the_board_lists_overdue_cases_with_filters(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    late, on_time = await register(client), await register(client)
    await make_overdue(db, late)
    await as_user(client, "handler05")
    assert (await client.get("/cases/board")).status == 403
    await as_user(client, "supervisor01")
    html = await (await client.get("/cases/board")).text()
    assert f'data-case="{late}"' in html and f'data-case="{on_time}"' not in html
    row = html[html.index(f'data-case="{late}"') :]
    row = row[: row.index("</tr>")]
    assert f'href="/cases/{late}"' in row and 'data-colour="red"' in row
    assert "第3级" in text_of(row) and "区民政局" in text_of(row)
    assert f'href="/cases/{late}?open=supervise#action-supervise"' in row
    assert f'data-case="{late}"' not in await (await client.get("/cases/board?level=yellow")).text()
    assert f'data-case="{late}"' in await (await client.get("/cases/board?level=overdue")).text()
    housing = await dept_id(db, "housing")
    other = await (await client.get(f"/cases/board?department_id={housing}")).text()
    assert f'data-case="{late}"' not in other and "没有符合筛选条件" in text_of(other)
    bad = await client.get("/cases/board?level=purple")
    assert bad.status == 400 and "请选择有效的预警级别" in await bad.text()
