from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from media.sfu import SfuMediaNode
from signaling.config import Limits
from tests.component.signaling.harness import FakeMediaNode, Participant, build_app
from tests.conftest import make_settings

MakeParticipant = Callable[..., Awaitable[Participant]]


@pytest.fixture
def fake_media() -> FakeMediaNode:
    return FakeMediaNode()


@pytest.fixture
async def sfu() -> AsyncIterator[SfuMediaNode]:
    """The real in-process SFU; a module that wants it for its server overrides `fake_media`:
    `def fake_media(sfu): return sfu`."""
    node = SfuMediaNode(host_addresses=["127.0.0.1"])
    yield node
    await node.close()


@pytest.fixture
def limits() -> Limits:
    return Limits(heartbeat_s=5.0, lease_ms=1000, attach_timeout_s=0.5)


@pytest.fixture
def grace_s() -> float:
    return 30.0


@pytest.fixture
async def server(
    tmp_path: Path, demo_sqlite_url: str, fake_media: FakeMediaNode, limits: Limits, grace_s: float
) -> AsyncIterator[TestServer]:
    settings = make_settings(
        tmp_path,
        demo_sqlite_url,
        signaling_grace_s=grace_s,
        turn_urls=["turn:turn.example.test:3478"],
        turn_secret="s3cret",
        stun_urls=["stun:turn.example.test:3478"],
    )
    app = build_app(settings, media=fake_media, limits=limits)
    srv = TestServer(app)
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture
async def people(server: TestServer) -> AsyncIterator[MakeParticipant]:
    made: list[Participant] = []

    async def make(name: str, username: str | None = None) -> Participant:
        p = await Participant.create(server, name)
        if username:
            await p.sign_in(username)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()
