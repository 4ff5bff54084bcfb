"""The case page links the written notices the case has (受理告知书, 不予受理告知书,
导入法定途径告知书, 书面答复意见书) as PDF downloads: for viewers who may see the case, each
download audited (`case.notice_download`); a notice the case's state has not produced yet,
or a case the viewer may not see, is a 404 (issue #15 item 3)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit.models import AuditEntry
from server.cases import pdf
from tests.component.web.test_case_workbench import act, as_user, client, db, register

__all__ = ["client", "db"]

Client = Any


@pytest.fixture(autouse=True)
def _font() -> None:
    try:
        pdf.cjk_font()
    except pdf.CjkFontMissing:
        pytest.skip("no CJK font installed")


async def downloads(db: async_sessionmaker[AsyncSession], case_id: int) -> int:
    async with db() as s:
        n = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == "case.notice_download", AuditEntry.object_id == str(case_id)
            )
        )
        return int(n or 0)


async def test_a_refusal_notice_is_linked_downloaded_and_audited(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert "/notices/" not in html  # no decision yet, no notice
    resp = await client.get(f"/cases/{case_id}/notices/refusal.pdf")
    assert resp.status == 404
    resp = await act(client, token, case_id, "not_accept", reason="不属于信访事项", confirm="yes")
    assert resp.status == 303
    html = await (await client.get(f"/cases/{case_id}")).text()
    assert f'href="/cases/{case_id}/notices/refusal.pdf"' in html and "下载不予受理告知书" in html
    assert "/notices/acceptance.pdf" not in html
    resp = await client.get(f"/cases/{case_id}/notices/refusal.pdf")
    assert resp.status == 200 and resp.content_type == "application/pdf"
    assert (await resp.read()).startswith(b"%PDF")
    assert await downloads(db, case_id) == 1
    # another window of the centre may see the case, so may print its notice
    await as_user(client, "window02")
    assert (await client.get(f"/cases/{case_id}/notices/refusal.pdf")).status == 200
    assert await downloads(db, case_id) == 2


async def test_a_viewer_who_may_not_see_the_case_gets_no_notice(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    case_id = await register(client)
    token = await as_user(client, "window01")
    resp = await act(
        client, token, case_id, "redirect_legal", legal_route="arbitration",
        reason="劳动争议应申请仲裁", confirm="yes",
    )  # fmt: skip
    assert resp.status == 303
    assert (await client.get(f"/cases/{case_id}/notices/legal_route.pdf")).status == 200
    await as_user(client, "handler02")  # a department with nothing to do with the case
    assert (await client.get(f"/cases/{case_id}/notices/legal_route.pdf")).status == 404
    assert (await client.get(f"/cases/{case_id}/notices/nonsense.pdf")).status == 404
    assert await downloads(db, case_id) == 1


async def test_the_reply_notice_names_the_leader_who_signed_it_and_masks_for_outsiders(
    client: Client, db: async_sessionmaker[AsyncSession]
) -> None:
    from server.cases import notices
    from server.http import keys
    from server.org.models import Staff
    from tests.component.cases.conftest import who
    from tests.component.web.test_case_sign_off import REPLY, handling_in_housing, sign

    case_id = await handling_in_housing(client, db)
    token = await as_user(client, "handler02")
    assert (await act(client, token, case_id, "reply", reply=REPLY)).status == 303
    await as_user(client, "leader02")
    assert (await sign(client, case_id)).status == 303
    pii = client.server.app[keys.pii]
    async with db() as s, s.begin():
        leader_name = await s.scalar(select(Staff.display_name).where(Staff.username == "leader02"))
        inside = await notices.notice_facts(
            s, staff=await who(s, "leader02"), case_id=case_id, kind="reply", pii=pii
        )
        outside = await notices.notice_facts(
            s, staff=await who(s, "window02"), case_id=case_id, kind="reply", pii=pii
        )
    assert inside.signer == leader_name and inside.text == REPLY
    assert inside.petitioner == "赵小梅" and outside.petitioner == "赵**"
    assert inside.unit == "区住建局" and inside.case_no.startswith("330105-")
    assert inside.district  # the district's name heads the notice
