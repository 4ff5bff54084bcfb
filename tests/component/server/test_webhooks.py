"""Session events as signed webhooks, end to end: the sessions service enqueues each event in
its own transaction, the job runner (an injected clock, no sleeps) POSTs it to a real local
receiver that checks the HMAC signature; a 500 is retried after the backoff, an endpoint that
keeps failing is given up after the policy's attempts."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.cases.deadline_clock import DeadlineClock
from server.kernel.db import make_engine, make_sessionmaker
from server.kernel.jobs import JobRunner, RetryPolicy
from server.kernel.settings import Settings, SettingsError, WebhookEndpoint
from server.sessions import service
from server.sessions.models import SessionKind, SessionOutcome
from server.sessions.schemas import EventRecord, RecordedFile, RecordingRecord
from server.webhooks.models import WebhookDelivery
from server.webhooks.service import WebhookJobs, session_info, verify
from tests.fakes import FakeClock

Maker = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SECRET = "whsec-test-0123456789abcdef"
OTHER_SECRET = "whsec-other-0123456789abcdef"


@dataclass
class Receiver:
    """An integrator's endpoint: answers the scripted statuses (then 200), checks signatures."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = SECRET if request.path == "/hook" else OTHER_SECRET
        header = request.headers["X-Onedoor-Signature"]
        # The receiver's own check, written from docs/api.md (not with our helper).
        parts = dict(p.split("=", 1) for p in header.split(","))
        mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
        self.received.append(
            {
                "path": request.path,
                "event": json.loads(body),
                "delivery": request.headers["X-Onedoor-Delivery"],
                "type": request.headers["X-Onedoor-Event"],
                "valid": hmac.compare_digest(mac.hexdigest(), parts["v1"]),
                "t": int(parts["t"]),
            }
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    app.router.add_post("/ended-only", r.handle)
    server = TestServer(app)
    await server.start_server()
    yield r, server
    await server.close()


def _endpoints(server: TestServer) -> list[WebhookEndpoint]:
    return [
        WebhookEndpoint(url=str(server.make_url("/hook")), secret=SecretStr(SECRET), events=["*"]),
        WebhookEndpoint(
            url=str(server.make_url("/ended-only")),
            secret=SecretStr(OTHER_SECRET),
            events=["session.ended"],
        ),
    ]


async def _maker(url: str, endpoints: list[WebhookEndpoint]) -> tuple[Any, Maker]:
    engine = make_engine(url)
    return engine, make_sessionmaker(engine, info=session_info(endpoints))


async def _run_a_session(db: Maker) -> int:
    async with db.begin() as s:
        view = await service.create_session(
            s,
            kind=SessionKind.mediation,
            title="调解",
            case_id=None,
            host_site_id=None,
            created_by_id=None,
            now=NOW,
        )
    async with db.begin() as s:
        await service.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())
    joined = {"identity": "guest:abc", "role": "party", "display_name": "张三", "site_id": None}
    async with db.begin() as s:
        await service.write_records(
            s,
            [
                EventRecord(view.id, "participant.joined", "guest:abc", joined, NOW),
                EventRecord(view.id, "chat.sent", "guest:abc", {}, NOW),
                EventRecord(view.id, "participant.left", "guest:abc", joined, NOW),
                RecordingRecord(
                    view.id,
                    (RecordedFile("guest:abc", "audio", "rec/1.ogg", "ab" * 32, 10, NOW, 1.5),),
                ),
            ],
            deadlines=DeadlineClock(),
        )
    async with db.begin() as s:
        await service.end(s, session_id=view.id, now=NOW)
        await service.record_outcome(
            s, session_id=view.id, outcome=SessionOutcome.agreement, now=NOW
        )
    return view.id


async def test_session_events_are_delivered_signed(
    db_url: str, receiver: tuple[Receiver, TestServer]
) -> None:
    r, server = receiver
    endpoints = _endpoints(server)
    engine, db = await _maker(db_url, endpoints)
    try:
        session_id = await _run_a_session(db)
        later = NOW + timedelta(minutes=1)  # the recording is ready when its file ends
        runner = JobRunner(db, clock=FakeClock(later))
        runner.add_handler(WebhookJobs(endpoints))
        report = (await runner.run_once())["webhooks"]
    finally:
        await engine.dispose()
    assert report.sent == 7 and report.retrying == 0, [x["type"] for x in r.received]
    hook = [x for x in r.received if x["path"] == "/hook"]
    assert [x["type"] for x in hook] == [
        "session.started",
        "participant.joined",
        "participant.left",
        "recording.ready",
        "session.ended",
        "session.outcome_recorded",
    ]
    assert all(x["valid"] and x["t"] == int(later.timestamp()) for x in r.received)
    assert [x["type"] for x in r.received if x["path"] == "/ended-only"] == ["session.ended"]
    joined = hook[1]["event"]
    assert joined["type"] == "participant.joined" and joined["id"] == hook[1]["delivery"]
    assert joined["data"]["session_id"] == session_id
    assert joined["data"]["identity"] == "guest:abc" and "display_name" not in joined["data"]
    assert "张三" not in json.dumps([x["event"] for x in r.received], ensure_ascii=False)
    assert hook[3]["event"]["data"]["files"][0]["sha256"] == "ab" * 32
    assert "storage_uri" not in json.dumps(hook[3]["event"])
    assert hook[5]["event"]["data"]["outcome"] == "agreement"


