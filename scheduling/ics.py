"""iCalendar invites (RFC 5545/5546). Pure: builds bytes, never sends.

Every change to a session bumps its SEQUENCE; the UID never changes. A cancellation is
METHOD:CANCEL with the same UID and a higher SEQUENCE (clients otherwise ignore it).
Times are written in the local zone (TZID=Asia/Shanghai) with its VTIMEZONE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, vCalAddress, vText

PRODID = "-//onedoor//scheduling//ZH"
Method = Literal["REQUEST", "CANCEL"]


@dataclass(frozen=True, slots=True)
class Attendee:
    name: str
    email: str = ""  # empty: addressed by a non-mail URI (SMS recipients)
    role: str = "REQ-PARTICIPANT"
    key: str = ""  # stable id when there is no e-mail, e.g. "staff:7"

    def address(self) -> str:
        if self.email:
            return f"mailto:{self.email}"
        return f"urn:onedoor:{self.key or 'participant'}"


@dataclass(frozen=True, slots=True)
class Invite:
    uid: str
    sequence: int
    start: datetime
    end: datetime
    summary: str
    description: str = ""
    location: str = ""
    url: str = ""
    organizer_name: str = "拱墅区信访超市"
    organizer_email: str = "noreply@onedoor.invalid"
    attendees: Sequence[Attendee] = ()
    alarms_before: Sequence[timedelta] = (timedelta(minutes=15),)
    tz: str = "Asia/Shanghai"
    stamp: datetime | None = None  # DTSTAMP; the caller's clock

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("an event must end after it starts")
        if self.sequence < 0:
            raise ValueError("SEQUENCE must not be negative")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("invite times must be timezone-aware")


def build_ics(invite: Invite, *, method: Method = "REQUEST") -> bytes:
    zone = ZoneInfo(invite.tz)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", invite.stamp or invite.start)
    event.add("dtstart", invite.start.astimezone(zone))
    event.add("dtend", invite.end.astimezone(zone))
    event.add("summary", invite.summary)
    if invite.description:
        event.add("description", invite.description)
    if invite.location:
        event.add("location", invite.location)
    if invite.url:
        event.add("url", invite.url)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    organizer = vCalAddress(f"mailto:{invite.organizer_email}")
    organizer.params["cn"] = vText(invite.organizer_name)
    event["organizer"] = organizer
    for person in invite.attendees:
        addr = vCalAddress(person.address())
        addr.params["cn"] = vText(person.name)
        addr.params["role"] = vText(person.role)
        addr.params["partstat"] = vText("NEEDS-ACTION")
        addr.params["rsvp"] = vText("FALSE")
        event.add("attendee", addr, encode=False)
    if method == "REQUEST":
        for lead in invite.alarms_before:
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", invite.summary)
            alarm.add("trigger", -lead)
            event.add_component(alarm)
    cal.add_component(event)
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def filename(uid: str, method: Method) -> str:
    stem = "cancel" if method == "CANCEL" else "invite"
    safe = "".join(ch for ch in uid.split("@", 1)[0] if ch.isalnum() or ch == "-")[:40]
    return f"{stem}-{safe}.ics"
