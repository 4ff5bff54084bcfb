"""Invites and reminders speak the district's clock (issue #15): the SMS/e-mail text and the
invite's human-readable DESCRIPTION give Beijing time (09:00), never UTC (01:00)."""

from __future__ import annotations

from datetime import timedelta

from icalendar import Calendar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.kernel.crypto import PiiCipher
from tests.component.scheduling.conftest import NOW
from tests.component.scheduling.test_reminders import START, _setup, run
from tests.fakes import RecordingNotifier

Maker = async_sessionmaker[AsyncSession]


async def test_invite_and_reminder_texts_are_in_beijing_time(db: Maker, pii: PiiCipher) -> None:
    await _setup(db, pii)  # 2026-12-08 09:00–10:00 Beijing = 01:00–02:00 UTC
    notifier = RecordingNotifier()
    assert await run(db, pii, notifier, NOW) == 2
    await run(db, pii, notifier, START - timedelta(days=1))
    assert len(notifier.sent) >= 3
    for message in notifier.sent:
        body = message.body
        assert "2026-12-08 09:00" in body, body
        assert "UTC" not in body and "01:00" not in body, body
    email = next(m for m in notifier.sent if m.channel == "email")
    attachments = email.attachments
    assert len(attachments) == 1
    event = Calendar.from_ical(attachments[0][1]).walk("VEVENT")[0]
    description = str(event["DESCRIPTION"])
    assert "2026-12-08 09:00–10:00" in description and "UTC" not in description
    assert event["DTSTART"].params.get("TZID") == "Asia/Shanghai"
