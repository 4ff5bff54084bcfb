"""A community agent's 代办 in the browser (issue #15 item 4): the intake form offers the agent
only the agent channel and needs the resident's consent (refused at its field, typed values
kept); the case is registered with the agent recorded but no first receiver, so the street
coordinator claims it (认领); the agent keeps sight of it. A window officer is not offered the
agent channel."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.auth import csrf
from server.cases.models import PetitionCase
from server.http import keys
from server.org.models import Staff
from tests.conftest import signed_in

Client = TestClient[Any, Any]
FORM = {
    "name": "孙八",
    "phone": "13812345671",
    "matter_type": "noise",
    "attr-noise-location": "本社区3幢楼下",
    "summary": "楼下饭店油烟和夜间噪声影响居民休息",
}


async def _register(client: Client, token: str, **extra: str) -> Any:
    return await client.post(
        "/cases/new", data={"_csrf": token, **FORM, **extra}, allow_redirects=False
    )


async def _staff_id(client: Client, username: str) -> int:
    async with client.app[keys.db]() as s:
        found = await s.scalar(select(Staff.id).where(Staff.username == username))
    assert found is not None
    return int(found)


async def test_an_agent_registers_with_consent_and_the_coordinator_claims_it(
    app_client: Client,
) -> None:
    token = await signed_in(app_client, "community_agent")
    form = await (await app_client.get("/cases/new")).text()
    assert 'value="agent"' in form and 'value="window"' not in form
    refused = await _register(app_client, token, channel="agent")
    html = await refused.text()
    assert refused.status == 422 and 'id="err-on_behalf_consent"' in html and 'value="孙八"' in html
    window = await _register(app_client, token, channel="window", on_behalf_consent="on")
    assert window.status == 422  # an agent registers as an agent
    done = await _register(app_client, token, channel="agent", on_behalf_consent="on")
    assert done.status == 303, await done.text()
    case_id = int(done.headers["Location"].split("/")[2].split("?")[0])
    agent = await _staff_id(app_client, "agent001")
    async with app_client.app[keys.db]() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None
        assert (row.channel.value, row.agent_id, row.first_receiver_id) == ("agent", agent, None)
    page = await app_client.get(f"/cases/{case_id}")
    html = await page.text()
    assert page.status == 200 and "待认领" in html and 'id="action-claim"' not in html
    own = await app_client.post(
        f"/api/cases/{case_id}/claim", json={}, headers={csrf.HEADER: token}
    )
    assert own.status == 403  # the agent does not claim their own registration

    token = await signed_in(app_client, "street_coordinator")
    home = await (await app_client.get("/")).text()
    assert f'href="/cases/{case_id}"' in home
    claimed = await app_client.post(
        f"/api/cases/{case_id}/claim", json={}, headers={csrf.HEADER: token}
    )
    assert claimed.status == 200, await claimed.text()
    coordinator = await _staff_id(app_client, "coord01")
    async with app_client.app[keys.db]() as s:
        row = await s.get(PetitionCase, case_id)
        assert row is not None and (row.first_receiver_id, row.agent_id) == (coordinator, agent)

    await signed_in(app_client, "community_agent")
    assert (await app_client.get(f"/cases/{case_id}")).status == 200


async def test_a_window_officer_is_not_offered_the_agent_channel(app_client: Client) -> None:
    token = await signed_in(app_client, "window_officer")
    form = await (await app_client.get("/cases/new")).text()
    assert 'value="window"' in form and 'value="agent"' not in form
    resp = await _register(app_client, token, channel="agent", on_behalf_consent="on")
    assert resp.status == 422
