"""A program with an API token and no cookie: it creates a session over REST without CSRF and
joins the room over the signaling WebSocket as the token's owner, narrowed to its scopes."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from server.auth.api_tokens import create_token
from server.auth.permissions import Action
from server.http import keys
from server.kernel.db import utcnow
from server.org.models import Staff
from tests.component.signaling.harness import Participant, new_session


async def _token(server: TestServer, username: str, scopes: set[Action]) -> str:
    now = utcnow()
    async with server.app[keys.db].begin() as session:
        owner = await session.scalar(select(Staff.id).where(Staff.username == username))
        assert owner is not None
        token, _ = await create_token(
            session,
            staff_id=owner,
            name="program",
            scopes=frozenset(scopes),
            expires_at=now + timedelta(days=1),
            now=now,
            created_by="test",
        )
    return token


def _program(server: TestServer, token: str, name: str) -> Participant:
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), headers={"Authorization": f"Bearer {token}"}
    )
    return Participant(session, str(server.make_url("/")).rstrip("/"), name)


async def test_a_program_hosts_a_room_with_its_token(server: TestServer) -> None:
    host_token = await _token(
        server, "mediator01", {Action.session_create, Action.session_host, Action.session_join}
    )
    viewer_token = await _token(server, "mediator01", {Action.case_view})
    program = _program(server, host_token, "program")
    narrow = _program(server, viewer_token, "narrow")
    try:
        sess = await new_session(program, title="接口创建的调解")  # no CSRF header needed
        await program.connect()
        welcome = await program.join(sess["room_id"])
        assert welcome["status"] == "joined" and welcome["role"] == "host"

        await narrow.connect()
        refused = await narrow.request("join", room_id=sess["room_id"])
        assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    finally:
        await program.close()
        await narrow.close()
