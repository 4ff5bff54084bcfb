"""The session record on SQLite and PostgreSQL: a lobby journey written through the journal."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server.audit.service import verify
from server.http import keys
from server.sessions.models import (
    CallSession,
    ChatMessage,
    JoinToken,
    SessionEvent,
    SessionParticipant,
    SessionState,
)
from signaling.ws import node_key
from tests.component.signaling.harness import Participant, build_app, new_session, new_token
from tests.conftest import make_settings


async def test_session_record_on_both_databases(tmp_path: Path, demo_db_url: str) -> None:
    server = TestServer(build_app(make_settings(tmp_path, demo_db_url)))
    await server.start_server()
    people: list[Participant] = []
    try:
        host = await Participant.create(server, "host")
        guest = await Participant.create(server, "guest")
        people += [host, guest]
        await host.sign_in("mediator01")
        sess = await new_session(host, title="对接")
        tok = await new_token(host, sess["id"], name="赵六")
        await host.connect()
        await host.join(sess["room_id"])
        await guest.connect()
        await guest.join(sess["room_id"], token=tok["token"])
        await host.request("admit", peer_id=guest.peer_id)
        await guest.expect("admitted")
        await guest.request("recording_consent", consent=True)
        await guest.request("chat", text="收到")
        await guest.request("leave")
        await host.request("end_session")
        await host.expect("session_ended")
        await server.app[node_key].journal.flush()
        assert server.app[node_key].journal.failed_batches == 0

        async with server.app[keys.db]() as session:
            cs = await session.scalar(select(CallSession).where(CallSession.id == sess["id"]))
            assert cs is not None and cs.state == SessionState.ended
            assert cs.actual_start is not None and cs.actual_end is not None
            parts = (
                await session.scalars(
                    select(SessionParticipant).where(SessionParticipant.session_id == sess["id"])
                )
            ).all()
            by_identity = {p.identity: p for p in parts}
            g = by_identity[f"guest:{tok['jti']}"]
            assert g.joined_at and g.left_at and g.recording_consent_at
            assert all(p.left_at is not None for p in parts)
            types = (
                await session.scalars(
                    select(SessionEvent.type).where(SessionEvent.session_id == sess["id"])
                )
            ).all()
            assert {"session.started", "participant.admitted", "session.ended"} <= set(types)
            assert (await session.scalar(select(ChatMessage.text))) == "收到"
            assert (await session.get(JoinToken, tok["jti"])) is not None
            assert (await verify(session)).ok
    finally:
        for p in people:
            await p.close()
        await server.close()
