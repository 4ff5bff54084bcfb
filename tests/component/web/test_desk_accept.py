"""Accepting a call whose case cannot be made (an unknown case to link) leaves the call waiting
on the desk for anyone, instead of held by an officer with no case."""

from __future__ import annotations

from typing import Any

from tests.conftest import DEMO_USERS, sign_in, signed_in

Client = Any


async def test_a_failed_accept_puts_the_call_back_in_the_queue(app_client: Client) -> None:
    token = await signed_in(app_client, "community_agent")
    resp = await app_client.post(
        "/call",
        data={"_csrf": token, "matter_code": "wage_arrears", "resident_name": "王五",
              "resident_phone": "13912345678"},
        allow_redirects=False,
    )  # fmt: skip
    entry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    await app_client.post("/logout", data={"_csrf": token})
    token = await sign_in(app_client, DEMO_USERS["window_officer"])
    failed = await app_client.post(
        f"/desk/calls/{entry_id}/accept",
        data={"_csrf": token, "case_id": "999999"},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )
    assert failed.status == 404 and (await failed.json())["error"] == "case_not_found"
    waiting = (await (await app_client.get("/api/queue")).json())["waiting"]
    assert [(e["id"], e["state"], e["case_no"]) for e in waiting] == [(entry_id, "waiting", "")]
    ok = await app_client.post(
        f"/desk/calls/{entry_id}/accept", data={"_csrf": token}, allow_redirects=False
    )
    assert ok.status == 303
    assert (await (await app_client.get("/api/queue")).json())["waiting"] == []
