"""A booked session is not ended on the wrong day (issue #16): a host who enters a room booked
for tomorrow may look around, but 结束会话 gets `session_not_open` and changes nothing, and the
session does not start; within its window (30 minutes before the start) it ends as usual."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server.http import keys
from server.kernel.db import utcnow
from server.sessions import service as sessions
from server.sessions.models import SessionEvent, SessionKind, SessionState
from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant


async def _booked(server: TestServer, starts_in: timedelta) -> tuple[int, str]:
    start = utcnow() + starts_in
    async with server.app[keys.db].begin() as session:
        view = await sessions.create_session(
            session,
            kind=SessionKind.mediation,
            title="预约调解",
            case_id=None,
            host_site_id=None,
            created_by_id=None,
            now=utcnow(),
            planned_start=start,
            planned_end=start + timedelta(hours=1),
        )
    return view.id, view.room_id


async def _record(server: TestServer, session_id: int) -> tuple[SessionState, list[str]]:
    await server.app[node_key].journal.flush()
    async with server.app[keys.db]() as session:
        view = await sessions.get_session_by_id(session, session_id=session_id)
        rows = await session.scalars(
            select(SessionEvent).where(SessionEvent.session_id == session_id)
        )
        return view.state, [r.type for r in rows]


async def test_ending_tomorrows_session_today_is_refused_and_changes_nothing(
    server: TestServer, people: MakeParticipant
) -> None:
    session_id, room_id = await _booked(server, timedelta(days=1))
    host = await people("host", "mediator01")
    await host.connect()
    await host.join(room_id)
    err = await host.request("end_session")
    assert err["type"] == "error" and err["code"] == "session_not_open", err
    assert err["message_zh"] == "预约的会话尚未到开放时间，不能开始或结束"
    assert host.seen("session_ended") == []
    # Still in the room; the session neither started nor ended.
    assert (await host.request("chat", text="测试设备"))["type"] == "ack"
    state, events = await _record(server, session_id)
    assert state == SessionState.scheduled
    assert "session.started" not in events and "session.ended" not in events
    assert room_id in server.app[node_key].rooms


async def test_within_its_window_a_booked_session_starts_and_ends(
    server: TestServer, people: MakeParticipant
) -> None:
    session_id, room_id = await _booked(server, timedelta(minutes=10))
    host = await people("host", "mediator01")
    await host.connect()
    await host.join(room_id)
    assert (await host.request("end_session"))["type"] == "ack"
    await host.expect("session_ended")
    state, events = await _record(server, session_id)
    assert state == SessionState.ended
    assert "session.started" in events and "session.ended" in events
