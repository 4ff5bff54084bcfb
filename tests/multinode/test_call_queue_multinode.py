"""The reception queue across two nodes on one Redis: a call placed through node A (community
point, /call) reaches the desk served by node B, is accepted there, and leaves every desk; two
officers on two nodes accepting one call: one wins, the other gets `call_taken`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.component.signaling.harness import Participant
from tests.multinode.nodes import two_nodes

pytestmark = pytest.mark.multinode


@pytest.fixture
async def nodes(
    tmp_path: Path, demo_sqlite_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with two_nodes(
        tmp_path, demo_sqlite_url, redis_url, prefix=redis_prefix, login_rate_per_min=10_000
    ) as servers:
        yield servers


@pytest.fixture
async def people() -> AsyncIterator[list[Participant]]:
    made: list[Participant] = []
    yield made
    for p in made:
        await p.close()


async def _person(made: list[Participant], server: TestServer, username: str) -> Participant:
    p = await Participant.create(server, username)
    await p.sign_in(username)
    made.append(p)
    return p


async def _post(p: Participant, path: str, data: dict[str, str]) -> tuple[int, str, str]:
    """A form post as the browser sends it (asking for JSON errors): status, Location, body."""
    async with p.session.post(
        p.base + path,
        data={"_csrf": p.csrf or "", **data},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    ) as resp:
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def _get(p: Participant, path: str) -> tuple[int, str]:
    async with p.session.get(p.base + path) as resp:
        return resp.status, await resp.text()


async def _place_call(agent: Participant) -> int:
    status, location, body = await _post(
        agent,
        "/call",
        {"matter_code": "wage_arrears", "resident_name": "王五", "resident_phone": "13912345678"},
    )
    assert status == 303, body
    return int(location.rsplit("/", 1)[1])


async def _waiting(p: Participant) -> list[dict[str, Any]]:
    status, body = await p.api("GET", "/api/queue")
    assert status == 200, body
    return list(body["waiting"])


async def test_a_call_placed_on_one_node_is_answered_on_the_other(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    agent = await _person(people, a, "agent001")
    officer_b = await _person(people, b, "window01")
    officer_a = await _person(people, a, "window02")
    entry_id = await _place_call(agent)

    # Node B's desk lists it (JSON polled by desk.js, and the page itself), as does A's.
    assert [e["id"] for e in await _waiting(officer_b)] == [entry_id]
    assert [e["id"] for e in await _waiting(officer_a)] == [entry_id]
    status, desk = await _get(officer_b, "/desk")
    assert status == 200 and f"/desk/calls/{entry_id}/accept" in desk and "王五" in desk

    status, location, body = await _post(officer_b, f"/desk/calls/{entry_id}/accept", {})
    assert (status, location) == (303, f"/desk/calls/{entry_id}"), body
    status, reception = await _get(officer_b, location)
    assert status == 200 and "王五" in reception

    # Gone from every desk; the community point (on A) sees who answered.
    assert await _waiting(officer_a) == [] and await _waiting(officer_b) == []
    status, desk = await _get(officer_a, "/desk")
    assert f"/desk/calls/{entry_id}/accept" not in desk
    status, call = await agent.api("GET", f"/api/queue/calls/{entry_id}")
    assert status == 200 and call["state"] == "accepted" and call["case_no"]
    assert call["accepted_by_name"]
    # Node A serves the reception of the officer who answered on B, and nobody else's.
    status, _ = await _get(officer_a, f"/desk/calls/{entry_id}")
    assert status == 403
    officer_b_on_a = await _person(people, a, "window01")
    status, reception = await _get(officer_b_on_a, f"/desk/calls/{entry_id}")
    assert status == 200 and call["case_no"] in reception

    # Ending it on A ends it for everybody.
    status, _, body = await _post(
        officer_b_on_a, f"/desk/calls/{entry_id}/end", {"outcome": "answered"}
    )
    assert status == 303, body
    status, call = await agent.api("GET", f"/api/queue/calls/{entry_id}")
    assert call["state"] == "ended"


async def test_two_officers_on_two_nodes_accept_one_call_one_wins(
    nodes: tuple[TestServer, TestServer], people: list[Participant]
) -> None:
    a, b = nodes
    agent = await _person(people, a, "agent001")
    officer_a = await _person(people, a, "window01")
    officer_b = await _person(people, b, "window02")
    entry_id = await _place_call(agent)
    assert await _waiting(officer_a) == await _waiting(officer_b) != []

    results = await asyncio.gather(
        _post(officer_a, f"/desk/calls/{entry_id}/accept", {}),
        _post(officer_b, f"/desk/calls/{entry_id}/accept", {}),
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [303, 409], results
    loser = next(body for status, _, body in results if status == 409)
    assert '"error": "call_taken"' in loser or '"error":"call_taken"' in loser

    # One case, with the winner as first receiver; only the winner reaches the reception.
    winner = officer_a if results[0][0] == 303 else officer_b
    other = officer_b if winner is officer_a else officer_a
    _, call = await agent.api("GET", f"/api/queue/calls/{entry_id}")
    assert call["state"] == "accepted"
    assert (await _get(winner, f"/desk/calls/{entry_id}"))[0] == 200
    assert (await _get(other, f"/desk/calls/{entry_id}"))[0] == 403
    _, cases = await winner.api("GET", "/api/cases")
    assert [c["case_no"] for c in cases["items"]].count(call["case_no"]) == 1