async def test_a_500_is_retried_after_the_backoff(
    sqlite_url: str, receiver: tuple[Receiver, TestServer]
) -> None:
    r, server = receiver
    endpoints = _endpoints(server)[:1]
    engine, db = await _maker(sqlite_url, endpoints)
    clock = FakeClock(NOW)
    policy = RetryPolicy(max_attempts=3)
    try:
        async with db.begin() as s:
            view = await service.create_session(
                s,
                kind=SessionKind.reception,
                title="接访",
                case_id=None,
                host_site_id=None,
                created_by_id=None,
                now=NOW,
            )
            await service.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())
        r.statuses = [500]
        runner = JobRunner(db, clock=clock, policy=policy)
        runner.add_handler(WebhookJobs(endpoints))
        assert (await runner.run_once())["webhooks"].retrying == 1
        assert (await runner.run_once())["webhooks"].claimed == 0  # not before the backoff
        clock.current += policy.backoff(1)
        assert (await runner.run_once())["webhooks"].sent == 1
        async with db() as s:
            row = await s.scalar(select(WebhookDelivery))
            assert row is not None and row.status == "sent" and row.attempts == 2
    finally:
        await engine.dispose()
    assert len(r.received) == 2 and r.received[0]["delivery"] == r.received[1]["delivery"]
    assert r.received[1]["t"] == int((NOW + policy.backoff(1)).timestamp())
    assert all(x["valid"] for x in r.received)


async def test_an_endpoint_that_keeps_failing_is_given_up(
    sqlite_url: str, receiver: tuple[Receiver, TestServer]
) -> None:
    r, server = receiver
    endpoints = _endpoints(server)[:1]
    engine, db = await _maker(sqlite_url, endpoints)
    clock = FakeClock(NOW)
    policy = RetryPolicy(max_attempts=3)
    try:
        async with db.begin() as s:
            view = await service.create_session(
                s,
                kind=SessionKind.reception,
                title="接访",
                case_id=None,
                host_site_id=None,
                created_by_id=None,
                now=NOW,
            )
            await service.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())
        r.statuses = [500] * 10
        runner = JobRunner(db, clock=clock, policy=policy)
        runner.add_handler(WebhookJobs(endpoints))
        for _ in range(5):
            await runner.run_once()
            clock.current += timedelta(hours=2)
        async with db() as s:
            row = await s.scalar(select(WebhookDelivery))
            assert row is not None and row.status == "failed" and row.attempts == 3
            assert "500" in row.last_error
    finally:
        await engine.dispose()
    assert len(r.received) == 3


async def test_without_endpoints_nothing_is_queued(sqlite_url: str) -> None:
    engine, db = await _maker(sqlite_url, [])
    try:
        await _run_a_session(db)
        async with db() as s:
            assert (await s.scalars(select(WebhookDelivery))).all() == []
    finally:
        await engine.dispose()


def test_endpoints_come_from_one_setting() -> None:
    env = {
        "ONEDOOR_SECRET_KEY": "x" * 32,
        "ONEDOOR_WEBHOOKS": json.dumps(
            [{"url": "https://crm.example/hook", "secret": SECRET, "events": ["session.ended"]}]
        ),
    }
    settings = Settings.from_env(env)
    assert settings.webhooks[0].url == "https://crm.example/hook"
    assert SECRET not in json.dumps(settings.public_view(), default=str)
    bad = {
        **env,
        "ONEDOOR_WEBHOOKS": '[{"url":"https://x","secret":"' + SECRET + '",'
        '"events":["session.exploded"]}]',
    }
    with pytest.raises(SettingsError, match="ONEDOOR_WEBHOOKS"):
        Settings.from_env(bad)
    with pytest.raises(ValidationError):
        WebhookEndpoint(url="ftp://x", secret=SecretStr(SECRET), events=["*"])


def test_verify_refuses_a_stale_or_altered_signature() -> None:
    from server.webhooks.service import sign

    header = sign(SECRET, b'{"a":1}', timestamp=1000)
    assert verify(SECRET, b'{"a":1}', header, now=1000)
    assert not verify(SECRET, b'{"a":2}', header, now=1000)
    assert not verify(SECRET, b'{"a":1}', header, now=1000 + 301)
    assert not verify(OTHER_SECRET, b'{"a":1}', header, now=1000)


async def test_the_app_wires_endpoints_into_sessions_and_the_runner(
    tmp_path: Any, demo_sqlite_url: str
) -> None:
    from aiohttp.test_utils import TestClient

    from server.app import create_app
    from server.http import keys
    from tests.conftest import make_settings

    endpoint = {"url": "http://127.0.0.1:9/hook", "secret": SECRET, "events": ["*"]}
    settings = make_settings(
        tmp_path, demo_sqlite_url, webhooks=json.dumps([endpoint]), background_jobs=True
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        app = client.app
        assert "webhooks" in app[keys.jobs].names
        await app[keys.jobs].stop()  # nothing is sent from this test
        async with app[keys.db].begin() as s:
            view = await service.create_session(
                s,
                kind=SessionKind.reception,
                title="接访",
                case_id=None,
                host_site_id=None,
                created_by_id=None,
                now=NOW,
            )
            await service.go_live(s, session_id=view.id, now=NOW, deadlines=DeadlineClock())
        async with app[keys.db]() as s:
            rows = (await s.scalars(select(WebhookDelivery))).all()
    assert [(r.event, r.url, r.status) for r in rows] == [
        ("session.started", "http://127.0.0.1:9/hook", "pending")
    ]
