"""Invites, reminders and room opening through the persisted job runner: each fires once,
at its time, survives a gateway outage (retried with backoff, status visible), and the room
opens at the start."""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Calendar
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduling import service
from scheduling.reminders import StaffRoomLinks, run_due_reminders
from scheduling.schemas import BookingOut, BookingRequest
from server.kernel.crypto import PiiCipher
from server.org.models import Staff
from tests.component.scheduling.conftest import NOW, TZ, demo_ids
from tests.fakes import FakeClock, RecordingNotifier

Maker = async_sessionmaker[AsyncSession]
START = datetime.fromisoformat("2026-12-08T09:00:00+08:00")


async def _setup(db: Maker, pii: PiiCipher) -> BookingOut:
    async with db.begin() as session:
        ids = await demo_ids(session)
        await session.execute(
            update(Staff).where(Staff.id == ids.mediators[0]).values(phone="13900000001")
        )
        req = BookingRequest.model_validate(
            {
                "start": START,
                "end": START + timedelta(hours=1),
                "staff": [{"staff_id": ids.mediators[0], "as_role": "mediator"}],
                "resources": [{"resource_id": ids.centre_room}],
                "guests": [{"display_name": "王某", "email": "wang@example.cn"}],
                "title": "邻里纠纷调解",
            }
        )
        return await service.book(
            session, request=req, actor="staff:1", actor_staff_id=None, now=NOW, tz=TZ, cipher=pii
        )


async def run(db: Maker, pii: PiiCipher, notifier: RecordingNotifier, now: datetime) -> int:
    return await run_due_reminders(
        db, now=now, notifier=notifier, issuer=StaffRoomLinks("https://od.test"), cipher=pii, tz=TZ
    )


async def test_invites_reminders_and_room_opening_fire_once(db: Maker, pii: PiiCipher) -> None:
    booking = await _setup(db, pii)
    notifier = RecordingNotifier()
    clock = FakeClock(NOW)
    assert await run(db, pii, notifier, clock.now()) == 2  # two invites
    assert await run(db, pii, notifier, clock.now()) == 0  # never twice
    email = next(m for m in notifier.sent if m.channel == "email")
    assert email.to == "wang@example.cn" and "https://od.test/rooms/" in email.body
    attachments = email.attachments
    assert len(attachments) == 1
    _name, ics, mimetype = attachments[0]
    cal = Calendar.from_ical(ics)
    assert mimetype == "text/calendar" and cal["METHOD"] == "REQUEST"
    assert str(cal.walk("VEVENT")[0]["UID"]) == booking.ical_uid

    clock.current = START - timedelta(days=1)  # the 1-day reminders
    assert await run(db, pii, notifier, clock.now()) == 2
    clock.current = START - timedelta(minutes=15)
    assert await run(db, pii, notifier, clock.now()) == 2
    clock.current = START  # room opens; the host is told (fan-out job, then the message)
    await run(db, pii, notifier, clock.now())
    await run(db, pii, notifier, clock.now())
    subjects = [m.subject for m in notifier.sent]
    assert subjects.count("【信访超市】会议提醒") == 4
    assert subjects.count("【信访超市】会议室已开放") == 1
    async with db() as session:
        record = await service.session_record(session, session_id=booking.session_id or 0)
    assert record.state == "lobby"
    assert {j.status for j in record.jobs} == {"sent"}
    assert {p.invite_status for p in record.participants} == {"sent"}


async def test_gateway_down_is_retried_with_backoff_and_nothing_lost(
    db: Maker, pii: PiiCipher
) -> None:
    booking = await _setup(db, pii)
    notifier = RecordingNotifier(down=True)
    assert await run(db, pii, notifier, NOW) == 0
    async with db() as session:
        record = await service.session_record(session, session_id=booking.session_id or 0)
    invites = [j for j in record.jobs if j.kind == "invite"]
    assert all(j.status == "pending" and j.attempts == 1 for j in invites)
    assert all("gateway unreachable" in j.last_error for j in invites)
    assert all(j.due_at == NOW + timedelta(minutes=1) for j in invites)
    assert {p.invite_status for p in record.participants} == {"retrying"}
    assert await run(db, pii, notifier, NOW + timedelta(seconds=30)) == 0  # backoff honoured
    notifier.down = False
    assert await run(db, pii, notifier, NOW + timedelta(minutes=1)) == 2
    assert len(notifier.sent) == 2


async def test_jobs_give_up_after_max_attempts(db: Maker, pii: PiiCipher) -> None:
    booking = await _setup(db, pii)
    notifier = RecordingNotifier(down=True)
    now = NOW
    for _ in range(10):
        await run(db, pii, notifier, now)
        now += timedelta(hours=2)
    async with db() as session:
        record = await service.session_record(session, session_id=booking.session_id or 0)
    invites = [j for j in record.jobs if j.kind == "invite"]
    assert [j.status for j in invites] == ["failed", "failed"]
    assert {p.invite_status for p in record.participants} == {"failed"}


async def test_reschedule_sends_updates_and_cancel_sends_cancel(db: Maker, pii: PiiCipher) -> None:
    booking = await _setup(db, pii)
    notifier = RecordingNotifier()
    await run(db, pii, notifier, NOW)
    async with db.begin() as session:
        moved = await service.reschedule(
            session,
            booking_id=booking.id,
            start=START + timedelta(hours=1),
            end=START + timedelta(hours=2),
            reason="改期",
            actor="staff:1",
            actor_staff_id=None,
            now=NOW,
            tz=TZ,
        )
    await run(db, pii, notifier, NOW)
    async with db.begin() as session:
        await service.cancel(session, booking_id=moved.id, reason="撤回", actor="staff:1", now=NOW)
    await run(db, pii, notifier, NOW)
    seqs = []
    for m in notifier.sent:
        if m.channel != "email":
            continue
        cal = Calendar.from_ical(m.attachments[0][1])
        event = cal.walk("VEVENT")[0]
        seqs.append((str(cal["METHOD"]), int(str(event["SEQUENCE"])), str(event["UID"])))
    assert seqs == [
        ("REQUEST", 0, booking.ical_uid),
        ("REQUEST", 1, booking.ical_uid),
        ("CANCEL", 2, booking.ical_uid),
    ]
    # No reminder of the cancelled session ever goes out.
    assert await run(db, pii, notifier, START - timedelta(minutes=15)) == 0
