"""The reception queue's thresholds are settings (ONEDOOR_QUEUE_FLAG_AFTER_S,
ONEDOOR_QUEUE_CALLBACK_AFTER_S): the desk flags a call that waited too long, the community
point's page offers a call-back booking, and both pages state the configured times. The queue's
clock is injected where time must pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app, make_queue_service
from server.http import keys
from server.queue.service import ABANDONED_AFTER
from tests.component.signaling.harness import Participant
from tests.conftest import DEMO_USERS, make_settings, sign_in, signed_in
from tests.fakes import FakeClock

Client = TestClient[Any, Any]


@asynccontextmanager
async def _client(tmp_path: Path, db_url: str, **settings: Any) -> AsyncIterator[Client]:
    app = create_app(make_settings(tmp_path, db_url, **settings))
    async with TestClient(TestServer(app)) as client:
        yield client


async def _place_call(client: Client) -> int:
    token = await signed_in(client, "community_agent")
    resp = await client.post(
        "/call",
        data={
            "_csrf": token,
            "matter_code": "wage_arrears",
            "resident_name": "王五",
            "resident_phone": "13912345678",
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def _views(client: Client, entry_id: int) -> dict[str, Any]:
    """What the agent's call page and the officer's desk show for one waiting call."""
    call_page = await (await client.get(f"/call/{entry_id}")).text()
    status = await (await client.get(f"/api/queue/calls/{entry_id}")).json()
    await client.post("/logout", data={"_csrf": await _csrf(client)})
    await sign_in(client, DEMO_USERS["window_officer"])
    desk_page = await (await client.get("/desk")).text()
    queue = await (await client.get("/api/queue")).json()
    return {"call_page": call_page, "status": status, "desk_page": desk_page, "queue": queue}


async def _csrf(client: Client) -> str:
    import re

    html = await (await client.get("/")).text()
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match
    return match.group(1)


async def test_defaults_flag_nothing_at_once(tmp_path: Path, demo_sqlite_url: str) -> None:
    async with _client(tmp_path, demo_sqlite_url) as client:
        v = await _views(client, await _place_call(client))
    assert v["status"]["callback_offered"] is False and v["status"]["callback_after_s"] == 600
    assert 'data-callback-after="600"' in v["call_page"]
    assert "若 10 分钟内无人接听，可以为群众预约回电。" in v["call_page"]
    assert v["queue"]["flag_after_s"] == 180 and v["queue"]["callback_after_s"] == 600
    assert v["queue"]["waiting"][0]["flagged"] is False
    assert "等待超过 3 分钟的来电标红" in v["desk_page"] and "等待过久" not in v["desk_page"]


async def test_configured_thresholds_drive_the_flag_and_the_callback_offer(
    tmp_path: Path, demo_sqlite_url: str
) -> None:
    # Flag at once, offer a call back after an hour: flagged on the desk, no offer yet.
    async with _client(
        tmp_path / "a", demo_sqlite_url, queue_flag_after_s=0, queue_callback_after_s=3600
    ) as client:
        v = await _views(client, await _place_call(client))
    assert v["queue"]["waiting"][0]["flagged"] is True and v["queue"]["flag_after_s"] == 0
    assert "等待过久" in v["desk_page"] and "等待超过 0 分钟的来电标红" in v["desk_page"]
    assert v["status"]["callback_offered"] is False
    assert "若 60 分钟内无人接听" in v["call_page"]

    # Both at once: the call page offers the call-back booking.
    async with _client(
        tmp_path / "b", demo_sqlite_url, queue_flag_after_s=0, queue_callback_after_s=0
    ) as client:
        entry_id = await _place_call(client)
        v = await _views(client, entry_id)
    assert v["status"]["callback_offered"] is True and v["status"]["callback_after_s"] == 0
    assert 'data-callback-after="0"' in v["call_page"]


async def test_english_hint_states_the_threshold(tmp_path: Path, demo_sqlite_url: str) -> None:
    async with _client(
        tmp_path, demo_sqlite_url, queue_flag_after_s=30, queue_callback_after_s=90
    ) as client:
        entry_id = await _place_call(client)
        page = await (await client.get(f"/call/{entry_id}?lang=en")).text()
    assert "If nobody answers within 1.5 minutes, you can book a call back" in page


@asynccontextmanager
async def _clocked(tmp_path: Path, db_url: str, clock: FakeClock) -> AsyncIterator[Client]:
    app = create_app(make_settings(tmp_path, db_url))
    app[keys.call_queue] = make_queue_service(app, None, clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_flag_and_the_callback_offer_come_with_time(
    tmp_path: Path, demo_sqlite_url: str
) -> None:
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    async with _clocked(tmp_path, demo_sqlite_url, clock) as client:
        assert isinstance(client.server, TestServer)
        entry_id = await _place_call(client)  # the agent, in `client`
        officer = await Participant.create(client.server, "officer")  # another browser
        try:
            await _clocked_journey(client, officer, clock, entry_id)
        finally:
            await officer.close()


async def _clocked_journey(
    client: Client, officer: Participant, clock: FakeClock, entry_id: int
) -> None:
    """The agent (`client`) placed call `entry_id` at the clock's start; a window officer
    watches the desk from another browser while time passes."""
    await officer.sign_in(DEMO_USERS["window_officer"])

    async def state() -> tuple[bool, bool, bool]:
        """(flagged in the desk's JSON, on the desk page, call back offered to the agent)"""
        status = await (await client.get(f"/api/queue/calls/{entry_id}")).json()
        _, queue = await officer.api("GET", "/api/queue")
        async with officer.session.get(officer.base + "/desk") as resp:
            page = await resp.text()
        return queue["waiting"][0]["flagged"], "等待过久" in page, status["callback_offered"]

    clock.current += timedelta(seconds=179)
    assert await state() == (False, False, False)
    clock.current += timedelta(seconds=1)  # 180 s: ONEDOOR_QUEUE_FLAG_AFTER_S
    assert await state() == (True, True, False)
    for _ in range(2):  # the agent's page keeps polling (each poll keeps the call)
        clock.current += timedelta(seconds=209.5)
        assert await state() == (True, True, False)
    clock.current += timedelta(seconds=1)  # 600 s: ONEDOOR_QUEUE_CALLBACK_AFTER_S
    assert await state() == (True, True, True)

    # The agent's page stops polling: after ABANDONED_AFTER the call leaves the desk.
    clock.current += ABANDONED_AFTER
    assert (await officer.api("GET", "/api/queue"))[1]["waiting"] == []
    assert (await client.get(f"/api/queue/calls/{entry_id}")).status == 404
