"""#17 remaining item 2 (home part): the court liaison's home lists the agreements awaiting
司法确认 with their window end in Beijing time, the closed window flagged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.app import create_app
from server.cases.models import MediationAgreement
from server.kernel.db import make_engine, make_sessionmaker
from server.org.models import Staff
from tests.component.web.test_case_workbench import as_user, register, text_of
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


async def _agreement(
    db: async_sessionmaker[AsyncSession], case_id: int, effective_at: datetime
) -> int:
    async with db.begin() as s:
        mediator = await s.scalar(select(Staff.id).where(Staff.username == "mediator01"))
        assert mediator is not None
        a = MediationAgreement(
            case_id=case_id,
            mediator_id=mediator,
            parties=[{"name": "赵一", "role": "applicant"}, {"name": "钱二", "role": "respondent"}],
            facts="双方就赔偿达成一致。",
            terms=[{"term": "赔偿100元", "how": "现金", "by": "2026-04-01"}],
            status="effective",
            created_at=effective_at,
            effective_at=effective_at,
            judicial_due_at=effective_at + timedelta(days=30),
            performance_status="pending",
        )
        s.add(a)
        await s.flush()
        return a.id


async def test_court_liaison_home_lists_agreements_awaiting_judicial_confirmation(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    case_id = await register(client)
    # window ends 2 days ahead at 23:30 UTC = 07:30 Beijing time the next day
    fresh_at = (now + timedelta(days=2)).replace(hour=23, minute=30, second=0, microsecond=0)
    fresh = await _agreement(db, case_id, fresh_at - timedelta(days=30))
    late = await _agreement(db, case_id, now - timedelta(days=40))
    await as_user(client, "court01")
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert 'id="home-judicial"' in html
    section = html.split('id="home-judicial"', 1)[1].split("</section>", 1)[0]
    text = text_of(section)
    rows = {
        r.split('"', 1)[0]: r for r in section.split('data-agreement="')[1:]
    }  # agreement id → its item
    assert str(fresh) in rows and str(late) in rows
    # what the liaison needs to find the file: the case number and the parties
    assert "330105-" in rows[str(fresh)] and "申请人：" in rows[str(fresh)]
    assert "赵" in rows[str(fresh)] and "被申请人：" in rows[str(fresh)]
    assert "已超过三十日申请期限" in rows[str(late)]
    assert "已超过三十日申请期限" not in rows[str(fresh)]
    beijing_day = (fresh_at + timedelta(hours=8)).date().isoformat()
    assert beijing_day in rows[str(fresh)], text  # the last day to apply, in Beijing
    # a role with no part in 司法确认 sees no such list
    await as_user(client, "handler01")
    assert 'id="home-judicial"' not in await (await client.get("/")).text()


async def test_court_liaison_records_judicial_confirmation_from_home(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """The row's form: CSRF, the date validated with a zh-CN error, audited, then the agreement
    leaves the list; a late one is recorded and flagged as by the API."""
    from server.audit.models import AuditEntry
    from server.kernel import clock

    now = datetime.now(UTC)
    case_id = await register(client)
    late = await _agreement(db, case_id, now - timedelta(days=40))
    token = await as_user(client, "court01")
    url = f"/agreements/{late}/judicial"
    resp = await client.post(url, data={"requested_on": "2000-01-01"}, allow_redirects=False)
    assert resp.status == 403  # no CSRF token
    tomorrow = (clock.local_date(now) + timedelta(days=1)).isoformat()
    resp = await client.post(url, data={"_csrf": token, "requested_on": tomorrow})
    assert resp.status == 422
    assert "申请日期不能晚于今天" in await resp.text()
    resp = await client.post(url, data={"_csrf": token, "requested_on": "2000-01-01"})
    assert resp.status == 422
    assert "申请日期须在协议生效之日至今天之间" in await resp.text()
    today = clock.local_date(now).isoformat()
    resp = await client.post(url, data={"_csrf": token, "requested_on": today, "court": "法" * 101})
    assert resp.status == 422 and "受理法院名称过长" in await resp.text()
    resp = await client.post(
        url,
        data={"_csrf": token, "requested_on": today, "result": "confirmed",
              "court": " 杭州市拱墅区人民法院 ", "ruling_no": "(2026)浙0105民特123号"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303 and resp.headers["Location"] == f"/?judicial={late}"
    await as_user(client, "mediator01")  # the agreement's page shows what was recorded
    page = await (await client.get(f"/agreements/{late}")).text()
    assert "受理法院：杭州市拱墅区人民法院" in page and "文号：(2026)浙0105民特123号" in page
    home = await (await client.get(resp.headers["Location"])).text()
    assert f"已记录协议 {late} 的司法确认。" in home
    assert f"/agreements/{late}/judicial" not in home
    async with db() as s:
        entry = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "agreement.judicial", AuditEntry.object_id == str(late)
            )
        )
    assert entry is not None and entry.detail["late"] is True
    assert entry.detail["result"] == "confirmed"
    assert entry.detail["court"] == "杭州市拱墅区人民法院"
    assert entry.detail["ruling_no"] == "(2026)浙0105民特123号"


async def test_parties_with_a_sms_link_are_reminded_once_before_the_window_closes(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    """The phone a signing link went to is kept encrypted; a week before the 30-day window
    closes each such party gets one reminder (Beijing dates), never twice, none after a
    confirmation is recorded or once the window has closed."""
    from server.audit.models import AuditEntry
    from server.cases.agreements import send_judicial_reminders
    from server.cases.models import CaseNotification
    from server.http import keys

    now = datetime.now(UTC)
    case_id = await register(client)
    soon = await _agreement(db, case_id, now - timedelta(days=25))  # closes in 5 days
    later = await _agreement(db, case_id, now - timedelta(days=10))  # closes in 20 days
    closed = await _agreement(db, case_id, now - timedelta(days=31))
    pii = client.app[keys.pii]
    async with db.begin() as s:
        for aid in (soon, later, closed):
            a = await s.get(MediationAgreement, aid)
            assert a is not None
            a.party_phones_enc = {"0": pii.encrypt("13912345678")}
    async with db() as s:
        raw = await s.scalar(
            select(MediationAgreement.party_phones_enc).where(MediationAgreement.id == soon)
        )
    assert raw is not None and "13912345678" not in str(raw)  # encrypted at rest

    for _ in range(2):
        async with db.begin() as s:
            await send_judicial_reminders(s, pii=pii, now=now, days=7, tz="Asia/Shanghai")
    async with db() as s:
        texts = list(
            await s.scalars(
                select(CaseNotification.body).where(
                    CaseNotification.dedupe_key.like("judicial_reminder:%")
                )
            )
        )
        audits = list(
            await s.scalars(
                select(AuditEntry).where(AuditEntry.action == "agreement.judicial_reminder")
            )
        )
    assert len(texts) == 1 and f"协议编号{soon}" in texts[0] and "赵*" in texts[0]
    assert "（北京时间）" in texts[0] and "13912345678" not in texts[0]
    assert [a.object_id for a in audits] == [str(soon)]
    async with db.begin() as s:
        assert await send_judicial_reminders(s, pii=pii, now=now, days=0, tz="Asia/Shanghai") == 0
