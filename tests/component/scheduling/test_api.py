"""The scheduling REST API through the real app (SQLite, demo district): slots, booking,
.ics download, conflict and bad input as typed JSON errors, reschedule and cancel."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from icalendar import Calendar

from server.http import keys
from server.kernel.db import utcnow
from server.org.models import ResourceType, Role
from tests.component.scheduling.conftest import demo_ids
from tests.conftest import signed_in

Client = TestClient[Any, Any]


def next_weekday_9am() -> datetime:
    """09:00 Hangzhou time on a weekday at least two days ahead (past the minimum notice)."""
    day = (utcnow() + timedelta(days=2)).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.fromisoformat(f"{day.isoformat()}T09:00:00+08:00")


async def test_find_book_download_reschedule_cancel(app_client: Client) -> None:
    token = await signed_in(app_client, "mediator")
    headers = {"X-CSRF-Token": token}
    async with app_client.app[keys.db]() as session:
        ids = await demo_ids(session)
    start = next_weekday_9am()
    resp = await app_client.post(
        "/api/scheduling/slots",
        json={
            "people": [{"role": Role.mediator, "department_id": ids.mediation_dept}],
            "resources": [
                {"type": ResourceType.mediation_room, "site_ids": [ids.street]},
                {"type": ResourceType.video_terminal, "site_ids": ids.community_sites[:1]},
                {"type": ResourceType.video_terminal, "site_ids": ids.community_sites[1:2]},
            ],
            "duration_min": 60,
            "start": start.isoformat(),
            "limit": 3,
        },
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    slots = (await resp.json())["slots"]
    assert len(slots) == 3
    first = slots[0]
    assert datetime.fromisoformat(first["start"]) == start
    assert len(first["resource_ids"]) == 3 and len(first["staff_ids"]) == 1

    body = {
        "start": first["start"],
        "end": first["end"],
        "staff": [
            {"staff_id": first["staff_ids"][0], "as_role": "mediator", "must_have_role": "mediator"}
        ],
        "resources": [{"resource_id": r} for r in first["resource_ids"]],
        "guests": [{"display_name": "王某", "phone": "13800000000"}],
        "title": "联合调处",
    }
    resp = await app_client.post("/api/scheduling/bookings", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    booking = await resp.json()
    again = await app_client.post("/api/scheduling/bookings", json=body, headers=headers)
    assert again.status == 409 and (await again.json())["error"] == "booking_conflict"

    ics = await app_client.get(f"/api/scheduling/sessions/{booking['session_id']}/invite.ics")
    assert ics.status == 200 and ics.content_type == "text/calendar"
    cal = Calendar.from_ical(await ics.read())
    assert cal["METHOD"] == "REQUEST"
    assert str(cal.walk("VEVENT")[0]["UID"]) == booking["ical_uid"]

    resp = await app_client.post(
        f"/api/scheduling/bookings/{booking['id']}/reschedule",
        json={
            "start": (start + timedelta(hours=1)).isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
            "reason": "当事人申请",
        },
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    moved = await resp.json()
    assert moved["previous_id"] == booking["id"] and moved["ical_sequence"] == 1

    resp = await app_client.post(
        f"/api/scheduling/bookings/{moved['id']}/cancel", json={"reason": "撤回"}, headers=headers
    )
    assert resp.status == 200
    ics = await app_client.get(f"/api/scheduling/sessions/{booking['session_id']}/invite.ics")
    cal = Calendar.from_ical(await ics.read())
    assert cal["METHOD"] == "CANCEL" and int(str(cal.walk("VEVENT")[0]["SEQUENCE"])) == 2

    record = await (
        await app_client.get(f"/api/scheduling/sessions/{booking['session_id']}")
    ).json()
    assert record["state"] == "cancelled"
    assert [b["status"] for b in record["bookings"]] == ["rescheduled", "cancelled"]


async def test_bad_input_is_a_clear_json_error(app_client: Client) -> None:
    token = await signed_in(app_client, "window_officer")
    headers = {"X-CSRF-Token": token}
    async with app_client.app[keys.db]() as session:
        ids = await demo_ids(session)
    start = next_weekday_9am()

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await app_client.post("/api/scheduling/bookings", json=body, headers=headers)
        return resp.status, await resp.json()

    base = {"staff": [{"staff_id": ids.mediators[0]}], "resources": []}
    status, err = await post(
        {**base, "start": start.isoformat(), "end": (start - timedelta(hours=1)).isoformat()}
    )
    assert status == 422 and err["error"] == "invalid_input"
    status, err = await post(
        {**base, "start": "2020-01-06T09:00:00+08:00", "end": "2020-01-06T10:00:00+08:00"}
    )
    assert status == 422 and "past" in err["message"]
    sat = start + timedelta(days=(5 - start.weekday()) % 7)
    status, err = await post(
        {**base, "start": sat.isoformat(), "end": (sat + timedelta(hours=1)).isoformat()}
    )
    assert status == 422 and err["error"] == "slot_unavailable"
    status, err = await post(
        {
            "staff": [{"staff_id": 999999}],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
        }
    )
    assert status == 422 and err["error"] == "unknown_participant"
    status, err = await post(
        {
            **base,
            "resources": [
                {"resource_id": ids.community_terminals[0], "expected_type": "mediation_room"}
            ],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
        }
    )
    assert status == 422 and err["error"] == "wrong_resource_kind"


async def test_availability_can_be_set_and_read(app_client: Client) -> None:
    token = await signed_in(app_client, "centre_supervisor")
    headers = {"X-CSRF-Token": token}
    async with app_client.app[keys.db]() as session:
        ids = await demo_ids(session)
    owner = f"staff:{ids.mediators[0]}"
    resp = await app_client.put(
        f"/api/scheduling/availability/{owner}",
        json={
            "hours": [
                {
                    "rrule": "FREQ=WEEKLY;BYDAY=TU,TH",
                    "start_local": "14:00",
                    "end_local": "17:00",
                    "valid_from": "2026-01-01",
                }
            ],
            "policy": {"buffer_after_min": 15, "min_notice_min": 60},
        },
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    out = await resp.json()
    assert out["policy"]["buffer_after_min"] == 15
    for s, _ in out["free"]:
        local = datetime.fromisoformat(s) + timedelta(hours=8)
        assert local.weekday() in (1, 3)
    bad = await app_client.put(
        f"/api/scheduling/availability/{owner}",
        json={
            "hours": [
                {
                    "rrule": "FREQ=NEVER",
                    "start_local": "14:00",
                    "end_local": "17:00",
                    "valid_from": "2026-01-01",
                }
            ]
        },
        headers=headers,
    )
    assert bad.status == 422
