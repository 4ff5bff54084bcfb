"""Invites parsed back with icalendar: METHOD, UID, SEQUENCE, VTIMEZONE and VALARM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from scheduling.ics import Attendee, Invite, build_ics

START = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def invite(sequence: int) -> Invite:
    return Invite(
        uid="abc@onedoor",
        sequence=sequence,
        start=START,
        end=START + timedelta(hours=1),
        summary="邻里纠纷调解",
        url="https://example.invalid/join/x",
        attendees=[Attendee("王某", email="w@example.cn"), Attendee("李调解员", key="staff:7")],
        alarms_before=(timedelta(days=1), timedelta(minutes=15)),
        stamp=START - timedelta(days=1),
    )


def test_request_then_cancel_round_trip() -> None:
    request = Calendar.from_ical(build_ics(invite(0)))
    cancel = Calendar.from_ical(build_ics(invite(1), method="CANCEL"))
    assert request["METHOD"] == "REQUEST" and cancel["METHOD"] == "CANCEL"
    req_event, cancel_event = request.walk("VEVENT")[0], cancel.walk("VEVENT")[0]
    assert str(req_event["UID"]) == str(cancel_event["UID"]) == "abc@onedoor"
    assert int(str(cancel_event["SEQUENCE"])) > int(str(req_event["SEQUENCE"]))
    assert str(cancel_event["STATUS"]) == "CANCELLED"
    assert [str(tz["TZID"]) for tz in request.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    start = req_event.decoded("DTSTART")
    assert start == START and str(start.tzinfo) == "Asia/Shanghai" and start.hour == 9
    assert req_event["DTSTART"].params["TZID"] == "Asia/Shanghai"
    alarms = [a.decoded("TRIGGER") for a in req_event.walk("VALARM")]
    assert alarms == [-timedelta(days=1), -timedelta(minutes=15)]
    assert cancel_event.walk("VALARM") == []
    attendees = [str(a) for a in req_event.get("ATTENDEE")]
    assert attendees == ["mailto:w@example.cn", "urn:onedoor:staff:7"]


def test_invalid_invites_are_refused() -> None:
    with pytest.raises(ValueError, match="end after"):
        Invite(uid="u", sequence=0, start=START, end=START, summary="x")
    with pytest.raises(ValueError, match="aware"):
        Invite(
            uid="u",
            sequence=0,
            start=START.replace(tzinfo=None),
            end=START.replace(tzinfo=None) + timedelta(hours=1),
            summary="x",
        )
