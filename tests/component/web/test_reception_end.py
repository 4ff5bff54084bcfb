"""A reception ends well (issue #16 item 6): when the desk ends it, the community point's page
shows the resident's case number, the next step and the follow link, with no room controls;
the petitioner gets the same by SMS once; the case timeline says so."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.cases.models import CaseEvent, CaseNotification, PetitionCase
from server.http import keys
from tests.conftest import DEMO_USERS, sign_in, signed_in

Client = Any


async def _reception_ended(client: Client, outcome: str) -> tuple[int, str]:
    """(entry id, case number) of a call placed, accepted and ended with `outcome`."""
    token = await signed_in(client, "community_agent")
    resp = await client.post(
        "/call",
        data={"_csrf": token, "matter_code": "wage_arrears", "resident_name": "王五",
              "resident_phone": "13912345678"},
        allow_redirects=False,
    )  # fmt: skip
    entry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    await client.post("/logout", data={"_csrf": token})
    token = await sign_in(client, DEMO_USERS["window_officer"])
    ok = await client.post(
        f"/desk/calls/{entry_id}/accept", data={"_csrf": token}, allow_redirects=False
    )
    assert ok.status == 303
    async with client.app[keys.db]() as s:
        case_no = str(await s.scalar(select(PetitionCase.case_no).order_by(PetitionCase.id.desc())))
    ended = await client.post(
        f"/desk/calls/{entry_id}/end",
        data={"_csrf": token, "outcome": outcome},
        allow_redirects=False,
    )
    assert ended.status == 303
    await client.post("/logout", data={"_csrf": token})
    return entry_id, case_no


async def test_the_agents_page_shows_the_case_number_and_the_sms_says_the_same(
    app_client: Client,
) -> None:
    entry_id, case_no = await _reception_ended(app_client, "joint")
    await signed_in(app_client, "community_agent")
    html = await (await app_client.get(f"/call/{entry_id}")).text()
    assert 'id="call-receipt"' in html and case_no in html
    assert "转入联合调处" in html  # the next step for this outcome
    assert 'id="room"' not in html and "cancel-form" not in html  # no controls left
    assert "/follow/" in html
    async with app_client.app[keys.db]() as s:
        sms = list(
            await s.scalars(
                select(CaseNotification).where(CaseNotification.dedupe_key.like("reception:%"))
            )
        )
        events = list(
            await s.scalars(select(CaseEvent).where(CaseEvent.type == "reception_receipt_sent"))
        )
    pii = app_client.app[keys.pii]  # a resident's number is kept encrypted (#17 finding 13)
    assert [(pii.decrypt(m.to), m.channel) for m in sms] == [("13912345678", "sms")]
    assert all("13912345678" not in m.to for m in sms)
    assert case_no in sms[0].body and "转入联合调处" in sms[0].body and "/follow/" in sms[0].body
    assert [e.payload for e in events] == [{"outcome": "joint", "sms": True}]
